#pragma once
// Operational log: one JSON object per line on a stream (stdout under systemd -> journald).
// Fields are typed and named; there is deliberately no way to log a SecretBytes, a request body,
// a token id or an e-mail address. Thread safe.
//
// Priorities for journald: with `priority_prefix`, every line starts with the syslog priority of
// its level as sd-daemon(3) defines it (`<7>` debug, `<6>` info, `<4>` warn, `<3>` error), which
// journald strips and stores as PRIORITY=, so `journalctl -p err` selects the error lines. The
// rest of the line is the same JSON object. StdoutIsJournal() tells whether stdout is connected
// to journald (systemd sets JOURNAL_STREAM=<dev>:<inode> of that stream, systemd.exec(5)).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>

namespace otd {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

struct LogField {
  std::string_view key;
  std::variant<std::string_view, int64_t, bool> value;
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, int64_t v) : key(k), value(v) {}
  LogField(std::string_view k, int v) : key(k), value(int64_t{v}) {}
  LogField(std::string_view k, unsigned v) : key(k), value(int64_t{v}) {}
  LogField(std::string_view k, uint64_t v) : key(k), value(static_cast<int64_t>(v)) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
};

class Logger {
 public:
  // Writes to `out` (not owned; must outlive the logger).
  explicit Logger(std::ostream& out, LogLevel min = LogLevel::kInfo, bool priority_prefix = false)
      : out_(out), min_(min), priority_prefix_(priority_prefix) {}
  void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});
  void Debug(std::string_view event, std::initializer_list<LogField> f = {}) {
    Log(LogLevel::kDebug, event, f);
  }
  void Info(std::string_view event, std::initializer_list<LogField> f = {}) {
    Log(LogLevel::kInfo, event, f);
  }
  void Warn(std::string_view event, std::initializer_list<LogField> f = {}) {
    Log(LogLevel::kWarn, event, f);
  }
  void Error(std::string_view event, std::initializer_list<LogField> f = {}) {
    Log(LogLevel::kError, event, f);
  }

  // Called for every event logged, whatever the minimum level (so counts do not depend on
  // log_level or log.access), with the level and the event name (a constant of the code, a
  // bounded set: safe as a metric label). Null: none. Called under the logger's lock: it must be
  // quick and must not log. Set it before other threads log, clear it before what it uses dies.
  using EventObserver = std::function<void(LogLevel, std::string_view event)>;
  void SetEventObserver(EventObserver observer);

 private:
  std::ostream& out_;
  LogLevel min_;
  bool priority_prefix_;
  std::mutex mu_;
  EventObserver observer_;  // guarded by mu_
};

// Which per-request access lines ("http_request") are written (config `log.access`):
//   kOn: every one (the default); kOff: none; kSampled: one in `sample_rate` (the first, then
//   every sample_rate-th; the lines carry "sample_rate"). In kOff and kSampled, a request answered
//   with a 5xx status or slower than `slow_ms` is always logged.
enum class AccessLogMode { kOn, kOff, kSampled };

struct AccessLogOptions {
  AccessLogMode mode = AccessLogMode::kOn;
  uint32_t sample_rate = 100;  // kSampled: 1 in this many (>= 1)
  uint32_t slow_ms = 1000;     // kOff/kSampled: at least this slow is always logged
};

// Thread safe (one relaxed atomic counter).
class AccessLogFilter {
 public:
  explicit AccessLogFilter(AccessLogOptions o) : o_(o) {}
  // Whether this request's access line is written; counts it toward the sample.
  bool ShouldLog(unsigned status, int64_t latency_us);
  const AccessLogOptions& options() const { return o_; }

 private:
  AccessLogOptions o_;
  std::atomic<uint64_t> seen_{0};
};

// The sd-daemon(3) prefix of a level: "<7>", "<6>", "<4>" or "<3>".
std::string_view PriorityPrefix(LogLevel level);

// True when stdout is the stream systemd connected to journald: JOURNAL_STREAM (`journal_stream`,
// normally getenv("JOURNAL_STREAM"); null or malformed: false) names the device and inode of fd 1.
bool StdoutIsJournal(const char* journal_stream);

// "debug", "info", "warn" or "error".
std::string_view LevelName(LogLevel level);

// JSON string escaping used by the logger (control characters and non-UTF-8 bytes escaped).
std::string JsonEscape(std::string_view s);
// The same, appended to `out` (no temporary string).
void JsonEscapeTo(std::string& out, std::string_view s);

// Appends `t` as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, milliseconds truncated; from 1970), the
// logger's "ts". Plain arithmetic: no call into the C library's time functions, whose glibc
// versions take a process-wide time zone lock even for UTC.
void AppendUtcTimestamp(std::string& out, std::chrono::system_clock::time_point t);

}  // namespace otd
