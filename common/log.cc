#include "common/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <ostream>

#include "common/bytes.h"

namespace otd {

namespace {

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  (void)std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      static_cast<int>(ms));
  return buf;
}

}  // namespace

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (uint8_t c : AsBytes(s)) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          // Non-ASCII bytes are escaped one by one, so a log line is always valid ASCII JSON.
          char buf[8];
          (void)std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void Logger::Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (level < min_) {
    return;
  }
  std::string line = "{\"ts\":\"" + Timestamp() + "\",\"level\":\"" + LevelName(level) +
                     "\",\"event\":\"" + JsonEscape(event) + "\"";
  for (const auto& f : fields) {
    line += ",\"" + JsonEscape(f.key) + "\":";
    if (auto* s = std::get_if<std::string_view>(&f.value)) {
      line += "\"" + JsonEscape(*s) + "\"";
    } else if (auto* i = std::get_if<int64_t>(&f.value)) {
      line += std::to_string(*i);
    } else {
      line += std::get<bool>(f.value) ? "true" : "false";
    }
  }
  line += "}\n";
  std::lock_guard lock(mu_);
  out_ << line << std::flush;
}

}  // namespace otd
