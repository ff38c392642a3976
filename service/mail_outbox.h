#pragma once
// StoreMailOutbox: the SMTP outbox in the store (issue 16), for several daemons on one database:
// queued mail survives a dead node, and any node's delivery thread (mail::OutboxSmtpMailer)
// delivers it. Implements mail::Outbox (mail/outbox.h has the contract).
//
// Records (table `mail_outbox`): store key HMAC(index key, mail_outbox | "" | message id) — the
// message id is `<time>.<ns>-<64 random bits>`, never derived from the address; value sealed
// with the system data key, bound to the store key (a record moved to another key fails to
// open): the message id, the rendered message (recipient, links, codes: nothing in clear in the
// database), when it was queued, when it expires (lifetime_seconds), the attempts claimed so
// far and `not before`. The store TTL is the expiry plus a grace period, so the purge job is only
// a backstop and the outbox itself drops an expired message with a log line.
//
// Put: one seal, one durable commit (Store::Apply) before it returns Ok.
// Claim: every queued record is read (a record seen before, unchanged and not yet due, is not
// opened again), expired ones are deleted (`mail_outbox_dropped` {reason "expired"}), and the
// oldest due one is claimed by a compare-and-swap update that counts the attempt and sets `not
// before` to now + lease_seconds. A concurrent claim by another node fails the swap, so while
// both nodes live one message is held by one of them; a node that dies holding a claim loses it
// when the lease runs out and another node claims it again (at-least-once delivery). The lease
// must outlast one SMTP attempt (connect + transfer timeout): the daemon sets it so.
// Delivered / Rejected: compare-and-swap delete of the claimed value (a 5xx is never retried:
// the message is deleted, the mailer logs `mail_delivery_rejected`; a sealed record nobody can
// read without the token is no help to an operator, and keeping it keeps a bearer secret).
// Retry: compare-and-swap update to `not before` = now + delay; a retry that would come after
// the expiry deletes the message instead (`mail_outbox_dropped` {reason "expired"}).
// A value that does not authenticate is deleted (`mail_outbox_dropped` {reason "unreadable"}).
//
// Thread safety: thread safe. Several instances (one per daemon) may share one store.

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "common/log.h"
#include "mail/outbox.h"
#include "service/internal/due_scan.h"
#include "service/tables.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

struct MailOutboxOptions {
  int64_t lifetime_seconds = 3 * 86'400;  // a message not delivered by then is dropped
  int64_t lease_seconds = 60;             // a claim's length; > one SMTP attempt
  int64_t purge_grace_seconds = 600;      // store TTL = expiry + this
};

class StoreMailOutbox final : public mail::Outbox {
 public:
  StoreMailOutbox(Vault& vault, store::Store& store, const Clock& clock, Logger& log,
                  MailOutboxOptions options = {});

  Status Put(std::string_view id, std::string_view content) override;
  Result<std::optional<mail::OutboxEntry>> Claim(std::chrono::milliseconds* next_due_in) override;
  Status Delivered(const mail::OutboxEntry& entry) override;
  Status Rejected(const mail::OutboxEntry& entry, long smtp_code) override;
  Status Retry(const mail::OutboxEntry& entry, std::chrono::milliseconds delay) override;
  Result<size_t> Count() override;

 private:
  struct Record;
  Result<Bytes> Seal(ByteView key, const Record& r);
  Result<Record> Open(ByteView key, ByteView value);
  Status CasDelete(ByteView key, ByteView expect);
  void Drop(ByteView key, ByteView value, std::string_view reason, uint64_t attempts);

  Vault& vault_;
  store::Store& store_;
  const Clock& clock_;
  Logger& log_;
  const MailOutboxOptions options_;
  std::mutex mu_;              // Claim's cache
  internal::SeenValues seen_;  // Claim's memory of values not due yet
};

}  // namespace otd::service
