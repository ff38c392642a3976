#pragma once
// RFC 5322 / MIME rendering for mail/: validation, quoted-printable, RFC 2047 encoded-words,
// dates. Pure functions, no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "mail/mail.h"

namespace otd::mail::internal {

inline constexpr size_t kMaxAddressBytes = 254;
inline constexpr size_t kMaxSubjectBytes = 998;
inline constexpr size_t kMaxBodyBytes = 1 << 20;  // per part

// kInvalidArgument unless `address` is a bare addr-spec (see Message::to). `what` names the field
// in the error message; the address itself is never included.
Status ValidateAddress(std::string_view what, std::string_view address);

// Checks every field of a message (header injection, UTF-8, sizes).
Status ValidateMessage(const Message& message);

bool IsValidUtf8(std::string_view s);

// Quoted-printable (RFC 2045 §6.7) with CRLF hard line breaks: LF, CR and CRLF in the input are
// line breaks; encoded lines are at most 76 characters (soft breaks `=` CRLF); spaces and tabs
// before a line break or at the end are encoded, as is a `.` at the start of a line. The output
// never contains `=_`, so it cannot collide with a `=_otd_` MIME boundary.
std::string EncodeQuotedPrintable(std::string_view in);

// The value of an unstructured header (Subject): as is when it is short printable ASCII without
// `=?`; otherwise RFC 2047 `=?utf-8?B?…?=` words of at most 75 characters, split on UTF-8
// character boundaries and folded with CRLF SP. `name_len` is the length of "Subject: ".
std::string EncodeHeaderText(std::string_view value, size_t name_len);

// "Thu, 01 Jan 1970 00:00:00 +0000" (RFC 5322 §3.3, always UTC, English names).
std::string FormatDate(int64_t unix_seconds);

struct RenderParams {
  std::string from;        // validated bare address
  std::string message_id;  // file id, e.g. "1700000000-0123456789abcdef"
  std::string boundary;    // "=_otd_" + random hex
  int64_t date = 0;        // Unix seconds
};

// The whole message, CRLF line endings, ending with CRLF. The message must be valid.
std::string RenderMessage(const Message& message, const RenderParams& params);

// The envelope recipient of a rendered message: the first `To:` header of the header block,
// validated as a bare address. nullopt when absent or not valid.
std::optional<std::string> ReadRecipient(std::string_view rendered);

}  // namespace otd::mail::internal
