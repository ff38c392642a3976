#include "common/dates.h"

namespace otd {

namespace {

// `n` ASCII digits at `s[pos]` (the caller checked the length); -1 if any is not a digit.
int64_t Digits(std::string_view s, size_t pos, size_t n) {
  int64_t v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') {
      return -1;
    }
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

bool IsLeapYear(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// "yyyy-mm-ddThh:mm:ss" at the start of `s` (19 characters); nullopt when it is not a real
// date-time. `max_second` is 59, or 60 where a leap second is allowed.
std::optional<int64_t> DateTimePrefix(std::string_view s, int64_t max_second) {
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  const int64_t year = Digits(s, 0, 4);
  const int64_t month = Digits(s, 5, 2);
  const int64_t day = Digits(s, 8, 2);
  const int64_t hour = Digits(s, 11, 2);
  const int64_t minute = Digits(s, 14, 2);
  int64_t second = Digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) ||
      hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > max_second) {
    return std::nullopt;
  }
  second = second > 59 ? 59 : second;
  return DaysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

}  // namespace

int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int64_t DaysInMonth(int64_t y, int64_t m) {
  static constexpr int64_t kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return (m == 2 && IsLeapYear(y)) ? 29 : kDays[m - 1];
}

std::optional<int64_t> ParseUtcSeconds(std::string_view text) {
  if (text.size() != 20 || text[10] != 'T' || text[19] != 'Z') {
    return std::nullopt;
  }
  return DateTimePrefix(text, 59);
}

std::optional<int64_t> ParseRfc3339(std::string_view text) {
  std::optional<int64_t> t = DateTimePrefix(text, 60);
  if (!t) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(19);
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') {
      ++digits;
    }
    if (digits == 0) {
      return std::nullopt;
    }
    rest.remove_prefix(digits);
  }
  if (rest == "Z" || rest == "z") {
    return t;
  }
  if (rest.size() != 6 || (rest[0] != '+' && rest[0] != '-') || rest[3] != ':') {
    return std::nullopt;
  }
  const int64_t oh = Digits(rest, 1, 2);
  const int64_t om = Digits(rest, 4, 2);
  if (oh < 0 || oh > 23 || om < 0 || om > 59) {
    return std::nullopt;
  }
  const int64_t offset = (rest[0] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  return *t - offset;
}

}  // namespace otd
