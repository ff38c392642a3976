#include "service/rate_limiter.h"

#include <algorithm>

namespace otd::service {

int64_t RateLimiter::Wait(const Entry& e, int64_t now) const {
  if (e.failures == 0 || now - e.last_failure > options_.forget_after_seconds) {
    return 0;
  }
  return std::max<int64_t>(0, e.blocked_until - now);
}

int64_t RateLimiter::Fail(const RateLimitOptions& o, Entry& e, int64_t now) {
  if (e.failures > 0 && now - e.last_failure > o.forget_after_seconds) {
    e = Entry{};
  }
  ++e.failures;
  e.last_failure = now;
  if (e.failures > o.free_failures) {
    uint32_t over = e.failures - o.free_failures - 1;
    int64_t delay = o.max_delay_seconds;
    if (over < 30) {
      delay = std::min(o.max_delay_seconds, o.base_delay_seconds << over);
    }
    e.blocked_until = now + delay;
  }
  return now + o.forget_after_seconds + 1;
}

int64_t RateLimiter::RetryAfter(std::string_view key) {
  int64_t now = clock_.NowSeconds();
  int64_t wait = 0;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(std::string(key));
    if (it != entries_.end()) {
      if (now - it->second.last_failure > options_.forget_after_seconds) {
        entries_.erase(it);
      } else {
        wait = Wait(it->second, now);
      }
    }
  }
  if (shared_ != nullptr) {
    if (auto stored = shared_->Read(name_, key); stored.ok() && stored->has_value()) {
      wait = std::max(wait, Wait(**stored, now));
    }
  }
  return wait;
}

void RateLimiter::RecordLocal(std::string_view key, int64_t now) {
  std::lock_guard lock(mu_);
  EvictIfFull(now);
  Fail(options_, entries_[std::string(key)], now);
}

void RateLimiter::RecordFailure(std::string_view key) {
  int64_t now = clock_.NowSeconds();
  RecordLocal(key, now);
  if (shared_ != nullptr) {
    // An error leaves the in-memory count (the check takes the longer of both).
    (void)shared_->Update(name_, key, [o = options_, now](Entry& e) { return Fail(o, e, now); });
  }
}

void RateLimiter::RecordFailureAsync(std::string_view key) {
  int64_t now = clock_.NowSeconds();
  RecordLocal(key, now);
  if (shared_ != nullptr) {
    shared_->UpdateAsync(name_, key, [o = options_, now](Entry& e) { return Fail(o, e, now); });
  }
}

void RateLimiter::RecordSuccess(std::string_view key) {
  {
    std::lock_guard lock(mu_);
    entries_.erase(std::string(key));
  }
  if (shared_ != nullptr) {
    (void)shared_->Erase(name_, key);
  }
}

void RateLimiter::EvictIfFull(int64_t now) {
  if (entries_.size() < options_.max_entries) {
    return;
  }
  // First drop forgotten entries; if still full, drop the oldest failure.
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now - it->second.last_failure > options_.forget_after_seconds) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  while (entries_.size() >= options_.max_entries) {
    auto oldest = std::min_element(
        entries_.begin(), entries_.end(),
        [](const auto& a, const auto& b) { return a.second.last_failure < b.second.last_failure; });
    entries_.erase(oldest);
  }
}

namespace {

// The RateLimiter blocks from the count after `free_failures` on; Step lets a step through when
// no key is blocked yet and then counts it, so the step that reaches the allowance must be the
// one that starts the wait.
RateLimitOptions WaitAfterLastFreeStep(RateLimitOptions o) {
  o.free_failures = o.free_failures > 0 ? o.free_failures - 1 : 0;
  return o;
}

}  // namespace

StepLimiter::StepLimiter(const Clock& clock, RateLimitOptions options, SharedLimits* shared,
                         std::string_view name)
    : limiter_(clock, WaitAfterLastFreeStep(options), shared, name) {}

int64_t StepLimiter::RetryAfter(std::string_view key) { return limiter_.RetryAfter(key); }

void StepLimiter::Count(std::string_view key) { limiter_.RecordFailure(key); }

int64_t Step(std::initializer_list<std::pair<StepLimiter*, std::string_view>> limits) {
  int64_t wait = 0;
  for (const auto& [limiter, key] : limits) {
    wait = std::max(wait, limiter->RetryAfter(key));
  }
  if (wait > 0) {
    return wait;  // refused steps do not count again
  }
  for (const auto& [limiter, key] : limits) {
    limiter->Count(key);
  }
  return 0;
}

}  // namespace otd::service
