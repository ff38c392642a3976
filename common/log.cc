#include "common/log.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <ostream>

#include "common/bytes.h"

namespace otd {

namespace {

// Appends `v` as exactly `width` decimal digits (v >= 0, v < 10^width).
void AppendDigits(std::string& out, unsigned v, int width) {
  char buf[8];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  out.append(buf, static_cast<size_t>(width));
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

void AppendUtcTimestamp(std::string& out, std::chrono::system_clock::time_point t) {
  using std::chrono::days;
  using std::chrono::floor;
  using std::chrono::milliseconds;
  const auto ms = floor<milliseconds>(t);
  const auto day = floor<days>(ms);
  const std::chrono::year_month_day ymd{day};
  const std::chrono::hh_mm_ss hms{ms - day};
  AppendDigits(out, static_cast<unsigned>(static_cast<int>(ymd.year())), 4);
  out += '-';
  AppendDigits(out, static_cast<unsigned>(ymd.month()), 2);
  out += '-';
  AppendDigits(out, static_cast<unsigned>(ymd.day()), 2);
  out += 'T';
  AppendDigits(out, static_cast<unsigned>(hms.hours().count()), 2);
  out += ':';
  AppendDigits(out, static_cast<unsigned>(hms.minutes().count()), 2);
  out += ':';
  AppendDigits(out, static_cast<unsigned>(hms.seconds().count()), 2);
  out += '.';
  AppendDigits(out, static_cast<unsigned>(hms.subseconds().count()), 3);
  out += 'Z';
}

void JsonEscapeTo(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t plain = 0;  // start of the run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      continue;
    }
    out.append(s.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        // Non-ASCII bytes are escaped one by one, so a log line is always valid ASCII JSON.
        const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out.append(u, sizeof u);
      }
    }
  }
  out.append(s.data() + plain, s.size() - plain);
}

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  JsonEscapeTo(out, s);
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
  // Built in place in one buffer (an access line is ~250 B): no temporary per field.
  std::string line;
  line.reserve(320);
  if (priority_prefix_) {
    line += PriorityPrefix(level);
  }
  line += "{\"ts\":\"";
  AppendUtcTimestamp(line, std::chrono::system_clock::now());
  line += "\",\"level\":\"";
  line += LevelName(level);
  line += "\",\"event\":\"";
  JsonEscapeTo(line, event);
  line += '"';
  for (const auto& f : fields) {
    line += ",\"";
    JsonEscapeTo(line, f.key);
    line += "\":";
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
      line += '"';
      JsonEscapeTo(line, *s);
      line += '"';
    } else if (const auto* i = std::get_if<int64_t>(&f.value)) {
      char buf[24];
      const auto r = std::to_chars(buf, buf + sizeof buf, *i);
      line.append(buf, r.ptr);
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
