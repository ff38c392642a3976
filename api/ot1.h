#pragma once
// OT1 signed requests (OpenToken doc/api/signed-requests.md, doc/request-signatures.md): parsing
// of the `Authorization: OT1-HMAC-SHA256-HEX; ...` header, the canonical signing content and the
// X-OpenToken-Date check. Pure: no I/O, no keys, no clock. The MAC itself is verified by the caller
// (inside the PKCS#11 token, C_Verify with CKM_SHA256_HMAC) over the bytes CanonicalContent builds.
//
// Every failure is kUnauthenticated with a message the API layer sends to the client (the
// `message` of the 401, issue 17: a client author must see which check failed). Messages are
// fixed texts: they never echo the input (only the names of the mandatory headers, which are
// constants) and never say anything about a secret or the expected signature. Each starts with
// the check that failed: "malformed Authorization header: ...", "a required header is not
// signed: ...", "a signed header ...", "X-OpenToken-Date ...".
//
// All functions are thread safe (no shared state).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd::api::ot1 {

inline constexpr std::string_view kScheme = "OT1-HMAC-SHA256-HEX";
inline constexpr size_t kMaxAuthorizationBytes = 2048;  // whole header value
inline constexpr size_t kMaxAccessCodeBytes = 128;
inline constexpr size_t kSignatureBytes = 32;  // HMAC-SHA256
// Headers every signature must cover (doc: "The three listed are mandatory").
inline constexpr std::string_view kMandatorySignedHeaders[] = {"host", "content-type",
                                                               "x-opentoken-date"};

// A parsed Authorization header value.
struct Authorization {
  std::string access_code;                  // [A-Za-z0-9_-]{1,128}
  std::vector<std::string> signed_headers;  // lower-cased token names, in the order given, unique
  Bytes signature;                          // kSignatureBytes bytes
};

// Parses an Authorization header value. Grammar (OWS = spaces and tabs only):
//   OWS "OT1-HMAC-SHA256-HEX" 1*( OWS ";" OWS name OWS "=" OWS value ) OWS
// * The scheme is matched case-sensitively and must come first.
// * Parameters may come in any order; each of access-code, signed-headers and signature exactly
//   once; parameter names are lower-case as documented; unknown or empty parameters are rejected
//   (so is a trailing ';'). Quoted-string values are not supported.
// * signed-headers: header names (RFC 9110 token) separated by one or more spaces/tabs, matched
//   case-insensitively and returned lower-cased; duplicates rejected; host, content-type and
//   x-opentoken-date must be present.
// * signature: exactly 64 lower-case hex digits (upper case is rejected: the docs say lowercase).
// * CR, LF and other control characters are never accepted (the line breaks in the docs'
//   example are formatting only; a client sends the header on one line).
// * A value longer than kMaxAuthorizationBytes is rejected before any parsing.
Result<Authorization> ParseAuthorization(std::string_view header_value);

// What the canonicaliser needs from an HTTP request. Views only: the caller keeps the request
// alive for the duration of the call.
struct RequestView {
  std::string_view method;  // as received, e.g. "POST"
  std::string_view target;  // origin-form target "/path?query", as received (not decoded)
  // Every header field in received order: name and value as received.
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  std::string_view body;  // may contain any bytes
};

// Builds the content the client signed:
//   METHOD "\n" PATH "\n" QUERY "\n" *( name ":" value "\n" ) "\n" BODY
// * METHOD as received; it must be a non-empty token without lower-case letters.
// * PATH is the target up to the first '?', QUERY everything after it ("" when there is none);
//   both byte-exact (no decoding, no re-ordering). The target must start with '/' and must not
//   contain control characters.
// * One line per signed header, in auth.signed_headers order: the lower-case name, ':', and the
//   value of the request's only field of that name (names compared case-insensitively) with
//   leading/trailing spaces and tabs removed. Values keep their case, except host, whose value
//   is lower-cased (ASCII). Unsigned headers are ignored. A signed header that is absent, appears
//   more than once, or whose value holds a control character other than an inner tab is an error.
// * BODY verbatim; nothing is appended after it.
// The result contains the request body (the payload being tokenized), so it is returned as
// SecretBytes: wiped on destruction. Pass result.Reveal(SecretAccess::Grant()) to C_Verify.
Result<SecretBytes> CanonicalContent(const Authorization& auth, const RequestView& request);

// Parses an X-OpenToken-Date value to Unix seconds: an RFC 3339 date-time (common/dates.h
// ParseRfc3339), "yyyy-mm-ddThh:mm:ss" then an optional fraction (truncated: JavaScript's
// toISOString() "2026-12-06T08:00:00.123Z", Python's isoformat(), Go's RFC3339Nano), then "Z" or
// a numeric offset "+hh:mm"/"-hh:mm" (applied). At most kMaxDateBytes bytes. The signature covers
// the header bytes as sent, so accepting more forms of the same instant is safe.
inline constexpr size_t kMaxDateBytes = 64;
Result<int64_t> ParseOt1Date(std::string_view value);

// Accepts now - past_seconds <= date <= now + future_seconds (both bounds inclusive). The
// message says which side was missed ("X-OpenToken-Date is too far in the past/future"). With the
// reference configuration: past_seconds = 300 (dateWindowPast 5 min), future_seconds = 60
// (dateWindowFuture 1 min). Negative windows reject everything.
Status CheckDateWindow(int64_t date, int64_t now, int64_t past_seconds, int64_t future_seconds);

}  // namespace otd::api::ot1
