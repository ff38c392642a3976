#pragma once
// Validate, render and durably write one message: the common first step of every Mailer.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "mail/internal/spool_writer.h"
#include "mail/mail.h"

namespace otd::mail::internal {

inline constexpr std::string_view kDefaultSpoolFrom = "opentokend@localhost";

// Returns the message id (the file is `<writer dir>/<id>.eml`). kInvalidArgument for a bad
// message (nothing written), kUnavailable for I/O errors.
// The Date header and the id come from CLOCK_REALTIME.
Result<std::string> QueueMessage(const SpoolWriter& writer, const Message& message,
                                 const std::string& from);

// Validates and renders a message for an outbox (no file): *id gets a new message id in the
// same format. The caller wipes the result (it holds the recipient and possibly a credential).
Result<std::string> RenderQueued(const Message& message, const std::string& from, std::string* id);

}  // namespace otd::mail::internal
