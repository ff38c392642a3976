#pragma once
// ASCII case folding for protocol text: HTTP field names and schemes, media types, percent
// escapes, hex ids. Only 'A'-'Z' fold; every other byte (also >= 0x80) compares as itself, which
// is what the protocols define and what std::tolower does in the "C" locale, without a call into
// the C library per byte and without depending on the process's locale. Reads exactly the bytes
// of its arguments (Boost 1.74's beast::iequals reads one past the end of both).

#include <cstddef>
#include <string>
#include <string_view>

namespace otd {

constexpr char AsciiLower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// `s` with 'A'-'Z' folded to 'a'-'z'.
inline std::string AsciiLowerCopy(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = AsciiLower(c);
  }
  return out;
}

constexpr bool AsciiEqualsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) {
      return false;
    }
  }
  return true;
}

constexpr bool AsciiStartsWithIgnoreCase(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && AsciiEqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

}  // namespace otd
