// Audit trail segments (issue 18 part 2) against the real token (SoftHSM2) and real files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "service/audit.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

namespace fs = std::filesystem;

class AuditSegmentsTest : public ::testing::Test, protected ServiceEnv {
 protected:
  std::string dir_ = data_.path() + "/audit";

  std::unique_ptr<AuditLog> OpenLog(uint64_t max_bytes = 4096, int64_t max_seconds = 0,
                                    const std::string& node = "") {
    AuditNodeOptions n;
    n.node_id = node;
    auto a =
        AuditLog::Open("", *token_, clock_, log_, n,
                       {.directory = dir_, .max_bytes = max_bytes, .max_seconds = max_seconds});
    EXPECT_OK(a);
    return a.ok() ? std::move(a).value() : nullptr;
  }
  void RecordN(AuditLog& a, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_OK(a.Record({.event = "detokenize",
                          .outcome = "ok",
                          .status = 200,
                          .account = "acct",
                          .object = "tok-" + std::to_string(i)}));
    }
  }
  std::vector<std::string> Segments() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (ParseAuditSegmentName(e.path().filename().string())) {
        out.push_back(e.path().filename().string());
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<nlohmann::json> Lines(const std::string& name) const {
    std::ifstream in(dir_ + "/" + name);
    std::vector<nlohmann::json> out;
    std::string node;
    for (std::string l; std::getline(in, l);) {
      auto shown = ExpandAuditLine(l, &node);  // format 1's field names
      EXPECT_OK(shown);
      out.push_back(nlohmann::json::parse(shown.ok() ? *shown : l));
    }
    return out;
  }
  AuditTrailReport Verify() {
    auto r = VerifyAuditTrail({dir_}, *token_);
    EXPECT_OK(r);
    return r.ok() ? *r : AuditTrailReport{};
  }
  static std::string Problems(const AuditTrailReport& r) {
    std::string out;
    for (const auto& p : r.problems) {
      out += p + "\n";
    }
    for (const auto& c : r.chains) {
      if (!c.report.ok()) {
        out += c.report.bad_file + ": " + c.report.problem + "\n";
      }
    }
    return out;
  }
};

TEST_F(AuditSegmentsTest, NamesRoundTripAndJunkIsNotASegment) {
  const std::string n = AuditSegmentFileName("", 42, 1'800'000'000);
  EXPECT_EQ(n, "audit-000042-20270115T0800Z.log");
  auto p = ParseAuditSegmentName(n);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->index, 42u);
  EXPECT_EQ(p->node, "");
  EXPECT_EQ(p->opened, 1'800'000'000 - 1'800'000'000 % 60);
  auto q = ParseAuditSegmentName(AuditSegmentFileName("db-1.a", 7, 0) + ".gz");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->node, "db-1.a");
  EXPECT_EQ(q->index, 7u);
  EXPECT_TRUE(q->gz);
  for (const char* junk :
       {"audit.log", "audit-000000-20270115T0800Z.log", "audit-12-20270115T0800Z.log",
        "audit-000001-2027011T0800Z.log", "audit-a/b-000001-20270115T0800Z.log",
        "audit-checkpoint.json", "audit-000001-20270115T0800Z.log.1"}) {
    EXPECT_FALSE(ParseAuditSegmentName(junk).has_value()) << junk;
  }
}

TEST_F(AuditSegmentsTest, RotatesAtTheSizeAndTheChainRunsAcrossSegments) {
  {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    RecordN(*a, 100);
    EXPECT_EQ(a->last_seq(), 100u + Segments().size());  // one header per segment
  }
  const auto segs = Segments();
  ASSERT_GE(segs.size(), 4u);
  uint64_t prev_last = 0;
  std::string prev_mac;
  for (size_t i = 0; i < segs.size(); ++i) {
    auto p = ParseAuditSegmentName(segs[i]);
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->index, i + 1);
    auto lines = Lines(segs[i]);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines[0]["event"], "audit_segment");
    if (i > 0) {
      EXPECT_EQ(lines[0]["detail"], "segment=" + std::to_string(i + 1) + " prev=" + segs[i - 1] +
                                        " prev_last_seq=" + std::to_string(prev_last));
      EXPECT_EQ(lines[0]["seq"], prev_last + 1);
      EXPECT_EQ(lines[0]["prev"], prev_mac);
      EXPECT_GE(fs::file_size(dir_ + "/" + segs[i - 1]), 4096u);
    }
    ASSERT_TRUE(lines.back().contains("mac"));  // every segment ends with a MAC'd line
    prev_last = lines.back()["seq"];
    prev_mac = lines.back()["mac"];
  }
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << Problems(r);
  ASSERT_EQ(r.chains.size(), 1u);
  EXPECT_EQ(r.chains[0].files.size(), segs.size());
  EXPECT_EQ(r.chains[0].report.first_seq, 1u);
  EXPECT_EQ(r.chains[0].report.last_seq, prev_last);
}

TEST_F(AuditSegmentsTest, RotatesByAgeAndOnReopen) {
  auto a = OpenLog(1ull << 30, 60);
  ASSERT_NE(a, nullptr);
  RecordN(*a, 2);
  EXPECT_EQ(Segments().size(), 1u);
  clock_.Advance(59);
  RecordN(*a, 1);
  EXPECT_EQ(Segments().size(), 1u);
  clock_.Advance(1);
  RecordN(*a, 1);
  EXPECT_EQ(Segments().size(), 2u);
  auto reopened = a->Reopen();
  ASSERT_OK(reopened);
  EXPECT_TRUE(*reopened);
  RecordN(*a, 1);
  const auto segs = Segments();
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(Lines(segs[2])[1]["event"], "audit_log_reopened");
  EXPECT_EQ(a->path(), dir_ + "/" + segs[2]);
  a.reset();
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << Problems(r);
}

TEST_F(AuditSegmentsTest, ARestartContinuesTheLastSegment) {
  {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    RecordN(*a, 20);
  }
  const auto before = Segments();
  const auto size = fs::file_size(dir_ + "/" + before.back());
  ASSERT_LT(size, 4096u);
  {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    RecordN(*a, 1);
  }
  EXPECT_EQ(Segments(), before);
  EXPECT_GT(fs::file_size(dir_ + "/" + before.back()), size);
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << Problems(r);
}

TEST_F(AuditSegmentsTest, ASegmentLeftEmptyOrTornByACrashMidRotationIsRemovedAtOpen) {
  {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    RecordN(*a, 20);
  }
  const auto before = Segments();
  const auto last = ParseAuditSegmentName(before.back());
  // A crash after the next segment was created, before (or while) its first batch was written.
  for (const std::string& content : {std::string(), std::string(R"({"seq":99,"time":"20)")}) {
    const std::string next = AuditSegmentFileName("", last->index + 1, 1'700'000'000);
    std::ofstream(dir_ + "/" + next) << content;
    ASSERT_EQ(Segments().size(), before.size() + 1);
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    EXPECT_FALSE(fs::exists(dir_ + "/" + next));
    EXPECT_EQ(Segments(), before);
  }
  {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    ASSERT_OK(a->Reopen());  // the next segment now, under a fresh name
    RecordN(*a, 1);
  }
  EXPECT_EQ(Segments().size(), before.size() + 1);
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << Problems(r);
}

TEST_F(AuditSegmentsTest, ASegmentThatCannotBeCreatedFailsTheBatchAndLosesNothing) {
  auto a = OpenLog(1ull << 30, 0);
  ASSERT_NE(a, nullptr);
  RecordN(*a, 2);
  const uint64_t seq = a->last_seq();
  const auto before = Segments();
  // Someone else's file under the next name: O_EXCL refuses it; the entry fails (fail closed).
  const std::string next = AuditSegmentFileName("", 2, clock_.NowSeconds());
  std::ofstream(dir_ + "/" + next) << "not ours\n";
  ASSERT_OK(a->Reopen());
  EXPECT_FALSE(a->Record({.event = "detokenize", .outcome = "ok"}).ok());
  EXPECT_EQ(a->last_seq(), seq);
  EXPECT_EQ(Lines(before.back()).size(), seq);  // nothing went into the old segment either
  fs::remove(dir_ + "/" + next);
  ASSERT_OK(a->Record({.event = "detokenize", .outcome = "ok"}));
  a.reset();
  ASSERT_EQ(Segments().size(), 2u);
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << Problems(r);
}

TEST_F(AuditSegmentsTest, NodesHaveTheirOwnSegments) {
  {
    auto a = OpenLog(4096, 0, "node-a");
    ASSERT_NE(a, nullptr);
    RecordN(*a, 30);
  }
  const auto segs = Segments();
  ASSERT_GE(segs.size(), 2u);
  for (const auto& s : segs) {
    EXPECT_EQ(ParseAuditSegmentName(s)->node, "node-a") << s;
  }
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << Problems(r);
  ASSERT_EQ(r.chains.size(), 1u);
  EXPECT_EQ(r.chains[0].node, "node-a");
  fs::remove(dir_ + "/" + segs[1]);
  if (segs.size() > 2) {
    auto bad = Verify();
    EXPECT_FALSE(bad.ok());
    EXPECT_NE(Problems(bad).find("node node-a: segment 000002"), std::string::npos)
        << Problems(bad);
  }
}

TEST_F(AuditSegmentsTest, ACheckpointLetsOldSegmentsGoAndAMiddleOneIsStillMissed) {
  {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    RecordN(*a, 120);
  }
  const auto segs = Segments();
  ASSERT_GE(segs.size(), 5u);
  // Without a checkpoint, removing the oldest is reported.
  const std::string saved = data_.path() + "/saved";
  fs::create_directory(saved);
  fs::rename(dir_ + "/" + segs[0], saved + "/" + segs[0]);
  EXPECT_NE(Problems(Verify()).find("segments 000001..000001 before " + segs[1] + " are missing"),
            std::string::npos);
  ASSERT_OK(WriteAuditCheckpoint(dir_, segs[2], *token_, clock_));
  fs::remove(dir_ + "/" + segs[1]);
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << Problems(r);
  EXPECT_EQ(r.chains[0].files.size(), segs.size() - 2);
  // A middle segment removed after the checkpoint: named.
  fs::rename(dir_ + "/" + segs[3], saved + "/" + segs[3]);
  EXPECT_NE(Problems(Verify()).find("segment 000004 (between " + segs[2] + " and " + segs[4] +
                                    ") is missing"),
            std::string::npos);
  fs::rename(saved + "/" + segs[3], dir_ + "/" + segs[3]);
  // The checkpoint's segment replaced by another (or the checkpoint edited): refused.
  const std::string cp = dir_ + "/" + AuditCheckpointFileName("");
  std::ifstream in(cp);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  std::string edited = text;
  edited.replace(edited.find("\"segment\":3"), 11, "\"segment\":4");
  std::ofstream(cp, std::ios::trunc) << edited;
  EXPECT_NE(Problems(Verify()).find("does not verify"), std::string::npos);
  std::ofstream(cp, std::ios::trunc) << text;
  EXPECT_TRUE(Verify().ok());
}

TEST_F(AuditSegmentsTest, EveryDurableLineIsCopiedOnceInOrder) {
  std::mutex mu;
  std::vector<std::string> copied;
  {
    AuditSegmentOptions o{.directory = dir_, .max_bytes = 4096, .max_seconds = 0};
    o.copy_line = [&](std::string_view line) {
      std::lock_guard lock(mu);
      copied.emplace_back(line);
    };
    auto a = AuditLog::Open("", *token_, clock_, log_, {}, std::move(o));
    ASSERT_OK(a);
    RecordN(**a, 30);
  }
  std::vector<std::string> in_files;
  for (const auto& s : Segments()) {
    std::ifstream in(dir_ + "/" + s);
    for (std::string l; std::getline(in, l);) {
      in_files.push_back(l);
    }
  }
  EXPECT_GE(Segments().size(), 2u);
  EXPECT_EQ(copied, in_files);
}

}  // namespace
}  // namespace otd::service
