#include "api/ot1.h"

#include <algorithm>
#include <cstring>

#include "common/dates.h"

namespace otd::api::ot1 {

namespace {

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && IsOws(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
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

// RFC 9110 §5.6.2 tchar.
bool IsTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool IsToken(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), IsTchar); }

bool IsAccessCodeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

bool IsControl(char c) {
  auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

int LowerHexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

Status Fail(const char* reason) { return Unauthenticated(std::string("ot1: ") + reason); }

Status ParseSignedHeaders(std::string_view value, std::vector<std::string>& out) {
  size_t i = 0;
  while (i < value.size()) {
    if (IsOws(value[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < value.size() && !IsOws(value[end])) {
      ++end;
    }
    std::string_view name = value.substr(i, end - i);
    i = end;
    if (!IsToken(name)) {
      return Fail("signed-headers: invalid header name");
    }
    std::string lower(name.size(), '\0');
    std::transform(name.begin(), name.end(), lower.begin(), AsciiLower);
    if (std::find(out.begin(), out.end(), lower) != out.end()) {
      return Fail("signed-headers: duplicate header name");
    }
    out.push_back(std::move(lower));
  }
  for (std::string_view mandatory : kMandatorySignedHeaders) {
    if (std::find(out.begin(), out.end(), mandatory) == out.end()) {
      return Fail("signed-headers: a mandatory header is not signed");
    }
  }
  return Status::Ok();
}

Status ParseSignature(std::string_view value, Bytes& out) {
  if (value.size() != 2 * kSignatureBytes) {
    return Fail("signature: not 64 hex digits");
  }
  out.resize(kSignatureBytes);
  for (size_t i = 0; i < kSignatureBytes; ++i) {
    int hi = LowerHexValue(value[2 * i]);
    int lo = LowerHexValue(value[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Fail("signature: not lower-case hex");
    }
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return Status::Ok();
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-compatible low-level
// date algorithms", days_from_civil).
// Reads `n` ASCII digits at `s[pos]`; -1 if any is not a digit.
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

}  // namespace

Result<Authorization> ParseAuthorization(std::string_view header_value) {
  if (header_value.size() > kMaxAuthorizationBytes) {
    return Fail("authorization header too long");
  }
  // Only SP and HTAB count as whitespace; a CR/LF (obs-fold) or NUL never reaches a value.
  if (std::any_of(header_value.begin(), header_value.end(),
                  [](char c) { return IsControl(c) && c != '\t'; })) {
    return Fail("control character in authorization header");
  }
  // Values cannot be quoted, so ';' always separates parameters.
  size_t semi = header_value.find(';');
  if (TrimOws(header_value.substr(0, semi)) != kScheme) {
    return Fail("unsupported authorization scheme");
  }
  if (semi == std::string_view::npos) {
    return Fail("no parameters");
  }

  Authorization auth;
  bool have_code = false;
  bool have_headers = false;
  bool have_signature = false;
  std::string_view rest = header_value.substr(semi + 1);
  while (true) {
    size_t next = rest.find(';');
    std::string_view param = TrimOws(rest.substr(0, next));
    if (param.empty()) {
      return Fail("empty parameter");
    }
    size_t eq = param.find('=');
    if (eq == std::string_view::npos) {
      return Fail("parameter without '='");
    }
    std::string_view name = TrimOws(param.substr(0, eq));
    std::string_view value = TrimOws(param.substr(eq + 1));
    if (name == "access-code") {
      if (have_code) {
        return Fail("duplicate access-code");
      }
      have_code = true;
      if (value.empty() || value.size() > kMaxAccessCodeBytes ||
          !std::all_of(value.begin(), value.end(), IsAccessCodeChar)) {
        return Fail("access-code: invalid");
      }
      auth.access_code = std::string(value);
    } else if (name == "signed-headers") {
      if (have_headers) {
        return Fail("duplicate signed-headers");
      }
      have_headers = true;
      OTD_RETURN_IF_ERROR(ParseSignedHeaders(value, auth.signed_headers));
    } else if (name == "signature") {
      if (have_signature) {
        return Fail("duplicate signature");
      }
      have_signature = true;
      OTD_RETURN_IF_ERROR(ParseSignature(value, auth.signature));
    } else {
      return Fail("unknown parameter");
    }
    if (next == std::string_view::npos) {
      break;
    }
    rest = rest.substr(next + 1);
  }
  if (!have_code) {
    return Fail("missing access-code");
  }
  if (!have_headers) {
    return Fail("missing signed-headers");
  }
  if (!have_signature) {
    return Fail("missing signature");
  }
  return auth;
}

Result<SecretBytes> CanonicalContent(const Authorization& auth, const RequestView& request) {
  if (!IsToken(request.method) || std::any_of(request.method.begin(), request.method.end(),
                                              [](char c) { return c >= 'a' && c <= 'z'; })) {
    return Fail("method is not an upper-case token");
  }
  if (request.target.empty() || request.target.front() != '/' ||
      std::any_of(request.target.begin(), request.target.end(), IsControl)) {
    return Fail("target is not origin-form");
  }
  if (auth.signed_headers.empty()) {
    return Fail("no signed headers");
  }
  const size_t q = request.target.find('?');
  const std::string_view path = request.target.substr(0, q);
  const std::string_view query =
      q == std::string_view::npos ? std::string_view() : request.target.substr(q + 1);

  // Resolve every signed header first so the output can be sized exactly once.
  std::vector<std::string_view> values;
  values.reserve(auth.signed_headers.size());
  size_t total = request.method.size() + 1 + path.size() + 1 + query.size() + 1;
  for (const std::string& name : auth.signed_headers) {
    // Authorization normally comes from ParseAuthorization, but the contract here does not
    // depend on it: a name that could break the line format is refused.
    if (!IsToken(name) ||
        std::any_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return Fail("signed header name is not a lower-case token");
    }
    const std::string_view* found = nullptr;
    for (const auto& [field_name, field_value] : request.headers) {
      if (EqualsIgnoreCase(TrimOws(field_name), name)) {
        if (found != nullptr) {
          return Fail("signed header appears more than once");
        }
        found = &field_value;
      }
    }
    if (found == nullptr) {
      return Fail("signed header missing from request");
    }
    std::string_view value = TrimOws(*found);
    // A CR or LF would let one header forge another line of the signed content.
    if (std::any_of(value.begin(), value.end(), [](char c) { return IsControl(c) && c != '\t'; })) {
      return Fail("signed header value has a control character");
    }
    values.push_back(value);
    total += name.size() + 1 + value.size() + 1;
  }
  total += 1 + request.body.size();

  SecretBytes out(total);
  std::span<uint8_t> buf = out.MutableReveal(SecretAccess::Grant());
  size_t pos = 0;
  auto append = [&](std::string_view s) {
    if (!s.empty()) {
      std::memcpy(buf.data() + pos, s.data(), s.size());
    }
    pos += s.size();
  };
  append(request.method);
  append("\n");
  append(path);
  append("\n");
  append(query);
  append("\n");
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string& name = auth.signed_headers[i];
    append(name);
    append(":");
    const size_t value_pos = pos;
    append(values[i]);
    if (name == "host") {
      // signed-requests.md: the Host value is lower-cased (DNS names are case-insensitive and
      // proxies may change the case).
      for (size_t j = value_pos; j < pos; ++j) {
        buf[j] = static_cast<uint8_t>(AsciiLower(static_cast<char>(buf[j])));
      }
    }
    append("\n");
  }
  append("\n");
  append(request.body);
  return out;
}

Result<int64_t> ParseOt1Date(std::string_view value) {
  // 0123456789012345678 9
  // yyyy-mm-ddThh:mm:ssZ
  if (value.size() != 20 || value[4] != '-' || value[7] != '-' || value[10] != 'T' ||
      value[13] != ':' || value[16] != ':' || value[19] != 'Z') {
    return Fail("date: not yyyy-mm-ddThh:mm:ssZ");
  }
  const int64_t year = Digits(value, 0, 4);
  const int64_t month = Digits(value, 5, 2);
  const int64_t day = Digits(value, 8, 2);
  const int64_t hour = Digits(value, 11, 2);
  const int64_t minute = Digits(value, 14, 2);
  const int64_t second = Digits(value, 17, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0) {
    return Fail("date: not yyyy-mm-ddThh:mm:ssZ");
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 59) {
    return Fail("date: out of range");
  }
  return DaysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

Status CheckDateWindow(int64_t date, int64_t now, int64_t past_seconds, int64_t future_seconds) {
  if (past_seconds < 0 || future_seconds < 0) {
    return Fail("date: negative window");
  }
  // Differences in unsigned arithmetic cannot overflow for any pair of int64 values.
  if (date < now) {
    const uint64_t behind = static_cast<uint64_t>(now) - static_cast<uint64_t>(date);
    if (behind > static_cast<uint64_t>(past_seconds)) {
      return Fail("date: too far in the past");
    }
  } else {
    const uint64_t ahead = static_cast<uint64_t>(date) - static_cast<uint64_t>(now);
    if (ahead > static_cast<uint64_t>(future_seconds)) {
      return Fail("date: too far in the future");
    }
  }
  return Status::Ok();
}

}  // namespace otd::api::ot1
