// fuzz_http_request: raw bytes -> the server's request-reading path (api/server.cc Serve), without
// sockets: the raw header is found and pre-checked the way Serve does (CheckRawHeader on every
// growing prefix with complete=false, then on the whole header), handed to a
// request_parser<empty_body>, checked by CheckFraming, then moved into a
// request_parser<string_body> with the same body limit and chunk-extension rule, and the rest of
// the input is fed as the body. Requests are read one after another (keep-alive / pipelining)
// until the input is used up or a request is refused (the server closes the connection then).
//
// Properties checked (abort on violation):
//  * no crash, no UB, no leak (ASan/UBSan);
//  * CheckRawHeader is prefix-monotone: a header that passes with complete=true never has a
//    prefix that fails with complete=false (the server answers such prefixes at once);
//  * when the raw check passes, Beast consumes exactly the header bytes and the number of header
//    fields equals the number of header lines (no line silently merged or dropped);
//  * when CheckFraming accepts: version 1.1, an allowed method, an origin-form target, at most one
//    of Content-Length / chunked, Content-Length within max_body_bytes, and a completed body whose
//    size equals Content-Length (or is within max_body_bytes when chunked).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include "api/framing.h"
#include "api/limits.h"

namespace http = boost::beast::http;
using otd::api::CheckFraming;
using otd::api::CheckRawHeader;

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_http_request: property violated: %s\n", what);
    std::abort();
  }
}

otd::api::Limits FuzzLimits() {
  otd::api::Limits lim;
  // Smaller than the defaults so that the fuzzer reaches the limits with short inputs; the code
  // paths are the same.
  lim.max_header_bytes = 2048;
  lim.max_body_bytes = 4096;
  lim.max_target_bytes = 512;
  return lim;
}

size_t CountLines(std::string_view header) {  // CRLF-terminated lines, request line included
  size_t n = 0;
  for (size_t pos = header.find("\r\n"); pos != std::string_view::npos;
       pos = header.find("\r\n", pos + 2)) {
    ++n;
  }
  return n;
}

// One request from `in`; returns the number of bytes used, or 0 when the connection would close.
size_t OneRequest(std::string_view in, bool is_tcp, const otd::api::Limits& lim) {
  // 1. Find the end of the header like Serve: stop at "\r\n\r\n", at max_header_bytes, or as soon
  //    as a prefix cannot become valid.
  size_t pos = in.find("\r\n\r\n");
  if (pos == std::string_view::npos || pos + 4 > lim.max_header_bytes + 4) {
    // Serve answers 431 (too large) or 400 (a prefix that cannot become valid), or the read
    // deadline closes the connection; exercise the early check on the prefix it would hold.
    (void)CheckRawHeader(in.substr(0, std::min<size_t>(in.size(), lim.max_header_bytes)),
                         /*complete=*/false);
    return 0;
  }
  const size_t header_end = pos + 4;
  std::string_view raw = in.substr(0, header_end);
  std::optional<otd::api::FramingError> bad_raw = CheckRawHeader(raw);

  // 2. Prefix monotonicity (a sample of prefixes, all of them for short headers).
  if (!bad_raw) {
    size_t step = raw.size() <= 256 ? 1 : raw.size() / 64;
    for (size_t n = 0; n <= raw.size(); n += step) {
      Require(!CheckRawHeader(raw.substr(0, n), /*complete=*/false),
              "a prefix of an accepted header is rejected early");
    }
  } else {
    return 0;
  }

  // 3. Beast parses exactly those bytes.
  http::request_parser<http::empty_body> header_parser;
  header_parser.header_limit(static_cast<std::uint32_t>(lim.max_header_bytes));
  header_parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  boost::beast::error_code ec;
  size_t used = header_parser.put(boost::asio::buffer(raw.data(), raw.size()), ec);
  if (ec || used != header_end || !header_parser.is_header_done()) {
    return 0;  // 400 / 431
  }
  const auto& h = header_parser.get();
  const auto fields = static_cast<size_t>(std::distance(h.begin(), h.end()));
  Require(fields + 2 == CountLines(raw), "header field count differs from the header lines");

  // 4. The framing guard.
  if (CheckFraming(h, is_tcp, lim)) {
    return 0;
  }
  Require(h.version() == 11, "accepted a version other than 1.1");
  Require(!h.target().empty() && h.target().front() == '/', "accepted a non-origin-form target");
  Require(h.target().size() <= lim.max_target_bytes, "accepted an over-long target");
  switch (h.method()) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::post:
    case http::verb::put:
    case http::verb::patch:
    case http::verb::delete_: break;
    default: Require(false, "accepted a method outside the allowed set");
  }
  const bool chunked = header_parser.chunked();
  const bool has_cl = h.count(http::field::content_length) > 0;
  Require(!(chunked && has_cl), "accepted Content-Length together with chunked");
  Require(h.count(http::field::content_length) <= 1, "accepted two Content-Length fields");
  Require(h.count(http::field::transfer_encoding) <= 1, "accepted two Transfer-Encoding fields");
  Require(h.count(http::field::host) <= 1, "accepted two Host fields");
  Require(!is_tcp || h.count(http::field::host) == 1, "accepted a TCP request without Host");
  std::uint64_t declared = 0;
  if (has_cl) {
    auto cl = header_parser.content_length();
    Require(cl.has_value(), "Content-Length accepted but Beast has no length");
    declared = *cl;
    Require(declared <= lim.max_body_bytes, "accepted a Content-Length above the limit");
  }

  // 5. The body, as async_read would feed it (eager: the whole remaining buffer at once).
  const auto fields_in_header = fields;
  http::request_parser<http::string_body> parser(std::move(header_parser));
  parser.body_limit(lim.max_body_bytes);
  parser.eager(true);
  auto reject_extensions = [](std::uint64_t, std::string_view extensions,
                              boost::beast::error_code& e) {
    if (!extensions.empty()) {
      e = http::error::bad_chunk_extension;
    }
  };
  parser.on_chunk_header(reject_extensions);
  std::string_view rest = in.substr(header_end);
  size_t consumed = 0;
  while (!parser.is_done()) {
    std::string_view now = rest.substr(consumed);
    if (now.empty()) {
      return 0;  // incomplete body: request timeout
    }
    size_t n = parser.put(boost::asio::buffer(now.data(), now.size()), ec);
    if (ec == http::error::need_more) {
      // Beast wants more than we have: the connection would wait for the deadline.
      if (n == 0) {
        return 0;
      }
      ec = {};
    }
    if (ec) {
      return 0;  // 400 / 413
    }
    consumed += n;
    if (n == 0) {
      return 0;
    }
  }
  auto req = parser.release();
  if (static_cast<size_t>(std::distance(req.begin(), req.end())) != fields_in_header) {
    return 0;  // trailer fields refused
  }
  Require(req.body().size() <= lim.max_body_bytes, "body above the limit was accepted");
  if (has_cl) {
    Require(req.body().size() == declared, "body size differs from Content-Length");
  } else if (!chunked) {
    Require(req.body().empty(), "a request without framing has a body");
  }
  Require(header_end + consumed <= in.size(), "consumed more than the input");
  return header_end + consumed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const otd::api::Limits lim = FuzzLimits();
  if (size == 0) {
    return 0;
  }
  // The first byte picks the transport (Host rules differ); the rest is the connection's bytes.
  const bool is_tcp = (data[0] & 1) != 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  for (int i = 0; i < 8 && !in.empty(); ++i) {  // a few pipelined requests
    size_t used = OneRequest(in, is_tcp, lim);
    if (used == 0) {
      break;
    }
    in.remove_prefix(used);
  }
  return 0;
}
