#pragma once
// The durable queue between the unauthenticated e-mail endpoints (POST /v1/access_tokens and
// POST /v1/access_tokens/delete) and the work they ask for (docs/decisions.md, issue 14 §2).
//
// Why a queue: those endpoints must not show in their answer time whether an address has an
// account. So the request path does the same work for every address (schema, rate limit,
// Enqueue, 201), and the account lookup, the minting and the mail happen afterwards on a worker
// thread (MailRequestWorker), whose work no answer waits for.
//
// Records (table `mail_requests`): store key HMAC(index key, mail_requests | "" | 128 random
// bits) — no address in the key; value sealed with the system data key: the kind, the address
// as typed, when it was queued (and a sequence number for ties), when it expires
// (lifetime_seconds, default 1 h), the attempts made and the earliest time of the next one. The
// store's TTL is the expiry plus a grace period, so the worker (not the purge job) is the one
// that drops an expired request, with a log line.
//
// Processing (ProcessDue, on the worker thread), every due record, oldest first:
//  1. Expired: deleted, `mail_request_dropped` {reason "expired"} logged (never the address).
//  2. Claim: a compare-and-swap update that counts the attempt and moves `not before` to
//     now + RetryDelay(attempt) (5 s doubling up to 5 min), committed before any work. Another
//     worker on the same database (several daemons) skips a claimed record until then; the claim
//     also survives a restart, so a crash in the middle of an attempt means a retry after the
//     delay, not a lost request.
//  3. The handler does the work and commits `done` — the compare-and-swap delete of the claimed
//     record — in the same batch as its own writes. So if two workers both end up processing a
//     record (the first one slower than its claim), at most one of them commits.
//     Handler results: Ok = done. kFailedPrecondition = `done` did not apply (another worker
//     took the record): nothing more to do. kInvalidArgument / kDataLoss = permanent: the record
//     is deleted and `mail_request_dropped` {reason "rejected"} logged. Anything else: retried at
//     the claimed time, until the next try would come after the expiry; then the record is
//     deleted and `mail_request_dropped` {reason "expired"} logged.
//
// What a client sees when a request is lost (dropped, or the store destroyed): nothing — the
// 201 promised only that the request was taken; no mail arrives and it may ask again. Mail is
// at least once: a handler mails before it commits (so a failed mail leaves nothing behind), and
// a crash between the two leaves a mail whose token or code never became valid; the retry mails
// a valid one.
//
// Thread safety: Enqueue and SetListener are thread safe. ProcessDue keeps per-instance state and
// must not run concurrently with itself (one worker per queue); several queue instances (one per
// daemon) may share one store.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "service/internal/due_scan.h"
#include "service/tables.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

inline constexpr std::string_view kMailRequestsTable = tables::kMailRequests;

enum class MailRequestKind : uint8_t {
  kToken = 1,         // POST /v1/access_tokens: mail an access token
  kDeletionCode = 2,  // POST /v1/access_tokens/delete: mail a deletion code
};

struct MailRequest {
  MailRequestKind kind = MailRequestKind::kToken;
  std::string address;   // as typed by the client (wiped by the queue after the handler returns)
  uint64_t attempt = 1;  // 1 for the first try
};

// Does the work of one request and commits `done` (a compare-and-swap delete of the queued record)
// in the same batch as its own writes, or alone when it writes nothing. See the header comment
// for what its result means.
using MailRequestHandler = std::function<Status(const MailRequest& request, store::Mutation done)>;

struct MailRequestOptions {
  int64_t lifetime_seconds = 3600;  // a request not done by then is dropped
  int64_t retry_base_seconds = 5;   // delay after the first attempt; doubles per attempt
  int64_t retry_max_seconds = 300;
  int64_t purge_grace_seconds = 600;  // store TTL = expiry + this (the purge job is a backstop)
};

class MailRequestQueue {
 public:
  MailRequestQueue(Vault& vault, store::Store& store, const Clock& clock, Logger& log,
                   MailRequestOptions options = {});

  // The request path: seals and durably queues the request (one HMAC, one seal, one commit, the
  // same for every address), then calls the listener. kUnavailable / kResourceExhausted when the
  // token or the store cannot take it.
  Status Enqueue(MailRequestKind kind, std::string_view address);

  // Runs every due request once, oldest first (see above). Returns the clock time (Unix seconds)
  // at which the next queued request becomes due, or 0 when none is waiting. `stop` (optional)
  // is checked between requests.
  int64_t ProcessDue(const MailRequestHandler& handler, const std::atomic<bool>* stop = nullptr);

  // Called after every Enqueue (on the enqueuing thread); empty: none. The worker sets it.
  void SetListener(std::function<void()> listener);

  // The delay before attempt `attempt` + 1 when attempt `attempt` (1-based) fails.
  int64_t RetryDelay(uint64_t attempt) const;

  const MailRequestOptions& options() const { return options_; }
  const Clock& clock() const { return clock_; }

 private:
  struct Record;
  Result<Bytes> Seal(const Record& r);
  Result<Record> Open(ByteView value);
  // Deletes the record if it still holds `value`; logs the drop.
  void Drop(ByteView key, ByteView value, std::string_view reason, uint64_t attempts);
  // Claims and hands one due record to the handler; returns its next due time (0: finished).
  int64_t ProcessOne(const Bytes& key, const Bytes& value, const Record& record,
                     const MailRequestHandler& handler);

  Vault& vault_;
  store::Store& store_;
  const Clock& clock_;
  Logger& log_;
  const MailRequestOptions options_;
  std::mutex listener_mu_;
  std::function<void()> listener_;
  std::atomic<uint64_t> sequence_{0};  // ties within a second of queueing
  internal::SeenValues seen_;          // ProcessDue only
};

// The worker: one thread that runs ProcessDue when a request is queued, when a retry is due, and
// every `scan_interval` (requests left by a crash, a restart or another daemon).
// Start it after the services it calls, stop it before they go (the destructor stops it too).
class MailRequestWorker {
 public:
  MailRequestWorker(MailRequestQueue& queue, MailRequestHandler handler, Logger& log,
                    std::chrono::milliseconds scan_interval = std::chrono::seconds(30));
  ~MailRequestWorker();
  MailRequestWorker(const MailRequestWorker&) = delete;
  MailRequestWorker& operator=(const MailRequestWorker&) = delete;

  void Start();  // no-op when running
  void Stop();   // finishes the request in hand, then joins; no-op when stopped
  void Wake();

 private:
  void Run();

  MailRequestQueue& queue_;
  MailRequestHandler handler_;
  Logger& log_;
  const std::chrono::milliseconds scan_interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace otd::service
