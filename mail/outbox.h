#pragma once
// mail/outbox.h: an SMTP mailer over a pluggable outbox (issue 16: several daemons on one
// database share one outbox, so queued mail survives a dead node).
//
// Outbox: where OutboxSmtpMailer keeps rendered messages between Send() and delivery. The
// implementation decides where (service/mail_outbox.h: sealed records in the store, claimed by
// compare-and-swap); the directory outbox of SmtpMailer (mail/mail.h) stays as it is.
//
// Contract of an Outbox:
//   * Put() returns Ok only once the message is durably stored (it survives a crash of this
//     process and, for a shared outbox, of this node).
//   * Claim() hands out one due message under a lease: until Finish/Retry or the lease's end, no
//     other Claim() (of any instance on the same outbox) returns it. A lease of an instance that
//     died runs out and the message is claimed again elsewhere: delivery is AT LEAST ONCE (a
//     crash between the server's 250 and Delivered() sends it again; so does a delivery that
//     outlasts its lease).
//   * Delivered()/Rejected()/Retry() act only while the claim is still the holder's; a claim
//     lost meanwhile gives kFailedPrecondition (the other holder finishes it).
//   * Messages that cannot be delivered within the outbox's lifetime are dropped by it, with a
//     log line: nothing stays queued for ever.
//
// OutboxSmtpMailer: Send() validates and renders like SmtpMailer (same format, same Message-ID
// scheme) and Put()s; a background thread claims due messages oldest first and delivers each over
// SMTP (libcurl, mail/internal/smtp_transfer.h): 2xx → Delivered(), 5xx → Rejected() (never
// retried), anything else → Retry() after initial_retry_delay doubling up to max_retry_delay
// (the attempt count travels with the message, so the back-off is shared between nodes).
// Unlike SmtpMailer there is no head-of-line blocking: a message that keeps failing does not hold
// back the others (several nodes deliver in parallel; strict order cannot be kept anyway).
// Logs: message ids only (mail_queued, mail_delivered, mail_delivery_failed,
// mail_delivery_rejected), never an address, subject or body.
//
// Thread safety: Send() from any thread. The Outbox must be thread safe (Put from request threads,
// the rest from the delivery thread) and outlive the mailer.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "mail/mail.h"

namespace otd::mail {

struct OutboxEntry {
  std::string id;        // the message id (logs, Message-ID)
  std::string content;   // the rendered RFC 5322 message; secret (wiped by the mailer)
  uint64_t attempt = 0;  // 1 for the first delivery attempt
  std::string claim;     // opaque to the mailer: what the outbox needs to finish the claim
};

class Outbox {
 public:
  virtual ~Outbox() = default;
  // Durably stores a rendered message. kUnavailable / kResourceExhausted when it cannot.
  virtual Status Put(std::string_view id, std::string_view content) = 0;
  // Claims the oldest due message; nullopt when none is due. *next_due_in (may be null): how long
  // until the next queued message becomes due (0: unknown / none queued).
  virtual Result<std::optional<OutboxEntry>> Claim(std::chrono::milliseconds* next_due_in) = 0;
  virtual Status Delivered(const OutboxEntry& entry) = 0;
  // A permanent rejection (5xx): the message is never tried again.
  virtual Status Rejected(const OutboxEntry& entry, long smtp_code) = 0;
  // Releases the claim; the message is due again after `delay` (0: at once, e.g. on shutdown).
  virtual Status Retry(const OutboxEntry& entry, std::chrono::milliseconds delay) = 0;
  // Messages queued (claimed or not). For Flush and tests.
  virtual Result<size_t> Count() = 0;
};

class OutboxSmtpMailer final : public Mailer {
 public:
  // Validates the SMTP options like SmtpMailer (outbox_dir is not used). `poll` bounds how long
  // the thread sleeps when idle: messages queued by other nodes, leases of dead nodes.
  static Result<std::unique_ptr<OutboxSmtpMailer>> Create(
      const MailOptions& options, Outbox& outbox, Logger& log,
      std::chrono::milliseconds poll = std::chrono::seconds(5));
  ~OutboxSmtpMailer() override;
  OutboxSmtpMailer(const OutboxSmtpMailer&) = delete;
  OutboxSmtpMailer& operator=(const OutboxSmtpMailer&) = delete;

  Status Send(const Message& message) override;
  // Waits until the outbox holds no message. kUnavailable on timeout. For tests.
  Status Flush(std::chrono::milliseconds timeout);

 private:
  class Impl;
  explicit OutboxSmtpMailer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace otd::mail
