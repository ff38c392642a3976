#include "common/log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
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

TEST(LoggerTest, EveryByteIsEscapedAsBeforeAndTheLineStaysAscii) {
  // The reference is the escaping the logger used before it appended in place.
  auto reference = [](uint8_t c) -> std::string {
    switch (c) {
      case '"': return "\\\"";
      case '\\': return "\\\\";
      case '\n': return "\\n";
      case '\r': return "\\r";
      case '\t': return "\\t";
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          (void)std::snprintf(buf, sizeof buf, "\\u%04x", c);
          return buf;
        }
        return std::string(1, static_cast<char>(c));
    }
  };
  std::string all;
  std::string want;
  for (int c = 0; c < 256; ++c) {
    all += static_cast<char>(c);
    all += "ab";  // runs of plain bytes between the escaped ones
    want += reference(static_cast<uint8_t>(c)) + "ab";
  }
  EXPECT_EQ(JsonEscape(all), want);
  std::string appended = "prefix:";
  JsonEscapeTo(appended, all);
  EXPECT_EQ(appended, "prefix:" + want);
  EXPECT_EQ(JsonEscape(""), "");
  EXPECT_EQ(JsonEscape("plain"), "plain");
  for (char c : want) {
    EXPECT_TRUE(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f);
  }
}

TEST(LoggerTest, TimestampsAreUtcWithMillisecondsLikeGmtime) {
  using std::chrono::milliseconds;
  using std::chrono::system_clock;
  auto reference = [](system_clock::time_point t) {
    const auto ms = std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[96];
    (void)std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(ms % 1000));
    return std::string(buf);
  };
  std::vector<int64_t> at_ms = {0,
                                999,
                                1000,
                                951782399999,
                                951782400000,
                                1709164800000,
                                1709251199999,
                                4102444799999,
                                1798761599999,
                                7258118399999};
  std::mt19937_64 rng(20261206);
  std::uniform_int_distribution<int64_t> any(0, 7258118399999);  // to 2199-12-31 (system_clock: ns)
  for (int i = 0; i < 20000; ++i) {
    at_ms.push_back(any(rng));
  }
  for (int64_t m : at_ms) {
    const system_clock::time_point t{milliseconds(m)};
    std::string got;
    AppendUtcTimestamp(got, t);
    ASSERT_EQ(got, reference(t)) << m << " ms";
  }
  std::string now;  // sub-millisecond parts are cut, never rounded up
  AppendUtcTimestamp(now,
                     system_clock::time_point{milliseconds(1500) + std::chrono::microseconds(999)});
  EXPECT_EQ(now, "1970-01-01T00:00:01.500Z");
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
