#include "common/log.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <ostream>

#include "common/bytes.h"

namespace otd {

namespace {

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

bool AccessLogFilter::ShouldLog(unsigned status, int64_t latency_us) {
  if (o_.mode == AccessLogMode::kOn) {
    return true;
  }
  if (status >= 500 || latency_us >= int64_t{o_.slow_ms} * 1000) {
    return true;
  }
  if (o_.mode == AccessLogMode::kOff) {
    return false;
  }
  const uint64_t n = seen_.fetch_add(1, std::memory_order_relaxed);
  return n % std::max<uint32_t>(1, o_.sample_rate) == 0;
}

std::string_view LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

void Logger::SetEventObserver(EventObserver observer) {
  std::lock_guard lock(mu_);
  observer_ = std::move(observer);
}

std::string_view PriorityPrefix(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "<7>";  // SD_DEBUG
    case LogLevel::kInfo: return "<6>";   // SD_INFO
    case LogLevel::kWarn: return "<4>";   // SD_WARNING
    case LogLevel::kError: return "<3>";  // SD_ERR
  }
  return "<6>";
}

bool StdoutIsJournal(const char* journal_stream) {
  if (journal_stream == nullptr) {
    return false;
  }
  const std::string_view v(journal_stream);
  const size_t colon = v.find(':');
  if (colon == std::string_view::npos) {
    return false;
  }
  uint64_t dev = 0;
  uint64_t ino = 0;
  auto d = std::from_chars(v.data(), v.data() + colon, dev);
  auto i = std::from_chars(v.data() + colon + 1, v.data() + v.size(), ino);
  if (d.ec != std::errc() || d.ptr != v.data() + colon || i.ec != std::errc() ||
      i.ptr != v.data() + v.size()) {
    return false;
  }
  struct stat st {};
  if (::fstat(1, &st) != 0) {
    return false;
  }
  return static_cast<uint64_t>(st.st_dev) == dev && static_cast<uint64_t>(st.st_ino) == ino;
}

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
    std::lock_guard lock(mu_);
    if (observer_) {
      observer_(level, event);
    }
    return;
  }
  std::string line;
  if (priority_prefix_) {
    line = PriorityPrefix(level);
  }
  line += "{\"ts\":\"" + Timestamp() + "\",\"level\":\"" + std::string(LevelName(level)) +
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
  if (observer_) {
    observer_(level, event);
  }
  out_ << line << std::flush;
}

}  // namespace otd
