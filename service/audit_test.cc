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
  EXPECT_NE(lines[0].find("\"seq\":1,"), std::string::npos);
  EXPECT_NE(lines[0].find(std::string("\"prev\":\"") + std::string(64, '0')), std::string::npos);
  EXPECT_NE(lines[4].find("\"seq\":5,"), std::string::npos);
  EXPECT_NE(lines[0].find("\"event\":\"detokenize\""), std::string::npos);
  // The same account hashes to the same value in every line; different objects differ.
  auto field = [](const std::string& l, const std::string& name) {
    size_t at = l.find("\"" + name + "\":\"");
    return at == std::string::npos ? std::string() : l.substr(at + name.size() + 4, 32);
  };
  EXPECT_EQ(field(lines[0], "account"), field(lines[4], "account"));
  EXPECT_EQ(field(lines[0], "account").size(), 32u);
  EXPECT_NE(field(lines[0], "object"), field(lines[1], "object"));
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
  size_t at = lines[3].find("\"outcome\":\"ok\"");
  ASSERT_NE(at, std::string::npos);
  lines[3].replace(at, 14, "\"outcome\":\"no\"");
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_line, 4u);
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
    out << "{\"seq\":6,\"time\":\"2027";  // a crash in the middle of a write
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
  EXPECT_NE(lines[0].find("\"seq\":5,"), std::string::npos) << lines[0];
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

// Lines written in one group commit: only the last is MAC'd in the token, the others carry a
// SHA-256 that the MAC covers through the chain. Writes until such a batch exists.
class AuditBatchTest : public AuditTest {
 protected:
  static constexpr size_t kLinkChars = 64;
  static constexpr size_t kFieldChars = 8;  // ,"sha":"  or  ,"mac":"
  static bool IsSha(const std::string& l) { return l.find(",\"sha\":\"") != std::string::npos; }
  static std::string Body(const std::string& l) {
    return l.substr(0, l.size() - 2 - kLinkChars - kFieldChars);
  }
  static std::string Link(const std::string& l) {
    return l.substr(l.size() - 2 - kLinkChars, kLinkChars);
  }
  static std::string Sha(const std::string& body) {
    auto h = crypto::Sha256(AsBytes(body));
    return h.ok() ? crypto::HexEncode(*h) : std::string();
  }
  // Writes concurrently until some line is SHA-linked; returns the lines.
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
      if (std::any_of(lines.begin(), lines.end(), IsSha))
        return lines;
    }
    ADD_FAILURE() << "no batch of more than one line was ever written";
    return {};
  }
};

TEST_F(AuditBatchTest, ABatchTakesOneMacAndVerifies) {
  auto lines = WriteBatches();
  ASSERT_FALSE(lines.empty());
  const auto macs = std::count_if(lines.begin(), lines.end(), [](auto& l) { return !IsSha(l); });
  EXPECT_LT(static_cast<size_t>(macs), lines.size());
  EXPECT_FALSE(IsSha(lines.back()));  // the file always ends with a MAC'd line
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.first_bad_line << ": " << r.problem;
  EXPECT_EQ(r.lines, lines.size());
}

TEST_F(AuditBatchTest, AnEditInsideABatchIsCaughtEvenWithTheHashesRecomputed) {
  auto lines = WriteBatches();
  ASSERT_FALSE(lines.empty());
  size_t k = 0;
  while (!IsSha(lines[k]))
    ++k;
  // The batch runs from just after the previous MAC'd line to the next MAC'd line.
  size_t first = k;
  while (first > 0 && IsSha(lines[first - 1]))
    --first;
  size_t m = k;
  while (IsSha(lines[m]))
    ++m;

  // A naive edit: the line's own hash gives it away, at that line.
  auto naive = lines;
  size_t at = naive[k].find("\"outcome\":\"ok\"");
  ASSERT_NE(at, std::string::npos);
  naive[k].replace(at, 14, "\"outcome\":\"no\"");
  WriteLines(naive);
  auto r = Verify();
  EXPECT_EQ(r.first_bad_line, k + 1);
  EXPECT_NE(r.problem.find("SHA-256"), std::string::npos) << r.problem;

  // A careful edit: every hash after it recomputed up to the MAC'd line, whose MAC cannot be.
  auto forged = lines;
  forged[k] = naive[k];
  for (size_t i = k; i < m; ++i) {
    std::string body = Body(forged[i]);
    if (i > k) {
      size_t p = body.rfind("\"prev\":\"");
      body.replace(p + 8, kLinkChars, Link(forged[i - 1]));
    }
    forged[i] = body + ",\"sha\":\"" + Sha(body) + "\"}";
  }
  std::string mac_body = Body(forged[m]);
  mac_body.replace(mac_body.rfind("\"prev\":\"") + 8, kLinkChars, Link(forged[m - 1]));
  forged[m] = mac_body + ",\"mac\":\"" + Link(forged[m]) + "\"}";
  WriteLines(forged);
  r = Verify();
  EXPECT_EQ(r.first_bad_line, first + 1) << r.problem;  // the first line the MAC vouches for
  EXPECT_NE(r.problem.find("does not verify"), std::string::npos) << r.problem;
  EXPECT_NE(
      r.problem.find("covers lines " + std::to_string(first + 1) + ".." + std::to_string(m + 1)),
      std::string::npos)
      << r.problem;
}

TEST_F(AuditBatchTest, AFileCutInsideABatchIsReportedAndCutBackAtOpen) {
  auto lines = WriteBatches();
  ASSERT_FALSE(lines.empty());
  size_t k = 0;
  while (!IsSha(lines[k]))
    ++k;
  lines.resize(k + 1);  // ends with a SHA-linked line: its batch's MAC is missing
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.problem.find("not covered by a MAC"), std::string::npos) << r.problem;
  size_t last_mac = k;
  while (last_mac > 0 && IsSha(lines[last_mac - 1]))
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
  EXPECT_EQ(ids->account.size(), 32u);
  EXPECT_EQ(ids->object.size(), 32u);
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
  EXPECT_EQ(field(lines[1], "account"), field(lines[0], "account"));
  EXPECT_EQ(field(lines[1], "object"), field(lines[0], "object"));
  EXPECT_EQ(field(lines[1], "account"), ids->account);
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

TEST(AuditNoKeyTest, OpenWithoutTheAuditKeyAsksForInit) {
  ServiceEnv env(/*init_keys=*/false);
  auto a = AuditLog::Open(env.data_.path() + "/audit.log", *env.token_, env.clock_, env.log_);
  ASSERT_THAT(a, Not(IsOk()));
  EXPECT_EQ(a.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(a.status().message().find("opentoken-admin init"), std::string::npos);
}

}  // namespace
}  // namespace otd::service
