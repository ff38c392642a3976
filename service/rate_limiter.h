#pragma once
// Brute-force protection for logins: counts failures per key (an account id, a peer) and, after
// `free_failures`, makes the key wait an exponentially growing delay (base_delay · 2^(n-free-1),
// capped at max_delay) before the next attempt is even evaluated. A success clears the account's
// count. Entries are forgotten `forget_after` seconds after the last failure, and the table is
// bounded (oldest entries evicted first), so memory stays bounded under a flood of ids.
//
// Shared counts: given a SharedLimits (service/shared_limits.h: the daemons of one PostgreSQL
// database) and a limiter name, every count also goes to the store under that name, and a check
// answers the longer of the in-memory and the stored wait. The stored count includes this node's
// steps, so it is never shorter; the in-memory one is what remains when the store is unreachable
// (a store error never opens a limit). Without one (LMDB: one process) counts stay in memory.
//
// Thread safety: thread safe.

#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/clock.h"
#include "service/shared_limits.h"

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
  // `shared` (may be null: in memory only) must outlive the limiter; `name` (a string literal)
  // tells this limiter's records from the others' (part of the keyed hash).
  RateLimiter(const Clock& clock, RateLimitOptions options, SharedLimits* shared = nullptr,
              std::string_view name = "")
      : clock_(clock), options_(options), shared_(shared), name_(name) {}

  // Seconds until `key` may try again; 0 when allowed now.
  int64_t RetryAfter(std::string_view key);
  void RecordFailure(std::string_view key);
  // Counts at once in memory; the shared count is committed without waiting (for paths that
  // must not wait for the disk).
  void RecordFailureAsync(std::string_view key);
  void RecordSuccess(std::string_view key);

 private:
  using Entry = LimitEntry;
  // Adds a failure at `now` to `e`; returns when the entry is forgotten.
  static int64_t Fail(const RateLimitOptions& o, Entry& e, int64_t now);
  int64_t Wait(const Entry& e, int64_t now) const;
  void RecordLocal(std::string_view key, int64_t now);
  void EvictIfFull(int64_t now);
  const Clock& clock_;
  RateLimitOptions options_;
  SharedLimits* shared_;
  const std::string_view name_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

// Counts every step (a request, not only failures) per key: `free_failures` steps pass, the step
// that uses the allowance up starts the wait (base_delay · 2^k, capped), a refused step does not
// count, and a client that waits as long as the answer's Retry-After says is let through once
// more (then waits twice as long). Used where anyone may ask for work to be done (mail,
// registrations), so the limit says nothing about whether an address is known.
//
// Thread safety: thread safe (a check and its count are not one atomic step: two racing requests
// may both pass the last free step).
class StepLimiter {
 public:
  StepLimiter(const Clock& clock, RateLimitOptions options, SharedLimits* shared = nullptr,
              std::string_view name = "");
  // Seconds until a step for `key` may pass; 0 now.
  int64_t RetryAfter(std::string_view key);
  void Count(std::string_view key);

 private:
  RateLimiter limiter_;
};

// One step counted against several limiters at once (an address and a peer): 0 when it passes
// (and is counted by each), otherwise the longest wait (nothing counted).
int64_t Step(std::initializer_list<std::pair<StepLimiter*, std::string_view>> limits);

}  // namespace otd::service
