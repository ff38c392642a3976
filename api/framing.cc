#include "api/framing.h"

#include <algorithm>
#include <string_view>

#include "common/ascii.h"
#include "common/bytes.h"

namespace otd::api {

namespace http = boost::beast::http;

namespace {

// Whether `target` percent-encodes a NUL, CR or LF anywhere ("%00", "%0d", "%0a"), or a '.', '/'
// or '\' ("%2e", "%2f", "%5c") within its first `path_end` bytes (the path), in either case. One
// pass from '%' to '%'.
bool HasForbiddenEscape(std::string_view target, size_t path_end) {
  for (size_t i = target.find('%'); i != std::string_view::npos && i + 2 < target.size();
       i = target.find('%', i + 1)) {
    const char hi = target[i + 1];
    const char lo = AsciiLower(target[i + 2]);
    if (hi == '0' && (lo == '0' || lo == 'd' || lo == 'a')) {
      return true;
    }
    if (i + 3 <= path_end &&
        ((hi == '2' && (lo == 'e' || lo == 'f')) || (hi == '5' && lo == 'c'))) {
      return true;
    }
  }
  return false;
}

FramingError Bad(std::string m) { return {400, std::move(m)}; }

}  // namespace

std::optional<FramingError> CheckRawHeader(std::string_view raw, bool complete) {
  size_t line_start = 0;
  bool first_line = true;
  for (size_t i = 0; i < raw.size(); ++i) {
    auto c = static_cast<unsigned char>(raw[i]);
    if (c < 0x20 && c != '\r' && c != '\n' && c != '\t') {
      return Bad("control character in the request header");
    }
    if (c == 0x7f || (first_line && c >= 0x80)) {
      return Bad("non-ASCII byte in the request line");
    }
    if (c == '\r' && (i + 1 < raw.size() ? raw[i + 1] != '\n' : complete)) {
      return Bad("bare CR in the request header");
    }
    if (c == '\n' && (i == 0 || raw[i - 1] != '\r')) {
      return Bad("bare LF in the request header");
    }
    if (c == '\n') {
      line_start = i + 1;
      first_line = false;
      continue;
    }
    if (i == line_start && !first_line && (c == ' ' || c == '\t')) {
      return Bad("obsolete line folding in the request header");
    }
  }
  return std::nullopt;
}

bool IsServedMethod(http::verb v) {
  switch (v) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::post:
    case http::verb::put:
    case http::verb::patch:
    case http::verb::delete_: return true;
    default: return false;
  }
}

std::optional<FramingError> CheckFraming(const http::request_header<>& header, bool is_tcp,
                                         const Limits& limits) {
  if (header.version() != 11) {
    return Bad("only HTTP/1.1 is supported");
  }
  if (!IsServedMethod(header.method())) {
    return FramingError{501, "method not implemented"};
  }
  int host_count = 0;
  int cl_count = 0;
  int te_count = 0;
  std::string_view cl_value;
  std::string_view te_value;
  std::string_view host_value;
  for (const auto& f : header) {
    std::string_view name = f.name_string();
    std::string_view value = f.value();
    if (name.empty()) {
      return Bad("empty header name");
    }
    for (uint8_t c : AsBytes(value)) {
      if (c == '\r' || c == '\n' || c == 0) {
        return Bad("header value contains a line break or NUL");
      }
    }
    if (f.name() == http::field::host) {
      ++host_count;
      host_value = value;
    } else if (f.name() == http::field::content_length) {
      ++cl_count;
      cl_value = value;
    } else if (f.name() == http::field::transfer_encoding) {
      ++te_count;
      te_value = value;
    } else if (f.name() == http::field::expect) {
      if (!AsciiEqualsIgnoreCase(value, "100-continue")) {
        return FramingError{417, "only Expect: 100-continue is supported"};
      }
    } else if (AsciiEqualsIgnoreCase(name, "content-length") ||
               AsciiEqualsIgnoreCase(name, "transfer-encoding") ||
               AsciiEqualsIgnoreCase(name, "host")) {
      return Bad("malformed framing header name");
    }
  }
  if (te_count > 0) {
    if (te_count > 1 || !AsciiEqualsIgnoreCase(te_value, "chunked")) {
      return Bad("unsupported Transfer-Encoding");
    }
    if (cl_count > 0) {
      return Bad("Content-Length together with Transfer-Encoding");
    }
  }
  if (cl_count > 1) {
    return Bad("duplicate Content-Length");
  }
  if (cl_count == 1) {
    if (cl_value.empty() || cl_value.size() > 19 ||
        !std::all_of(cl_value.begin(), cl_value.end(),
                     [](char c) { return c >= '0' && c <= '9'; })) {
      return Bad("malformed Content-Length");
    }
    uint64_t n = 0;
    for (char c : cl_value) {
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n > limits.max_body_bytes) {
      return FramingError{413, "request body is too large"};
    }
  }
  if (host_count > 1) {
    return Bad("duplicate Host");
  }
  if (host_count == 0 && is_tcp) {
    return Bad("missing Host");
  }
  if (host_count == 1) {
    if (host_value.empty() || host_value.size() > 255) {
      return Bad("malformed Host");
    }
    for (uint8_t c : AsBytes(host_value)) {
      if (c <= 0x20 || c >= 0x7f || c == '@' || c == '/' || c == '\\' || c == ',') {
        return Bad("malformed Host");
      }
    }
  }
  std::string_view target = header.target();
  if (target.size() > limits.max_target_bytes) {
    return FramingError{414, "request target is too long"};
  }
  if (target.empty() || target.front() != '/') {
    return Bad("request target must be in origin form");
  }
  for (uint8_t c : AsBytes(target)) {
    if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '#') {
      return Bad("request target contains a forbidden character");
    }
  }
  std::string_view path = target.substr(0, target.find('?'));
  if (path.find("/..") != std::string_view::npos || path.find("//") != std::string_view::npos ||
      HasForbiddenEscape(target, path.size())) {
    return Bad("request target is not canonical");
  }
  return std::nullopt;
}

}  // namespace otd::api
