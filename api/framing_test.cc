#include "api/framing.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>
#include <boost/beast/http.hpp>

namespace otd::api {
namespace {

namespace http = boost::beast::http;

// Parses a raw header with Beast (as the server does) and runs the guard.
// Returns 0 when the guard accepts, the guard's status otherwise, -1 when Beast itself rejects.
int Check(const std::string& raw, bool tcp = true) {
  if (auto bad = CheckRawHeader(raw.substr(0, raw.find("\r\n\r\n") + 4))) {
    return static_cast<int>(bad->status);
  }
  http::request_parser<http::empty_body> p;
  boost::beast::error_code ec;
  p.put(boost::asio::buffer(raw), ec);
  if (ec && ec != http::error::need_more) {
    return -1;
  }
  if (!p.is_header_done()) {
    return -1;
  }
  Limits limits;
  limits.max_body_bytes = 1000;
  auto bad = CheckFraming(p.get(), tcp, limits);
  return bad ? static_cast<int>(bad->status) : 0;
}

TEST(FramingTest, AcceptsOrdinaryRequests) {
  EXPECT_EQ(Check("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
  EXPECT_EQ(Check("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"), 0);
  EXPECT_EQ(Check("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
  EXPECT_EQ(Check("GET /a?b=c&d=%41 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
}

TEST(FramingTest, RejectsTransferEncodingTricksThatBeastAccepts) {
  EXPECT_EQ(
      Check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"),
      400);
  EXPECT_EQ(Check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
  EXPECT_EQ(Check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), 400);
  EXPECT_NE(Check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n"),
            0);
  EXPECT_EQ(Check("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

TEST(FramingTest, RejectsHostProblems) {
  EXPECT_EQ(Check("GET / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET / HTTP/1.1\r\n\r\n", /*tcp=*/false), 0);
  EXPECT_EQ(Check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n"), 400);
}

TEST(FramingTest, RejectsOversizedAndMalformedContentLength) {
  EXPECT_EQ(Check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"), 413);
  EXPECT_EQ(Check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"), 400);
}

TEST(FramingTest, RejectsNonCanonicalTargets) {
  EXPECT_EQ(Check("GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET /a/%2e%2e/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET /a%0d%0aX:1 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET //a HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET /" + std::string(3000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n"), 414);
}

// The one-pass escape check against the six substring searches it replaced (case-insensitive,
// the path ends at '?'), over every target of up to 5 bytes from an alphabet of the bytes that
// matter. The other checks (/.., //) are the same on both sides.
TEST(FramingTest, EncodedEscapesAreRefusedExactlyAsBySubstringSearch) {
  auto contains_ci = [](std::string_view hay, std::string_view needle) {
    for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
      bool same = true;
      for (size_t j = 0; j < needle.size(); ++j) {
        same = same && std::tolower(static_cast<unsigned char>(hay[i + j])) ==
                           std::tolower(static_cast<unsigned char>(needle[j]));
      }
      if (same) {
        return true;
      }
    }
    return false;
  };
  const std::string alphabet = "%0d2A5cE?fx";
  size_t refused = 0;
  size_t tried = 0;
  std::vector<std::string> level = {""};
  for (int len = 1; len <= 5; ++len) {
    std::vector<std::string> next;
    for (const std::string& prefix : level) {
      for (char c : alphabet) {
        next.push_back(prefix + c);
      }
    }
    for (const std::string& tail : next) {
      const std::string target = "/" + tail;
      const std::string_view path = std::string_view(target).substr(0, target.find('?'));
      const bool want = contains_ci(target, "%00") || contains_ci(target, "%0d") ||
                        contains_ci(target, "%0a") || contains_ci(path, "%2e") ||
                        contains_ci(path, "%2f") || contains_ci(path, "%5c");
      const int got = Check("GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n");
      ASSERT_EQ(got == 400, want) << target;
      refused += want ? 1 : 0;
      ++tried;
    }
    level = std::move(next);
  }
  EXPECT_GT(refused, 1000U);  // both verdicts are common over this alphabet
  EXPECT_GT(tried - refused, 1000U);
}

TEST(FramingTest, RejectsUnknownExpectations) {
  EXPECT_EQ(
      Check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n"), 0);
  EXPECT_EQ(Check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\n"),
            417);
}

TEST(FramingTest, RejectsObsoleteLineFolding) {
  // Beast 1.74 accepts this (unfolding it); the raw-header check must not.
  EXPECT_EQ(Check("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n"), 400);
  EXPECT_EQ(Check("GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n"), 400);
}

}  // namespace
}  // namespace otd::api
