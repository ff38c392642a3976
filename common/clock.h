#pragma once
// Clock seam: services take a Clock& so tests can move time (FakeClock).
// Thread safety: all methods may be called concurrently.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

namespace otd {

// RFC 3339 UTC date-time of Unix seconds: "2026-11-23T10:00:00Z", or with `millis`
// "2026-11-23T10:00:00.000Z" (the documents' shape for API dates).
inline std::string IsoUtc(int64_t seconds, bool millis = false) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  (void)std::strftime(buf, sizeof buf, millis ? "%Y-%m-%dT%H:%M:%S.000Z" : "%Y-%m-%dT%H:%M:%SZ",
                      &tm);
  return buf;
}

class Clock {
 public:
  virtual ~Clock() = default;
  // Seconds since the Unix epoch (UTC).
  virtual int64_t NowSeconds() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowSeconds() const override {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now) : now_(now) {}
  int64_t NowSeconds() const override { return now_.load(); }
  void Set(int64_t now) { now_.store(now); }
  void Advance(int64_t seconds) { now_.fetch_add(seconds); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace otd
