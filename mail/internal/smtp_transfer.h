#pragma once
// One SMTP transaction through libcurl (shared by SmtpMailer and OutboxSmtpMailer): MAIL FROM
// options.from, RCPT TO rcpt, DATA content. `stop` aborts an attempt in flight (progress
// callback). Returns the curl code; *smtp_code gets the last reply code, *error a description
// on failure (curl texts only: the caller scrubs the recipient before logging).

#include <curl/curl.h>

#include <atomic>
#include <string>
#include <string_view>

#include "mail/mail.h"

namespace otd::mail::internal {

CURLcode SmtpTransfer(const MailOptions& options, const std::string& rcpt, std::string_view content,
                      const std::atomic<bool>& stop, long* smtp_code, std::string* error);

// Replaces every occurrence of `secret` in `text` with "[redacted]".
std::string Scrub(std::string text, const std::string& secret);

// Checks mail.smtp_url, mail.from, the delays, timeouts and ca_file of SMTP options (not the
// outbox). kInvalidArgument naming the key.
Status ValidateSmtpOptions(const MailOptions& options);

}  // namespace otd::mail::internal
