// Audit trail against the real token (SoftHSM2) and real files.
#include "service/audit.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <iterator>
#include <mutex>
#include <thread>
#include <vector>

#include "common/testing/status_matchers.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

class AuditTest : public ::testing::Test, protected ServiceEnv {
 protected:
  std::string path_ = data_.path() + "/audit.log";

  std::unique_ptr<AuditLog> OpenLog() {
    auto a = AuditLog::Open(path_, *token_, clock_, log_);
    EXPECT_OK(a);
    return a.ok() ? std::move(a).value() : nullptr;
  }
  std::vector<std::string> Lines() const {
    std::ifstream in(path_);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) {
      out.push_back(l);
    }
    return out;
  }
  void WriteLines(const std::vector<std::string>& lines) {
    std::ofstream out(path_, std::ios::trunc);
    for (const auto& l : lines) {
      out << l << "\n";
    }
  }
  std::string FileText() const {
    std::ifstream in(path_, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  AuditVerifyReport Verify() {
    auto r = VerifyAuditLog(path_, *token_);
    EXPECT_OK(r);
    return r.ok() ? *r : AuditVerifyReport{};
  }
  void RecordFive() {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(a->Record({.event = "detokenize",
                             .outcome = "ok",
                             .status = 200,
                             .account = "acct-CLEAR-ID",
                             .object = "token-CLEAR-ID-" + std::to_string(i)})
                      .ok());
    }
  }
};

TEST_F(AuditTest, LinesAreChainedJsonWithHashedIdentifiersOnly) {
  RecordFive();
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 5u);
  const std::string text = FileText();
  EXPECT_EQ(text.find("CLEAR-ID"), std::string::npos);
  // Format 2: the first line names the link it continues (64 zeros: the chain's start).
  EXPECT_EQ(lines[0].find("{\"s\":1,\"v\":2,\"p\":\"" + std::string(64, '0') + "\","), 0u)
      << lines[0];
  EXPECT_EQ(lines[4].find("{\"s\":5,"), 0u) << lines[4];
  EXPECT_EQ(lines[4].find("\"p\":"), std::string::npos) << lines[4];
  EXPECT_NE(lines[0].find("\"e\":\"detokenize\""), std::string::npos);
  // The same account hashes to the same value in every line; different objects differ.
  auto field = [](const std::string& l, const std::string& name) {
    auto j = nlohmann::json::parse(*ExpandAuditLine(l));
    return j.contains(name) ? j[name].get<std::string>() : std::string();
  };
  EXPECT_EQ(field(lines[0], "account"), field(lines[4], "account"));
  EXPECT_EQ(field(lines[0], "account").size(), 32u);  // expanded to hex, as format 1 wrote it
  EXPECT_NE(field(lines[0], "object"), field(lines[1], "object"));
  EXPECT_EQ(field(lines[0], "event"), "detokenize");
  EXPECT_EQ(std::filesystem::status(path_).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.problem;
  EXPECT_EQ(r.lines, 5u);
}

TEST_F(AuditTest, ADeletedLineIsDetected) {
  RecordFive();
  auto lines = Lines();
  lines.erase(lines.begin() + 2);
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_line, 3u);
  EXPECT_NE(r.problem.find("removed"), std::string::npos) << r.problem;
}

TEST_F(AuditTest, AnEditedLineIsDetectedEvenWithItsSequenceIntact) {
  RecordFive();
  auto lines = Lines();
  size_t at = lines[3].find("\"o\":\"ok\"");
  ASSERT_NE(at, std::string::npos);
  lines[3].replace(at, 8, "\"o\":\"no\"");
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_line, 4u);  // every Record() is its own batch: one line per MAC
  EXPECT_NE(r.problem.find("edited"), std::string::npos) << r.problem;
}

TEST_F(AuditTest, ReorderedOrRenumberedLinesAreDetected) {
  RecordFive();
  auto lines = Lines();
  std::swap(lines[1], lines[2]);
  WriteLines(lines);
  EXPECT_EQ(Verify().first_bad_line, 2u);
  // Deleting the first line and renumbering would need a new MAC: the chain start is fixed.
  lines = Lines();
  std::swap(lines[1], lines[2]);
  lines.erase(lines.begin());
  WriteLines(lines);
  EXPECT_EQ(Verify().first_bad_line, 1u);
}

TEST_F(AuditTest, ReopeningContinuesTheChainAndCutsATornTail) {
  RecordFive();
  {
    std::ofstream out(path_, std::ios::app);
    out << "{\"s\":6,\"t\":17965";  // a crash in the middle of a write
  }
  EXPECT_FALSE(Verify().ok());
  {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    EXPECT_TRUE(
        a->Record(
             {.event = "login", .outcome = "denied", .status = 401, .account = "acct-CLEAR-ID"})
            .ok());
  }
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_NE(lines[5].find("audit_log_recovered"), std::string::npos);
  EXPECT_NE(log_sink_.str().find("audit_log_recovered"), std::string::npos);
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
  EXPECT_EQ(r.lines, 7u);
}

TEST_F(AuditTest, RotationContinuesTheChainInTheNewFileAndBothVerifyAsOne) {
  const std::string rotated = path_ + ".1";
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(a->Record({.event = "tokenize", .outcome = "ok"}));
  }
  // Not rotated: nothing to do.
  auto same = a->Reopen();
  ASSERT_OK(same);
  EXPECT_FALSE(*same);
  std::filesystem::rename(path_, rotated);
  // Entries written between the move and the reload land in the old file (still open).
  ASSERT_OK(a->Record({.event = "tokenize", .outcome = "ok"}));
  auto reopened = a->Reopen();
  ASSERT_OK(reopened);
  EXPECT_TRUE(*reopened);
  ASSERT_OK(a->Record({.event = "detokenize", .outcome = "ok"}));
  a.reset();
  EXPECT_EQ(std::filesystem::status(path_).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].find("{\"s\":5,\"v\":2,\"p\":\""), 0u) << lines[0];  // names its link
  EXPECT_NE(lines[0].find("audit_log_reopened"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("continues_from_seq=4"), std::string::npos) << lines[0];

  auto both = VerifyAuditLogs({rotated, path_}, *token_);
  ASSERT_OK(both);
  EXPECT_TRUE(both->ok()) << both->bad_file << ":" << both->first_bad_line << " " << both->problem;
  EXPECT_EQ(both->lines, 6u);
  EXPECT_EQ(both->first_seq, 1u);
  EXPECT_EQ(both->last_seq, 6u);
  // The new file alone starts mid-chain: refused unless partial.
  auto alone = VerifyAuditLogs({path_}, *token_);
  ASSERT_OK(alone);
  EXPECT_FALSE(alone->ok());
  EXPECT_NE(alone->problem.find("starts at sequence number 5"), std::string::npos)
      << alone->problem;
  auto partial = VerifyAuditLogs({path_}, *token_, nullptr, /*partial=*/true);
  ASSERT_OK(partial);
  EXPECT_TRUE(partial->ok()) << partial->problem;
  EXPECT_EQ(partial->first_seq, 5u);
  // Out of order, or with a file missing in between, the chain breaks at the boundary.
  auto swapped = VerifyAuditLogs({path_, rotated}, *token_, nullptr, /*partial=*/true);
  ASSERT_OK(swapped);
  EXPECT_FALSE(swapped->ok());
  EXPECT_EQ(swapped->bad_file, rotated);
  EXPECT_EQ(swapped->first_bad_line, 1u);
  // A restart continues the new file's chain.
  auto again = OpenLog();
  ASSERT_NE(again, nullptr);
  ASSERT_OK(again->Record({.event = "login", .outcome = "ok"}));
  again.reset();
  auto after = VerifyAuditLogs({rotated, path_}, *token_);
  ASSERT_OK(after);
  EXPECT_TRUE(after->ok()) << after->problem;
  EXPECT_EQ(after->last_seq, 7u);
}

TEST_F(AuditTest, ReopenNeverContinuesTheChainInAnotherNonEmptyFile) {
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  ASSERT_OK(a->Record({.event = "tokenize", .outcome = "ok"}));
  std::filesystem::rename(path_, path_ + ".1");
  std::ofstream(path_) << "someone else's line\n";
  auto r = a->Reopen();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find(path_), std::string::npos);
  // The trail goes on in the old file.
  ASSERT_OK(a->Record({.event = "tokenize", .outcome = "ok"}));
  a.reset();
  EXPECT_EQ(Lines(), std::vector<std::string>{"someone else's line"});
  auto old = VerifyAuditLog(path_ + ".1", *token_);
  ASSERT_OK(old);
  EXPECT_TRUE(old->ok()) << old->problem;
  EXPECT_EQ(old->lines, 2u);
}

TEST_F(AuditTest, ConcurrentWritersShareOneIntactChain) {
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        if (i % 2 == 0) {
          EXPECT_TRUE(a->Record({.event = "tokenize",
                                 .outcome = "ok",
                                 .status = 201,
                                 .account = "a" + std::to_string(t)})
                          .ok());
        } else {
          a->RecordAsync({.event = "access_code_created", .outcome = "ok", .status = 201});
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  a.reset();  // drains the asynchronous entries
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
  EXPECT_EQ(r.lines, 320u);
}

// Lines written in one group commit: only the last is MAC'd in the token (and carries its link);
// the MAC covers the others through the chain. Writes until such a batch exists.
class AuditBatchTest : public AuditTest {
 protected:
  static bool IsMac(const std::string& l) { return l.find(",\"m\":\"") != std::string::npos; }
  static bool NoMac(const std::string& l) { return !IsMac(l); }
  // Writes concurrently until some line is not MAC'd; returns the lines.
  std::vector<std::string> WriteBatches() {
    for (int round = 0; round < 20; ++round) {
      auto a = OpenLog();
      if (a == nullptr)
        return {};
      std::vector<std::thread> threads;
      for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&] {
          for (int i = 0; i < 25; ++i) {
            a->RecordAsync({.event = "tokenize", .outcome = "ok", .status = 201});
          }
        });
      }
      for (auto& t : threads)
        t.join();
      a.reset();
      auto lines = Lines();
      if (std::any_of(lines.begin(), lines.end(), NoMac))
        return lines;
    }
    ADD_FAILURE() << "no batch of more than one line was ever written";
    return {};
  }
};

TEST_F(AuditBatchTest, ABatchTakesOneMacAndVerifies) {
  auto lines = WriteBatches();
  ASSERT_FALSE(lines.empty());
  const auto macs = std::count_if(lines.begin(), lines.end(), IsMac);
  EXPECT_LT(static_cast<size_t>(macs), lines.size());
  EXPECT_TRUE(IsMac(lines.back()));  // the file always ends with a MAC'd line
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
  EXPECT_EQ(r.lines, lines.size());
}

TEST_F(AuditBatchTest, AnEditInsideABatchIsCaughtAtTheBatchItsMacCovers) {
  auto lines = WriteBatches();
  ASSERT_FALSE(lines.empty());
  size_t k = 0;
  while (IsMac(lines[k]))
    ++k;
  // The batch runs from just after the previous MAC'd line to the next MAC'd line.
  size_t first = k;
  while (first > 0 && NoMac(lines[first - 1]))
    --first;
  size_t m = k;
  while (NoMac(lines[m]))
    ++m;
  auto edited = lines;
  size_t at = edited[k].find("\"o\":\"ok\"");
  ASSERT_NE(at, std::string::npos);
  edited[k].replace(at, 8, "\"o\":\"no\"");
  WriteLines(edited);
  auto r = Verify();
  EXPECT_EQ(r.first_bad_line, first + 1) << r.problem;  // the first line the MAC vouches for
  EXPECT_NE(r.problem.find("does not verify"), std::string::npos) << r.problem;
  EXPECT_NE(
      r.problem.find("covers lines " + std::to_string(first + 1) + ".." + std::to_string(m + 1)),
      std::string::npos)
      << r.problem;
  // A MAC'd line whose MAC is removed (to merge two batches) breaks the next batch's MAC.
  auto unmacd = lines;
  std::string& mac_line = unmacd[m];
  mac_line = mac_line.substr(0, mac_line.rfind(",\"m\":\"")) + "}";
  WriteLines(unmacd);
  r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_line, first + 1) << r.problem;
}

TEST_F(AuditBatchTest, AFileCutInsideABatchIsReportedAndCutBackAtOpen) {
  auto lines = WriteBatches();
  ASSERT_FALSE(lines.empty());
  size_t k = 0;
  while (IsMac(lines[k]))
    ++k;
  lines.resize(k + 1);  // ends with a line that is not MAC'd: its batch's MAC is missing
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.problem.find("not covered by a MAC"), std::string::npos) << r.problem;
  size_t last_mac = k;
  while (last_mac > 0 && NoMac(lines[last_mac - 1]))
    --last_mac;
  // last_mac = number of lines up to and including the last MAC'd one.
  {
    auto a = OpenLog();  // cuts the unacknowledged lines and continues the chain
    ASSERT_NE(a, nullptr);
  }
  auto after = Lines();
  ASSERT_EQ(after.size(), last_mac + 1);
  EXPECT_NE(after.back().find("audit_log_recovered"), std::string::npos);
  r = Verify();
  EXPECT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
}

TEST_F(AuditTest, AFailedBatchIsCutBackAndTheLogWorksAgainWhenTheDiskDoes) {
  RecordFive();
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  // A real write failure on a regular file: RLIMIT_FSIZE makes write() stop at the limit (a
  // partial line) and then fail with EFBIG, as a full disk would.
  const auto size = std::filesystem::file_size(path_);
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit tight = old;
  tight.rlim_cur = size + 40;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &tight), 0);
  Status failed = a->Record(
      {.event = "detokenize", .outcome = "ok", .status = 200, .account = "acct-CLEAR-ID"});
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(failed.code(), Code::kUnavailable);
  EXPECT_EQ(std::filesystem::file_size(path_), size);  // the partial line was cut
  EXPECT_NE(log_sink_.str().find("audit_log_write_failed"), std::string::npos);
  // The disk is back: the log goes on, and the chain has no hole.
  EXPECT_OK(a->Record({.event = "detokenize", .outcome = "ok", .status = 200}));
  a.reset();
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
  EXPECT_EQ(r.lines, 6u);
}

TEST_F(AuditTest, AnUnusableTokenFailsEntriesWithOneRateLimitedLogLine) {
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  ASSERT_OK(a->Record({.event = "detokenize", .outcome = "ok", .status = 200, .account = "acct"}));
  // The token's files vanish: every entry fails (fail closed), and the operational log gets one
  // line for the burst, not one per entry (regression: 6,000 lines in 2 s under load).
  const std::string tokens = token_dir_.dir() + "/tokens";
  std::filesystem::rename(tokens, tokens + ".away");
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(a->Record({.event = "detokenize",
                         .outcome = "ok",
                         .status = 200,
                         .account = "acct",
                         .object = "o" + std::to_string(i)})
                  .code(),
              Code::kUnavailable);
  }
  std::filesystem::rename(tokens + ".away", tokens);
  const std::string log = log_sink_.str();
  size_t lines = 0;
  for (size_t at = log.find("\"audit_entry_failed\""); at != std::string::npos;
       at = log.find("\"audit_entry_failed\"", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << log;
  // The audited event is its own field; "event" stays the log line's name (no duplicate key).
  EXPECT_NE(log.find("\"audit_event\":\"detokenize\""), std::string::npos) << log;
  EXPECT_EQ(log.find("\"event\":\"detokenize\""), std::string::npos) << log;
}

TEST_F(AuditTest, AWriteFailureOnADeviceStopsTheLogUntilRestart) {
  // /dev/full: every write fails with ENOSPC (a real device, not a fake); a device cannot be cut
  // back, so the log refuses every entry after it.
  std::filesystem::create_symlink("/dev/full", path_);
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  Status s = a->Record({.event = "detokenize", .outcome = "ok", .status = 200});
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(a->Record({.event = "detokenize", .outcome = "ok"}).code(), Code::kUnavailable);
  EXPECT_NE(log_sink_.str().find("audit_log_write_failed"), std::string::npos);
}

TEST_F(AuditTest, RecordThenCallsBackOnceWithTheDurableResultWithoutBlockingTheCaller) {
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Status> results;
  std::vector<std::thread::id> threads;
  constexpr int kEntries = 20;
  for (int i = 0; i < kEntries; ++i) {
    a->RecordThen({.event = "detokenize",
                   .outcome = "ok",
                   .status = 200,
                   .account = "acct",
                   .object = "o" + std::to_string(i)},
                  [&](Status s) {
                    std::lock_guard lock(mu);
                    results.push_back(std::move(s));
                    threads.push_back(std::this_thread::get_id());
                    cv.notify_all();
                  });
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(
        cv.wait_for(lock, std::chrono::seconds(30), [&] { return results.size() == kEntries; }));
  }
  for (const auto& s : results) {
    EXPECT_OK(s) << s.message();
  }
  // The callbacks ran on the writer thread, after the entries were durable: all of them verify.
  for (const auto& t : threads) {
    EXPECT_NE(t, std::this_thread::get_id());
  }
  a.reset();
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
  EXPECT_EQ(r.lines, static_cast<uint64_t>(kEntries));
}

TEST_F(AuditTest, RecordThenReportsAFailedWriteToItsCallback) {
  std::filesystem::create_symlink("/dev/full", path_);
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  std::promise<Status> p;
  a->RecordThen({.event = "detokenize", .outcome = "ok", .status = 200},
                [&p](Status s) { p.set_value(std::move(s)); });
  auto f = p.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(f.get().code(), Code::kUnavailable);
}

TEST_F(AuditTest, IdsHashedAheadOfTimeGiveTheSameLineFieldsAsRecord) {
  auto a = OpenLog();
  ASSERT_NE(a, nullptr);
  ASSERT_OK(a->Record({.event = "tokenize",
                       .outcome = "ok",
                       .status = 201,
                       .account = "acct-X",
                       .object = "token-Y"}));
  auto ids = a->HashIds("acct-X", "token-Y");
  ASSERT_OK(ids);
  EXPECT_EQ(ids->account.size(), 22u);  // 128 bits in base64url
  EXPECT_EQ(ids->object.size(), 22u);
  // The clear ids in the event are not used: only the hashed ones reach the line.
  a->RecordAsync({.event = "tokenize",
                  .outcome = "ok",
                  .status = 201,
                  .account = "ignored",
                  .object = "ignored"},
                 ids);
  a.reset();  // drains
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  auto field = [](const std::string& line, const std::string& key) {
    auto j = nlohmann::json::parse(line);
    return j.contains(key) ? j[key].get<std::string>() : std::string();
  };
  EXPECT_EQ(field(lines[1], "a"), field(lines[0], "a"));
  EXPECT_EQ(field(lines[1], "i"), field(lines[0], "i"));
  EXPECT_EQ(field(lines[1], "a"), ids->account);
  EXPECT_EQ(lines[1].find("ignored"), std::string::npos);
  EXPECT_TRUE(Verify().ok());
  // A failed hashing is logged like a failed entry and writes nothing.
  auto b = OpenLog();
  ASSERT_NE(b, nullptr);
  b->RecordAsync({.event = "tokenize", .outcome = "ok"},
                 Result<AuditIds>(Unavailable("token gone")));
  b.reset();
  EXPECT_EQ(Lines().size(), 2u);
  EXPECT_NE(log_sink_.str().find("\"audit_entry_failed\""), std::string::npos);
}

// Format 2 (issue 20): the size of typical lines, measured.
TEST_F(AuditTest, TypicalLinesAreAtMost200Bytes) {
  const std::string node_path = data_.path() + "/audit-node.log";
  for (const std::string& node : {std::string(), std::string("vault-host-01-9f3a2c7e")}) {
    auto a =
        AuditLog::Open(node.empty() ? path_ : node_path, *token_, clock_, log_, {.node_id = node});
    ASSERT_OK(a);
    // The detail the API writes (api/pipeline.cc), the longest peers it gives.
    const std::string tls = "peer=ip:203.0.113.254 transport=tls";
    const std::string unix_peer = "peer=uid:65534 transport=unix";
    ASSERT_OK((*a)->Record({.event = "audit_log_started", .outcome = "ok"}));  // carries "p"
    struct Case {
      AuditEvent e;
      const char* what;
    };
    const Case cases[] = {
        {{.event = "tokenize",
          .outcome = "ok",
          .status = 201,
          .account = "acct-1234",
          .object = "tok-1",
          .detail = tls},
         "tokenize"},
        {{.event = "detokenize",
          .outcome = "ok",
          .status = 200,
          .account = "acct-1234",
          .object = "tok-1",
          .detail = tls},
         "detokenize (private, TLS)"},
        {{.event = "detokenize",
          .outcome = "ok",
          .status = 200,
          .account = "acct-1234",
          .object = "tok-1",
          .detail = unix_peer},
         "detokenize (public, unix socket)"},
        {{.event = "login", .outcome = "ok", .status = 200, .account = "acct-1234", .detail = tls},
         "login"},
    };
    std::vector<size_t> sizes;
    for (const Case& c : cases) {
      ASSERT_OK((*a)->Record(c.e));  // alone in its batch: MAC'd
    }
    a->reset();
    std::ifstream in(node.empty() ? path_ : node_path);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) {
      lines.push_back(l);
    }
    ASSERT_EQ(lines.size(), 5u);
    for (size_t i = 0; i < 4; ++i) {
      const std::string& mac_line = lines[i + 1];
      const size_t with_mac = mac_line.size() + 1;  // with "\n"
      const size_t without = mac_line.rfind(",\"m\":\"") + std::string_view("}\n").size();
      std::cout << "audit line " << cases[i].what << (node.empty() ? "" : " (node id)") << ": "
                << with_mac << " B MAC'd, " << without << " B not MAC'd\n";
      EXPECT_LE(with_mac, 200u) << mac_line;
      EXPECT_LE(without, 200u) << mac_line;
    }
  }
  // Under load: a batch of many lines, one MAC. Sequence numbers of 7 digits.
  const std::string load_path = data_.path() + "/audit-load.log";
  auto a = AuditLog::Open(load_path, *token_, clock_, log_);
  ASSERT_OK(a);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        (*a)->RecordAsync({.event = "detokenize",
                           .outcome = "ok",
                           .status = 200,
                           .account = "acct-" + std::to_string(t),
                           .object = "tok-" + std::to_string(i),
                           .detail = "peer=uid:1000 transport=unix"});
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  a->reset();
  std::ifstream in(load_path, std::ios::binary | std::ios::ate);
  const auto bytes = static_cast<double>(in.tellg());
  std::cout << "audit under load: " << bytes / 800 << " B per line (800 detokenize lines)\n";
  EXPECT_LE(bytes / 800, 200.0);
}

// A trail written before format 2: lines as the daemon wrote them then, batches of `batch` lines
// (SHA-256 links, the last MAC'd), identifiers as format 1 hashed them (hex).
class AuditUpgradeTest : public AuditTest {
 protected:
  std::vector<std::string> V1Lines(uint64_t n, uint64_t batch) {
    std::vector<std::string> out;
    auto s = token_->Acquire();
    EXPECT_OK(s);
    auto log = OpenLog();  // only to hash the identifiers the way the daemon does
    auto ids = log->HashIds("acct-UPGRADE", "tok-UPGRADE");
    EXPECT_OK(ids);
    log.reset();
    std::filesystem::remove(path_);
    account_hex_ = crypto::HexEncode(*crypto::Base64UrlDecode(ids->account));
    std::string prev(64, '0');
    for (uint64_t i = 1; i <= n; ++i) {
      const std::string body = "{\"seq\":" + std::to_string(i) +
                               ",\"time\":\"2026-12-01T10:00:00Z\",\"event\":\"detokenize\","
                               "\"outcome\":\"ok\",\"status\":200,\"account\":\"" +
                               account_hex_ + "\",\"object\":\"" +
                               crypto::HexEncode(*crypto::Base64UrlDecode(ids->object)) +
                               "\",\"detail\":\"peer=uid:0 transport=unix\",\"prev\":\"" + prev +
                               "\"";
      const bool mac = i % batch == 0 || i == n;
      auto link = mac ? s->Sign(hsm::KeyRef::Persistent(std::string(kAuditKeyLabel)), AsBytes(body))
                      : crypto::Sha256(AsBytes(body));
      EXPECT_OK(link);
      prev = crypto::HexEncode(*link);
      out.push_back(body + (mac ? ",\"mac\":\"" : ",\"sha\":\"") + prev + "\"}");
    }
    return out;
  }
  std::string account_hex_;
};

TEST_F(AuditUpgradeTest, AFormat1TrailVerifiesUnchangedAndContinuesInFormat2) {
  const auto v1 = V1Lines(7, 3);  // MACs at 3, 6, 7
  WriteLines(v1);
  auto r = Verify();
  ASSERT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
  EXPECT_EQ(r.lines, 7u);
  {
    auto a = OpenLog();  // the upgraded daemon continues the chain in format 2
    ASSERT_NE(a, nullptr);
    for (int i = 0; i < 3; ++i) {
      ASSERT_OK(a->Record({.event = "detokenize",
                           .outcome = "ok",
                           .status = 200,
                           .account = "acct-UPGRADE",
                           .object = "tok-UPGRADE"}));
    }
  }
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 10u);
  // The switch: the first format-2 line says so and names the last format-1 link.
  const std::string v1_mac = v1[6].substr(v1[6].size() - 66, 64);
  EXPECT_EQ(lines[7].find("{\"s\":8,\"v\":2,\"p\":\"" + v1_mac + "\""), 0u) << lines[7];
  EXPECT_EQ(lines[8].find("\"p\":"), std::string::npos);
  r = Verify();
  EXPECT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
  EXPECT_EQ(r.lines, 10u);
  EXPECT_EQ(r.last_seq, 10u);
  // An investigator sees the same account hash on both sides of the switch.
  auto shown = nlohmann::json::parse(*ExpandAuditLine(lines[9]));
  EXPECT_EQ(shown["account"], account_hex_);
  EXPECT_EQ(shown["format"], 2);
  EXPECT_EQ(shown["event"], "detokenize");
  EXPECT_EQ(shown["seq"], 10);
  EXPECT_EQ(*ExpandAuditLine(lines[0]), lines[0]);  // format 1 is shown as it is
}

TEST_F(AuditUpgradeTest, TamperingOnEitherSideOfTheSwitchIsDetected) {
  WriteLines(V1Lines(7, 3));
  {
    auto a = OpenLog();
    ASSERT_NE(a, nullptr);
    for (int i = 0; i < 4; ++i) {
      ASSERT_OK(a->Record({.event = "tokenize", .outcome = "ok", .status = 201}));
    }
  }
  const auto good = Lines();
  ASSERT_EQ(good.size(), 11u);
  auto check = [&](std::vector<std::string> lines, uint64_t bad_line, const std::string& says) {
    WriteLines(lines);
    auto r = Verify();
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.first_bad_line, bad_line) << r.problem;
    EXPECT_NE(r.problem.find(says), std::string::npos) << r.problem;
  };
  // A format-1 line edited (inside a batch: its own SHA-256 gives it away).
  auto edited = good;
  edited[3].replace(edited[3].find("\"outcome\":\"ok\""), 14, "\"outcome\":\"no\"");
  check(edited, 4, "SHA-256");
  // A format-2 line edited, removed, or two of them swapped.
  edited = good;
  edited[8].replace(edited[8].find("\"o\":\"ok\""), 8, "\"o\":\"no\"");
  check(edited, 9, "does not verify");
  auto removed = good;
  removed.erase(removed.begin() + 9);
  check(removed, 10, "removed");
  auto swapped = good;
  std::swap(swapped[8], swapped[9]);
  check(swapped, 9, "sequence number");
  // The switch marker taken away (the first format-2 line no longer names its link).
  auto unmarked = good;
  const size_t p = unmarked[7].find(",\"v\":2,\"p\":\"");
  unmarked[7].erase(p, 12 + 64 + 1);
  check(unmarked, 8, "does not name the link");
  // A downgrade: a format-2 line rewritten as a format-1 line with a valid SHA-256 link to the
  // line before it. Format 1 never follows format 2.
  auto downgraded = good;
  const std::string body =
      "{\"seq\":9,\"time\":\"2026-12-06T10:00:00Z\",\"event\":\"tokenize\","
      "\"outcome\":\"ok\",\"status\":201,\"prev\":\"" +
      std::string(64, '0') + "\"";
  downgraded[8] = body + ",\"sha\":\"" + crypto::HexEncode(*crypto::Sha256(AsBytes(body))) + "\"}";
  check(downgraded, 9, "format-1 line after format-2");
  // A removed format-1 line.
  auto gap = good;
  gap.erase(gap.begin() + 1);
  check(gap, 2, "removed");
  // The untouched trail still verifies.
  WriteLines(good);
  EXPECT_TRUE(Verify().ok());
}

TEST(AuditNoKeyTest, OpenWithoutTheAuditKeyAsksForInit) {
  ServiceEnv env(/*init_keys=*/false);
  auto a = AuditLog::Open(env.data_.path() + "/audit.log", *env.token_, env.clock_, env.log_);
  ASSERT_THAT(a, Not(IsOk()));
  EXPECT_EQ(a.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(a.status().message().find("opentoken-admin init"), std::string::npos);
}

}  // namespace
}  // namespace otd::service
