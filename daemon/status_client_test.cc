#include "daemon/status_client.h"

#include <gtest/gtest.h>

#include <string>

namespace otd::daemon {
namespace {

std::string Answer(const std::string& code, const std::string& body) {
  return "HTTP/1.1 " + code + " X\r\nContent-Type: application/json\r\n\r\n" + body;
}

TEST(StatusClientTest, ClassifiesTheDaemonsAnswer) {
  EXPECT_EQ(ClassifyStatusAnswer(Answer("200", R"({"status":"healthy"})")).state,
            DaemonState::kHealthy);
  auto sick = ClassifyStatusAnswer(Answer("503", R"({"status":"unhealthy","detail":"token"})"));
  EXPECT_EQ(sick.state, DaemonState::kUnhealthy);
  EXPECT_EQ(StatusJson(sick)["detail"], "token");
  // Anything else: cannot tell (3), never "healthy".
  for (const std::string& raw :
       {Answer("404", "{}"), Answer("200", R"({"status":"unhealthy"})"),
        Answer("503", R"({"status":"healthy"})"), Answer("200", "not json"),
        Answer("200", R"({"status":"healthy","status":"x"})"), std::string("garbage"),
        std::string("")}) {
    EXPECT_EQ(ClassifyStatusAnswer(raw).state, DaemonState::kUnknown) << raw;
  }
}

TEST(StatusClientTest, AbsentSocketIsNotRunning) {
  auto s = QueryDaemonStatus("/nonexistent-dir/metrics.sock", 1000);
  EXPECT_EQ(s.state, DaemonState::kNotRunning);
  EXPECT_EQ(StatusJson(s)["status"], "not-running");
  EXPECT_EQ(static_cast<int>(DaemonState::kNotRunning), 2);
  EXPECT_EQ(StatusText(s).rfind("not running: ", 0), 0u);
}

}  // namespace
}  // namespace otd::daemon
