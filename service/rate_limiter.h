#pragma once
// Brute-force protection for logins: counts failures per key (an account id, a peer) and, after
// `free_failures`, makes the key wait an exponentially growing delay (base_delay · 2^(n-free-1),
// capped at max_delay) before the next attempt is even evaluated. A success clears the account's
// count. Entries are forgotten `forget_after` seconds after the last failure, and the table is
// bounded (oldest entries evicted first), so memory stays bounded under a flood of ids.
//
// Thread safety: thread safe.

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"

namespace otd::service {

struct RateLimitOptions {
  uint32_t free_failures = 5;
  int64_t base_delay_seconds = 1;
  int64_t max_delay_seconds = 900;
  int64_t forget_after_seconds = 3600;
  size_t max_entries = 100'000;
};

class RateLimiter {
 public:
  RateLimiter(const Clock& clock, RateLimitOptions options) : clock_(clock), options_(options) {}

  // Seconds until `key` may try again; 0 when allowed now.
  int64_t RetryAfter(std::string_view key);
  void RecordFailure(std::string_view key);
  void RecordSuccess(std::string_view key);

 private:
  struct Entry {
    uint32_t failures = 0;
    int64_t last_failure = 0;
    int64_t blocked_until = 0;
  };
  void EvictIfFull(int64_t now);
  const Clock& clock_;
  RateLimitOptions options_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace otd::service
