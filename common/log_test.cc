#include "common/log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <sstream>
#include <string>
#include <vector>

namespace otd {
namespace {

TEST(LoggerTest, WritesOneJsonObjectPerLine) {
  std::ostringstream out;
  Logger log(out);
  log.Info("listening", {{"path", "/run/x.sock"}, {"port", 8443}, {"tls", true}});
  auto j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["event"], "listening");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["path"], "/run/x.sock");
  EXPECT_EQ(j["port"], 8443);
  EXPECT_EQ(j["tls"], true);
  EXPECT_EQ(out.str().back(), '\n');
}

TEST(LoggerTest, EscapesControlAndNonAsciiBytes) {
  std::ostringstream out;
  Logger log(out);
  log.Warn("odd", {{"v", std::string_view("a\"b\n\x01\xff", 6)}});
  auto j = nlohmann::json::parse(out.str());  // must stay valid JSON
  EXPECT_EQ(j["v"].get<std::string>().substr(0, 4), "a\"b\n");
}

TEST(LoggerTest, DropsBelowMinimumLevel) {
  std::ostringstream out;
  Logger log(out, LogLevel::kWarn);
  log.Info("quiet");
  EXPECT_TRUE(out.str().empty());
}

TEST(LoggerTest, PriorityPrefixPerLevel) {
  std::ostringstream out;
  Logger log(out, LogLevel::kDebug, /*priority_prefix=*/true);
  log.Debug("d");
  log.Info("i");
  log.Warn("w");
  log.Error("e");
  std::istringstream lines(out.str());
  std::string line;
  std::vector<std::string> prefixes;
  while (std::getline(lines, line)) {
    ASSERT_GE(line.size(), 4u);
    prefixes.push_back(line.substr(0, 3));
    // The rest is the unchanged JSON object.
    EXPECT_TRUE(nlohmann::json::accept(line.substr(3))) << line;
  }
  EXPECT_EQ(prefixes, (std::vector<std::string>{"<7>", "<6>", "<4>", "<3>"}));
}

TEST(LoggerTest, NoPrefixByDefault) {
  std::ostringstream out;
  Logger log(out);
  log.Error("e");
  EXPECT_EQ(out.str().front(), '{');
}

TEST(LoggerTest, StdoutIsJournalNeedsTheStreamOfFd1) {
  EXPECT_FALSE(StdoutIsJournal(nullptr));
  EXPECT_FALSE(StdoutIsJournal(""));
  EXPECT_FALSE(StdoutIsJournal("12"));
  EXPECT_FALSE(StdoutIsJournal("12:x"));
  EXPECT_FALSE(StdoutIsJournal(":"));
  struct stat st {};
  ASSERT_EQ(::fstat(1, &st), 0);
  const std::string self =
      std::to_string(static_cast<uint64_t>(st.st_dev)) + ":" + std::to_string(st.st_ino);
  EXPECT_TRUE(StdoutIsJournal(self.c_str()));
  const std::string other =
      std::to_string(static_cast<uint64_t>(st.st_dev)) + ":" + std::to_string(st.st_ino + 1);
  EXPECT_FALSE(StdoutIsJournal(other.c_str()));
  EXPECT_FALSE(StdoutIsJournal((self + "x").c_str()));
}

TEST(LoggerTest, EventObserverSeesEveryEventWhateverTheLevel) {
  std::ostringstream out;
  Logger log(out, LogLevel::kWarn);
  std::vector<std::string> seen;
  log.SetEventObserver([&](LogLevel l, std::string_view e) {
    seen.push_back(std::string(LevelName(l)) + ":" + std::string(e));
  });
  log.Info("quiet");
  log.Error("loud", {{"k", 1}});
  log.SetEventObserver(nullptr);
  log.Error("after");
  EXPECT_EQ(seen, (std::vector<std::string>{"info:quiet", "error:loud"}));
  EXPECT_EQ(out.str().find("quiet"), std::string::npos);
}

TEST(AccessLogFilterTest, OnLogsEverything) {
  AccessLogFilter f({});
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(f.ShouldLog(200, 10));
  }
}

TEST(AccessLogFilterTest, OffLogsOnlyServerErrorsAndSlowRequests) {
  AccessLogFilter f({.mode = AccessLogMode::kOff, .sample_rate = 1, .slow_ms = 50});
  EXPECT_FALSE(f.ShouldLog(200, 10));
  EXPECT_FALSE(f.ShouldLog(404, 49'999));
  EXPECT_TRUE(f.ShouldLog(500, 10));
  EXPECT_TRUE(f.ShouldLog(503, 10));
  EXPECT_TRUE(f.ShouldLog(200, 50'000));
}

TEST(AccessLogFilterTest, SampledLogsOneInN) {
  AccessLogFilter f({.mode = AccessLogMode::kSampled, .sample_rate = 10, .slow_ms = 1000});
  int logged = 0;
  for (int i = 0; i < 100; ++i) {
    logged += f.ShouldLog(200, 10) ? 1 : 0;
  }
  EXPECT_EQ(logged, 10);
  // Errors and slow requests regardless of the sample (and not counted toward it).
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(f.ShouldLog(502, 10));
    EXPECT_TRUE(f.ShouldLog(200, 1'000'000));
  }
}

TEST(AccessLogFilterTest, SampleRateOneIsEverything) {
  AccessLogFilter f({.mode = AccessLogMode::kSampled, .sample_rate = 1, .slow_ms = 1000});
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(f.ShouldLog(200, 10));
  }
}

}  // namespace
}  // namespace otd
