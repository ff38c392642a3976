#pragma once
// Dates that clients send (RFC 3339 profiles), parsed strictly to Unix seconds. Pure functions,
// no locale, no time zone database, no libc parsing (sscanf/strptime accept too much).

#include <cstdint>
#include <optional>
#include <string_view>

namespace otd {

// Exactly "yyyy-mm-ddThh:mm:ssZ" (UTC, no fraction, no offset), a real calendar date, years
// 0000-9999, seconds 00-59. nullopt otherwise.
std::optional<int64_t> ParseUtcSeconds(std::string_view text);

// An RFC 3339 date-time: "yyyy-mm-ddThh:mm:ss" (T or t), an optional fraction of any length
// (truncated to whole seconds), then "Z"/"z" or "+hh:mm"/"-hh:mm" (applied). A leap second (60)
// counts as 59. nullopt for anything else.
std::optional<int64_t> ParseRfc3339(std::string_view text);

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t year, int64_t month, int64_t day);
int64_t DaysInMonth(int64_t year, int64_t month);  // month 1..12

}  // namespace otd
