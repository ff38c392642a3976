#include "api/ot1.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "common/ascii.h"
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

// `message` is sent to the client (see ot1.h): a fixed text, never input.
Status Fail(std::string message) { return Unauthenticated(std::move(message)); }
Status Malformed(std::string_view what) {
  return Fail("malformed Authorization header: " + std::string(what));
}

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
      return Malformed("signed-headers holds something that is not a header name");
    }
    std::string lower = AsciiLowerCopy(name);
    if (std::find(out.begin(), out.end(), lower) != out.end()) {
      return Malformed("signed-headers lists a header twice");
    }
    out.push_back(std::move(lower));
  }
  for (std::string_view mandatory : kMandatorySignedHeaders) {
    if (std::find(out.begin(), out.end(), mandatory) == out.end()) {
      return Fail("a required header is not signed: " + std::string(mandatory) +
                  " (signed-headers must list host, content-type and x-opentoken-date)");
    }
  }
  return Status::Ok();
}

Status ParseSignature(std::string_view value, Bytes& out) {
  if (value.size() != 2 * kSignatureBytes) {
    return Malformed("signature is not 64 lower-case hex digits");
  }
  out.resize(kSignatureBytes);
  for (size_t i = 0; i < kSignatureBytes; ++i) {
    int hi = LowerHexValue(value[2 * i]);
    int lo = LowerHexValue(value[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Malformed("signature is not 64 lower-case hex digits");
    }
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return Status::Ok();
}

}  // namespace

Result<Authorization> ParseAuthorization(std::string_view header_value) {
  if (header_value.size() > kMaxAuthorizationBytes) {
    return Malformed("longer than 2048 bytes");
  }
  // Only SP and HTAB count as whitespace; a CR/LF (obs-fold) or NUL never reaches a value.
  if (std::any_of(header_value.begin(), header_value.end(),
                  [](char c) { return IsControl(c) && c != '\t'; })) {
    return Malformed("control character (send it on one line)");
  }
  // Values cannot be quoted, so ';' always separates parameters.
  size_t semi = header_value.find(';');
  if (TrimOws(header_value.substr(0, semi)) != kScheme) {
    return Malformed("the scheme must be OT1-HMAC-SHA256-HEX");
  }
  if (semi == std::string_view::npos) {
    return Malformed("no parameters after the scheme");
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
      return Malformed("empty parameter (a stray ';')");
    }
    size_t eq = param.find('=');
    if (eq == std::string_view::npos) {
      return Malformed("a parameter without '='");
    }
    std::string_view name = TrimOws(param.substr(0, eq));
    std::string_view value = TrimOws(param.substr(eq + 1));
    if (name == "access-code") {
      if (have_code) {
        return Malformed("access-code given twice");
      }
      have_code = true;
      if (value.empty() || value.size() > kMaxAccessCodeBytes ||
          !std::all_of(value.begin(), value.end(), IsAccessCodeChar)) {
        return Malformed("access-code is not 1-128 of [A-Za-z0-9_-]");
      }
      auth.access_code = std::string(value);
    } else if (name == "signed-headers") {
      if (have_headers) {
        return Malformed("signed-headers given twice");
      }
      have_headers = true;
      OTD_RETURN_IF_ERROR(ParseSignedHeaders(value, auth.signed_headers));
    } else if (name == "signature") {
      if (have_signature) {
        return Malformed("signature given twice");
      }
      have_signature = true;
      OTD_RETURN_IF_ERROR(ParseSignature(value, auth.signature));
    } else {
      return Malformed("unknown parameter (access-code, signed-headers and signature only)");
    }
    if (next == std::string_view::npos) {
      break;
    }
    rest = rest.substr(next + 1);
  }
  if (!have_code) {
    return Malformed("no access-code parameter");
  }
  if (!have_headers) {
    return Malformed("no signed-headers parameter");
  }
  if (!have_signature) {
    return Malformed("no signature parameter");
  }
  return auth;
}

Result<SecretBytes> CanonicalContent(const Authorization& auth, const RequestView& request) {
  if (!IsToken(request.method) || std::any_of(request.method.begin(), request.method.end(),
                                              [](char c) { return c >= 'a' && c <= 'z'; })) {
    return Fail("the request method is not an upper-case token");
  }
  if (request.target.empty() || request.target.front() != '/' ||
      std::any_of(request.target.begin(), request.target.end(), IsControl)) {
    return Fail("the request target is not origin-form (/path?query)");
  }
  if (auth.signed_headers.empty()) {
    return Malformed("no signed headers");
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
      return Malformed("a signed header name is not a lower-case token");
    }
    const std::string_view* found = nullptr;
    for (const auto& [field_name, field_value] : request.headers) {
      if (AsciiEqualsIgnoreCase(TrimOws(field_name), name)) {
        if (found != nullptr) {
          return Fail("a signed header appears more than once in the request");
        }
        found = &field_value;
      }
    }
    if (found == nullptr) {
      // Only the mandatory names are echoed: they are constants, not input.
      for (std::string_view mandatory : kMandatorySignedHeaders) {
        if (name == mandatory) {
          return Fail("a signed header is not in the request: " + name);
        }
      }
      return Fail("a signed header is not in the request");
    }
    std::string_view value = TrimOws(*found);
    // A CR or LF would let one header forge another line of the signed content.
    if (std::any_of(value.begin(), value.end(), [](char c) { return IsControl(c) && c != '\t'; })) {
      return Fail("a signed header value has a control character");
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
  std::optional<int64_t> t;
  if (value.size() <= kMaxDateBytes) {
    t = ParseRfc3339(value);
  }
  if (!t) {
    return Fail(
        "X-OpenToken-Date is not an RFC 3339 date-time (yyyy-mm-ddThh:mm:ss[.fraction] then Z or "
        "+hh:mm/-hh:mm, e.g. 2026-12-06T08:00:00Z or 2026-12-06T08:00:00.123Z)");
  }
  return *t;
}

Status CheckDateWindow(int64_t date, int64_t now, int64_t past_seconds, int64_t future_seconds) {
  if (past_seconds < 0 || future_seconds < 0) {
    return Fail("X-OpenToken-Date window is negative (server configuration)");
  }
  // Differences in unsigned arithmetic cannot overflow for any pair of int64 values.
  if (date < now) {
    const uint64_t behind = static_cast<uint64_t>(now) - static_cast<uint64_t>(date);
    if (behind > static_cast<uint64_t>(past_seconds)) {
      return Fail("X-OpenToken-Date is too far in the past");
    }
  } else {
    const uint64_t ahead = static_cast<uint64_t>(date) - static_cast<uint64_t>(now);
    if (ahead > static_cast<uint64_t>(future_seconds)) {
      return Fail("X-OpenToken-Date is too far in the future");
    }
  }
  return Status::Ok();
}

}  // namespace otd::api::ot1
