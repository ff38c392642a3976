// Audit trail with several nodes on one store (issue 16): chain heads in the store, anchor lines,
// VerifyAuditTrail across nodes. The real token (SoftHSM2), real files, LMDB and PostgreSQL.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/status_matchers.h"
#include "service/audit.h"
#include "service/tables.h"
#include "service/testing/service_env.h"
#include "store/pg_store.h"
#include "store/testing/pg_server.h"

namespace otd::service {
namespace {

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) {
    out.push_back(l);
  }
  return out;
}

void WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : lines) {
    out << l << "\n";
  }
}

bool Contains(const std::vector<std::string>& problems, const std::string& what) {
  for (const auto& p : problems) {
    if (p.find(what) != std::string::npos) {
      return true;
    }
  }
  return false;
}

class AuditClusterTest : public ::testing::Test, protected ServiceEnv {
 protected:
  std::string dir_ = data_.path() + "/trail";
  std::string a_path_ = dir_ + "/a.log";
  std::string b_path_ = dir_ + "/b.log";

  void SetUp() override { std::filesystem::create_directories(dir_); }

  std::unique_ptr<AuditLog> OpenNode(store::Store& store, const std::string& path,
                                     const std::string& node) {
    AuditNodeOptions o;
    o.node_id = node;
    o.store = &store;
    auto a = AuditLog::Open(path, *token_, clock_, log_, o);
    EXPECT_OK(a);
    return a.ok() ? std::move(a).value() : nullptr;
  }
  // Waits until `node`'s published head reaches `seq` (heads are published asynchronously).
  void WaitForHead(store::Store& store, const std::string& node, uint64_t seq) {
    for (int i = 0; i < 500; ++i) {
      auto row = store.Get(tables::kAuditHeads, ToBytes(node));
      ASSERT_OK(row);
      if (*row &&
          AsString(**row).find("\"seq\":" + std::to_string(seq) + "}") != std::string::npos) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "the head of " << node << " never reached seq " << seq;
  }
  AuditTrailReport Verify(const std::vector<std::string>& paths) {
    auto r = VerifyAuditTrail(paths, *token_);
    EXPECT_OK(r);
    return r.ok() ? *r : AuditTrailReport{};
  }
  void Record(AuditLog& log, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_OK(log.Record({.event = "detokenize", .outcome = "ok", .status = 200}));
    }
  }

  // Two nodes write; a, then b anchor. Leaves a at seq 4 (its anchor is line 4), b at seq 4.
  void TwoNodesWithAnchors(store::Store& store, bool anchors = true) {
    auto a = OpenNode(store, a_path_, "node-a");
    auto b = OpenNode(store, b_path_, "node-b");
    ASSERT_TRUE(a && b);
    Record(*a, 3);
    Record(*b, 3);
    WaitForHead(store, "node-a", 3);
    WaitForHead(store, "node-b", 3);
    if (anchors) {
      ASSERT_OK(a->WriteAnchor());
      ASSERT_OK(b->WriteAnchor());  // vouches for node-a up to seq 3 at least
    } else {
      Record(*a, 1);
      Record(*b, 1);
    }
  }

  void CheckScenario(store::Store& store) {
    TwoNodesWithAnchors(store);
    const auto a_lines = ReadLines(a_path_);
    ASSERT_EQ(a_lines.size(), 4u);
    // Format 2: the node on the file's first line (the one naming "p"), not on every line.
    EXPECT_EQ(
        a_lines[0].find("{\"s\":1,\"v\":2,\"p\":\"" + std::string(64, '0') + "\",\"n\":\"node-a\""),
        0u)
        << a_lines[0];
    EXPECT_EQ(a_lines[1].find("\"n\":"), std::string::npos) << a_lines[1];
    EXPECT_NE(a_lines[3].find("\"e\":\"audit_anchor\""), std::string::npos) << a_lines[3];
    EXPECT_NE(a_lines[3].find("{\"n\":\"node-b\",\"s\":3,"), std::string::npos) << a_lines[3];

    // Intact: both files, or the directory holding them.
    for (const auto& paths :
         {std::vector<std::string>{a_path_, b_path_}, std::vector<std::string>{dir_}}) {
      auto ok = Verify(paths);
      EXPECT_TRUE(ok.ok()) << (ok.problems.empty() ? "" : ok.problems[0]);
      EXPECT_EQ(ok.chains.size(), 2u);
      EXPECT_EQ(ok.anchors, 2u);
      EXPECT_GE(ok.heads_checked, 4u);
    }

    // A node's file left out: the other node's anchor names it.
    auto missing = Verify({b_path_});
    EXPECT_FALSE(missing.ok());
    EXPECT_TRUE(Contains(missing.problems, "node node-a is missing")) << missing.problems.size();

    // node-a's file cut by its last two lines (each line is its own MAC'd batch, so what is
    // left is a valid chain on its own): b's anchor vouched for seq 3.
    WriteLines(a_path_, {a_lines[0], a_lines[1]});
    auto alone = VerifyAuditLogs({a_path_}, *token_);
    ASSERT_OK(alone);
    EXPECT_TRUE(alone->ok()) << "the cut chain verifies on its own";
    auto cut = Verify({a_path_, b_path_});
    EXPECT_FALSE(cut.ok());
    ASSERT_EQ(cut.problems.size(), 1u);
    EXPECT_NE(cut.problems[0].find("node node-a is truncated: its chain ends at seq 2"),
              std::string::npos)
        << cut.problems[0];
    EXPECT_NE(cut.problems[0].find("anchor at node node-b seq 4 vouches for seq "),
              std::string::npos)
        << cut.problems[0];
    WriteLines(a_path_, a_lines);

    // A line of node-b edited: its chain breaks.
    auto b_lines = ReadLines(b_path_);
    const std::string intact = b_lines[1];
    b_lines[1].replace(b_lines[1].find("\"c\":200"), 7, "\"c\":403");
    WriteLines(b_path_, b_lines);
    auto edited = Verify({a_path_, b_path_});
    EXPECT_FALSE(edited.ok());
    ASSERT_EQ(edited.chains.size(), 2u);
    for (const auto& c : edited.chains) {
      EXPECT_EQ(c.report.ok(), c.node == "node-a") << c.node << ": " << c.report.problem;
    }
    b_lines[1] = intact;
    WriteLines(b_path_, b_lines);
    EXPECT_TRUE(Verify({a_path_, b_path_}).ok());
  }
};

// Regression (issue 16, run 9): a head write (a synchronously replicated transaction on
// PostgreSQL) followed every audit batch, costing the database more than the requests' own reads.
// Now at most one per AuditLog::kHeadPublishInterval (250 ms), and the last head is still
// published once the interval is over.
TEST_F(AuditClusterTest, HeadsArePublishedAtMostEveryIntervalAndTheLastOneIsNotLost) {
  auto a = OpenNode(*store_, a_path_, "node-a");
  ASSERT_TRUE(a);
  WaitForHead(*store_, "node-a", 0);
  const uint64_t before = store_->GetStats()->commits;
  const auto start = std::chrono::steady_clock::now();
  Record(*a, 60);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  WaitForHead(*store_, "node-a", 60);
  const uint64_t writes = store_->GetStats()->commits - before;
  const auto intervals = static_cast<uint64_t>(elapsed / std::chrono::milliseconds(250));
  EXPECT_LE(writes, intervals + 2) << "60 lines in " << intervals << " intervals";
  EXPECT_GE(writes, 1u);
}

TEST_F(AuditClusterTest, AnchorsDetectATruncatedOrMissingNodeOnLmdb) { CheckScenario(*store_); }

TEST_F(AuditClusterTest, WithoutAnchorsATruncatedNodeGoesUnnoticed) {
  TwoNodesWithAnchors(*store_, /*anchors=*/false);
  const auto a_lines = ReadLines(a_path_);
  ASSERT_EQ(a_lines.size(), 4u);
  WriteLines(a_path_, {a_lines[0], a_lines[1]});
  auto cut = Verify({a_path_, b_path_});
  EXPECT_TRUE(cut.ok()) << "nothing vouches for node-a's lines 3..4: the cut cannot be seen";
  EXPECT_EQ(cut.anchors, 0u);
}

TEST_F(AuditClusterTest, TwoDaemonsWithOneNodeIdAreRefused) {
  auto a = OpenNode(*store_, a_path_, "node-a");
  ASSERT_TRUE(a);
  Record(*a, 2);
  WaitForHead(*store_, "node-a", 2);
  AuditNodeOptions o{.node_id = "node-a", .store = store_.get()};
  auto twin = AuditLog::Open(b_path_, *token_, clock_, log_, o);
  ASSERT_FALSE(twin.ok());
  EXPECT_EQ(twin.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(twin.status().message().find("same audit.node_id"), std::string::npos);
  // The same node restarting on its own file continues.
  a.reset();
  EXPECT_TRUE(OpenNode(*store_, a_path_, "node-a"));
}

TEST_F(AuditClusterTest, AnchorThreadWritesAnchors) {
  AuditNodeOptions o{.node_id = "node-a", .store = store_.get(), .anchor_interval_seconds = 1};
  auto a = AuditLog::Open(a_path_, *token_, clock_, log_, o);
  ASSERT_OK(a);
  Record(**a, 1);
  for (int i = 0; i < 300 && (*a)->last_seq() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE((*a)->last_seq(), 2u);
  a->reset();
  auto r = Verify({a_path_});
  EXPECT_TRUE(r.ok());
  EXPECT_GE(r.anchors, 1u);
}

TEST(AuditNodeId, CreatedOnceAndKept) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("otd-node-id-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto first = LoadOrCreateAuditNodeId(dir.string());
  ASSERT_OK(first);
  EXPECT_TRUE(ValidAuditNodeId(*first)) << *first;
  auto again = LoadOrCreateAuditNodeId(dir.string());
  ASSERT_OK(again);
  EXPECT_EQ(*first, *again);
  EXPECT_FALSE(ValidAuditNodeId("a/b"));
  EXPECT_FALSE(ValidAuditNodeId(""));
  EXPECT_FALSE(ValidAuditNodeId(std::string(65, 'a')));
  std::filesystem::remove_all(dir);
}

TEST_F(AuditClusterTest, AnchorsDetectATruncatedOrMissingNodeOnPostgreSQL) {
  store::testing::PgTestServer server;
  if (std::string why = server.Unavailable(); !why.empty()) {
    GTEST_SKIP() << why;
  }
  ASSERT_TRUE(server.Init());
  store::PgOptions o;
  o.conninfo = server.CreateDatabase();
  o.pool_size = 4;
  o.tables = AllTables();
  ASSERT_OK(store::PgMigrate(o));
  auto pg = store::PgStore::Open(std::move(o), &log_);
  ASSERT_OK(pg);
  CheckScenario(**pg);
}

}  // namespace
}  // namespace otd::service
