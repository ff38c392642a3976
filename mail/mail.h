#pragma once
// mail: outgoing e-mail (registration confirmations, e-mailed access tokens and deletion codes).
//
// Contract of every Mailer: Send() returns Ok only once the message is durably queued (a file
// written with O_EXCL 0600, fsync'd, renamed into place, directory fsync'd). Delivery may happen
// later. A message is never dropped silently: every failure is either returned by Send() or
// logged by the delivery thread, and the file stays on disk.
//
// Two modes (DESIGN §5, config keys mail.spool_dir / mail.smtp_url):
//   * SpoolMailer: one RFC 5322 message per file `<spool_dir>/<id>.eml`, where the message id is
//     `<unix seconds>.<9-digit nanoseconds>-<16 random hex>` (so names sort by creation time);
//     some other program (or a test) picks the files up. Temporary files are hidden
//     (`.<id>.tmp`) and never end in `.eml`, so a consumer that globs `*.eml` only ever sees
//     complete messages.
//   * SmtpMailer: the same file is written into `outbox_dir` first, then a background thread
//     delivers the queued files in order through libcurl's SMTP client and deletes each file
//     after a 2xx reply to the end of DATA. See SmtpMailer below.
//
// Message format: From, To, Subject (RFC 2047 B encoded-words when not plain ASCII), Date,
// Message-ID `<<file id>@<from domain>>`, MIME-Version 1.0, and either multipart/alternative
// (text/plain + text/html, both utf-8 and quoted-printable, random `=_otd_…` boundary) or a
// single text/plain part when `html` is empty. CRLF line endings throughout; lines of the bodies
// are re-ended with CRLF (LF, CR and CRLF in the input are all line breaks).
//
// Privacy: recipient addresses, subjects and bodies are never logged and never appear in a
// Status message. Logs carry only the message id (the file name without `.eml`).
//
// Thread safety: Send() and Flush() may be called concurrently from any thread. The Logger passed
// in must outlive the mailer.

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"

namespace otd {
class Logger;
}

namespace otd::mail {

struct Message {
  // A bare addr-spec, e.g. `user@example.org`: printable ASCII, no spaces, no `<>()[],;:"\`,
  // exactly one `@`, at most 254 bytes. CR or LF anywhere: kInvalidArgument (header injection).
  std::string to;
  std::string subject;  // UTF-8, at most 998 bytes; CR or LF: kInvalidArgument
  std::string text;     // UTF-8 plain-text body (required part)
  std::string html;     // UTF-8 HTML body; empty: the message is text/plain only
};

class Mailer {
 public:
  virtual ~Mailer() = default;
  // Ok once the message is durably queued. kInvalidArgument for a malformed message (nothing is
  // written); kUnavailable when the file cannot be written (disk full, permissions).
  virtual Status Send(const Message& message) = 0;
};

struct MailOptions {
  // Exactly one of spool_dir and smtp_url is set.
  std::string spool_dir;  // mail.spool_dir: created (0700) if missing
  std::string smtp_url;   // mail.smtp_url: `smtp://host[:port]` (STARTTLS when offered) or
                          // `smtps://host[:port]` (implicit TLS)
  // mail.from: bare address for the From: header and SMTP MAIL FROM. Required with smtp_url;
  // with spool_dir it defaults to `opentokend@localhost`.
  std::string from;
  // Where SmtpMailer queues messages before delivery (required with smtp_url; created 0700).
  // One SmtpMailer per outbox: a second one (any process) gets kFailedPrecondition.
  std::string outbox_dir;
  // false: STARTTLS whenever the server offers it, plain text otherwise (CURLUSESSL_TRY).
  // true: no delivery without TLS (CURLUSESSL_ALL); messages stay queued and failures are logged.
  bool require_tls = false;
  std::string ca_file;  // PEM bundle to verify the SMTP server with; empty: system default
  std::chrono::milliseconds initial_retry_delay{1000};
  std::chrono::milliseconds max_retry_delay{5 * 60 * 1000};
  std::chrono::milliseconds connect_timeout{10 * 1000};   // per delivery attempt
  std::chrono::milliseconds transfer_timeout{10 * 1000};  // whole SMTP transaction
};

// Writes each message into a spool directory and nothing else.
class SpoolMailer final : public Mailer {
 public:
  // Uses options.spool_dir and options.from.
  static Result<std::unique_ptr<SpoolMailer>> Create(const MailOptions& options, Logger& log);
  ~SpoolMailer() override;
  SpoolMailer(const SpoolMailer&) = delete;
  SpoolMailer& operator=(const SpoolMailer&) = delete;

  Status Send(const Message& message) override;

 private:
  class Impl;
  explicit SpoolMailer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Queues into options.outbox_dir, delivers in the background over SMTP.
//
// Envelope: MAIL FROM is options.from; RCPT TO is read back from the queued file's `To:` header
// (the mailer writes it as a single bare address, so the file alone is the whole queue entry; no
// sidecar). Files already in the outbox when the mailer starts (left by an earlier process) are
// delivered too, oldest first (by the time in the id, then modification time, then name).
//
// Failures: a failed attempt (connection, TLS, timeout, 4xx) is logged as `mail_delivery_failed`
// (warn; message_id, attempt, smtp_code, error, retry_in_ms) and retried after a delay that starts
// at initial_retry_delay and doubles up to max_retry_delay; the queue waits for the head message
// so order is kept. A permanent rejection (a 5xx reply) moves the file to `<outbox>/rejected/`
// and logs `mail_delivery_rejected` (error): an operator can move it back to retry. A file that
// is not a message this mailer could have written (no usable To: header, over 16 MiB) goes the
// same way (`mail_outbox_file_invalid`).
//
// Delivery is at-least-once: a crash between the server's 250 and the file's removal delivers
// the message again after restart.
//
// Shutdown: the destructor stops the thread; an attempt in flight is aborted (libcurl progress
// callback) and its file stays queued. Attempts are bounded by connect_timeout/transfer_timeout.
class SmtpMailer final : public Mailer {
 public:
  static Result<std::unique_ptr<SmtpMailer>> Create(const MailOptions& options, Logger& log);
  ~SmtpMailer() override;
  SmtpMailer(const SmtpMailer&) = delete;
  SmtpMailer& operator=(const SmtpMailer&) = delete;

  Status Send(const Message& message) override;

  // Waits until no `*.eml` is left in the outbox (delivered or moved to rejected/).
  // kUnavailable if messages are still queued when the timeout expires. For tests and shutdown.
  Status Flush(std::chrono::milliseconds timeout);

 private:
  class Impl;
  explicit SmtpMailer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The composition root's entry point: SpoolMailer when spool_dir is set, SmtpMailer when smtp_url
// is set. kInvalidArgument (naming the config key) when both or neither are set, or a value is bad.
Result<std::unique_ptr<Mailer>> MakeMailer(const MailOptions& options, Logger& log);

}  // namespace otd::mail
