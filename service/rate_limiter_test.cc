#include "service/rate_limiter.h"

#include <gtest/gtest.h>

namespace otd::service {
namespace {

TEST(RateLimiterTest, FreeFailuresThenGrowingDelays) {
  FakeClock clock(1000);
  RateLimiter rl(clock, {.free_failures = 3, .base_delay_seconds = 2, .max_delay_seconds = 60});
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(rl.RetryAfter("a"), 0);
    rl.RecordFailure("a");
  }
  EXPECT_EQ(rl.RetryAfter("a"), 0);
  rl.RecordFailure("a");  // 4th: 2 s
  EXPECT_EQ(rl.RetryAfter("a"), 2);
  clock.Advance(2);
  rl.RecordFailure("a");  // 5th: 4 s
  EXPECT_EQ(rl.RetryAfter("a"), 4);
  for (int i = 0; i < 20; ++i) {
    rl.RecordFailure("a");
  }
  EXPECT_EQ(rl.RetryAfter("a"), 60);  // capped
  EXPECT_EQ(rl.RetryAfter("b"), 0);   // other keys unaffected
}

TEST(RateLimiterTest, SuccessAndTimeForget) {
  FakeClock clock(1000);
  RateLimiter rl(clock, {.free_failures = 0, .base_delay_seconds = 10, .forget_after_seconds = 100});
  rl.RecordFailure("a");
  EXPECT_EQ(rl.RetryAfter("a"), 10);
  rl.RecordSuccess("a");
  EXPECT_EQ(rl.RetryAfter("a"), 0);
  rl.RecordFailure("b");
  clock.Advance(101);
  EXPECT_EQ(rl.RetryAfter("b"), 0);
}

TEST(RateLimiterTest, TableStaysBounded) {
  FakeClock clock(1000);
  RateLimiter rl(clock, {.free_failures = 0, .base_delay_seconds = 10, .max_entries = 100});
  for (int i = 0; i < 1000; ++i) {
    clock.Advance(1);
    rl.RecordFailure("k" + std::to_string(i));
  }
  EXPECT_GT(rl.RetryAfter("k999"), 0);  // the newest entries survive
}

}  // namespace
}  // namespace otd::service
