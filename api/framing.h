#pragma once
// The framing guard: checks a request header before any body byte is read (DESIGN §6,
// style-and-safety B.6). Boost 1.74's parser accepts several request-smuggling shapes; this closes
// them. Any failure here is answered with the returned status and the connection is closed.
//
// Rules:
//  * HTTP/1.1 only; methods GET, HEAD, POST, PUT, PATCH, DELETE (others: 501).
//  * Transfer-Encoding: only a single `chunked`, and then no Content-Length.
//  * Content-Length: at most one field, digits only, at most max_body_bytes (413 otherwise).
//  * Host: exactly one on TCP/TLS, at most one on the Unix socket; no whitespace or '@'.
//  * No header value containing CR, LF or NUL (obs-fold leftovers), no empty header names.
//  * Target: origin-form ('/' first), at most max_target_bytes, no "..", no %00, %0d, %0a,
//    no backslash, no '#', printable ASCII only.
//  * Expect: only 100-continue.

#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

#include "api/limits.h"

namespace otd::api {

struct FramingError {
  unsigned status;      // 400, 411, 413, 414, 417, 431
  std::string message;  // safe to send (never echoes input)
};

// Checks the raw header bytes (request line to the blank line, inclusive) before Beast parses
// them: Beast 1.74 silently unfolds obs-fold continuation lines, so they are caught here
// (RFC 9112 §5.2: a server MUST reject or replace them; we reject). Also rejects bare CR and NUL.
// With complete=false the bytes are a prefix still being read: only what cannot become valid is
// reported (so garbage is answered at once instead of at the read deadline).
std::optional<FramingError> CheckRawHeader(std::string_view raw, bool complete = true);

// The methods the API serves (everything else is 501 before routing).
bool IsServedMethod(boost::beast::http::verb v);

std::optional<FramingError> CheckFraming(const boost::beast::http::request_header<>& header,
                                         bool is_tcp, const Limits& limits);

}  // namespace otd::api
