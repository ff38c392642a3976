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
  RateLimiter rl(clock,
                 {.free_failures = 0, .base_delay_seconds = 10, .forget_after_seconds = 100});
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

// Regression (issue 14): with the plain RateLimiter counted before the check, a client that
// waited as long as Retry-After said was refused again, every time, with a doubled wait.
TEST(StepLimiterTest, TheAllowancePassesAndAClientThatWaitsPassesOnce) {
  FakeClock clock(1000);
  StepLimiter address(clock, {.free_failures = 3,
                              .base_delay_seconds = 60,
                              .max_delay_seconds = 3600,
                              .forget_after_seconds = 86'400});
  StepLimiter peer(clock, {.free_failures = 50,
                           .base_delay_seconds = 60,
                           .max_delay_seconds = 3600,
                           .forget_after_seconds = 3600});
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Step({{&address, "a"}, {&peer, "p"}}), 0) << i;
  }
  const int64_t wait = Step({{&address, "a"}, {&peer, "p"}});
  EXPECT_EQ(wait, 60);                                   // the third step started the wait
  EXPECT_EQ(Step({{&address, "a"}, {&peer, "p"}}), 60);  // refused steps do not count
  EXPECT_EQ(Step({{&address, "b"}, {&peer, "p"}}), 0);   // another address is not held up
  clock.Advance(wait);
  EXPECT_EQ(Step({{&address, "a"}, {&peer, "p"}}), 0);    // waited as told: passes once
  EXPECT_EQ(Step({{&address, "a"}, {&peer, "p"}}), 120);  // then the wait doubles
  clock.Advance(3600);
  // An hour later the address is not forgotten: the step passes, and the wait keeps doubling
  // instead of a fresh allowance of three.
  EXPECT_EQ(Step({{&address, "a"}, {&peer, "p"}}), 0);
  EXPECT_EQ(Step({{&address, "a"}, {&peer, "p"}}), 240);
}

}  // namespace
}  // namespace otd::service
