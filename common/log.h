#pragma once
// Operational log: one JSON object per line on a stream (stdout under systemd -> journald).
// Fields are typed and named; there is deliberately no way to log a SecretBytes, a request body,
// a token id or an e-mail address. Thread safe.

#include <cstdint>
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
  explicit Logger(std::ostream& out, LogLevel min = LogLevel::kInfo) : out_(out), min_(min) {}
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

 private:
  std::ostream& out_;
  LogLevel min_;
  std::mutex mu_;
};

// JSON string escaping used by the logger (control characters and non-UTF-8 bytes escaped).
std::string JsonEscape(std::string_view s);

}  // namespace otd
