#include "common/log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

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

}  // namespace
}  // namespace otd
