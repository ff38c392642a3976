#pragma once
// Admission limits for the registration steps anyone can call without an account: starting a
// registration (POST /registration: a data key and a sealed record, kept until confirmed or
// expired) and securing it (POST /registration/{id}: a confirmation mail to the registration's
// address). They keep strangers from bombing a mailbox and from filling the store.
//
//  * Rates. Every step counts for its address (lower-cased, then SHA-256: the address is never a
//    key in memory) and for its peer (the Unix-socket uid or the client IP). After
//    `free_failures` steps the key has to wait `base_delay_seconds`; each step let through after
//    a wait makes the next wait twice as long, up to `max_delay_seconds`; a key is forgotten
//    `forget_after_seconds` after its last counted step (by default a peer after an hour, an
//    address after a day). RateLimiter with the backoff of the /v1 e-mail routes (60 s doubling
//    to 1 h). Refused steps do not count again. Retry-After is exact: a client that waits that
//    long is let through (once, then waits twice as long).
//  * Pending registrations (created, not confirmed, not expired). Globally at most
//    `max_pending`: the pending table's entry count in the store (so the cap holds across
//    restarts; expired ones count until the purge job removes them, within a minute) plus those
//    being created right now. Per peer at most `max_pending_per_peer`, counted in memory (a
//    restart forgets who made the registrations then pending; the global cap still holds);
//    a confirmed registration stops counting at once, others when they expire. Memory: one entry
//    per tracked registration (a 64-bit tag of a SHA-256 of its id, never the id, and its peer),
//    at most min(`max_pending`, 100,000) of them (~150 bytes each); past that the entry expiring
//    first is forgotten.
//    With shared counts (daemons on one database) the per-peer count is the store's instead
//    (limiter "registration-pending-peer" of SharedLimits: the count and the latest expiry of
//    the registrations counted), so spreading registrations over nodes gains nothing. A
//    confirmation on any node gives the place back (the caller passes the registration's peer,
//    which it keeps in the sealed record); an unconfirmed one counts until the peer's latest
//    pending registration expires (a refused peer's Retry-After), a little longer than in
//    memory, never shorter. If the shared count cannot be read, the node's own count decides.
//  * Room. No new registration while more than `max_map_percent` of the store's map is in use
//    (Stats::used_bytes - free_bytes), so registrations can never take the room that tokenize
//    and the other authenticated writes need: they may use the whole map.
//
// Outcomes: Ok; kResourceExhausted when the caller is over a rate or its pending cap (HTTP 429);
// kUnavailable when the service is at the global cap or the map reserve (HTTP 503). Both set
// *retry_after_seconds >= 1. Other errors (store, hash) pass through with *retry_after_seconds 0.
// Never logs an address, an id or a peer.
//
// Thread safety: thread safe.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "service/rate_limiter.h"
#include "store/store.h"

namespace otd::service {

struct RegistrationLimitsOptions {
  // An address is forgotten only after a day without steps (the e-mail routes: an hour), so a
  // sender cannot wait an hour and bomb it with a fresh allowance every hour.
  RateLimitOptions address_rate_limit{.free_failures = 4,
                                      .base_delay_seconds = 60,
                                      .max_delay_seconds = 3600,
                                      .forget_after_seconds = 86'400};
  RateLimitOptions peer_rate_limit{.free_failures = 20,
                                   .base_delay_seconds = 60,
                                   .max_delay_seconds = 3600,
                                   .forget_after_seconds = 3600};
  uint64_t max_pending = 10'000;
  uint32_t max_pending_per_peer = 10;
  uint32_t max_map_percent = 90;           // 1..99: the rest of the map is kept for other writes
  int64_t full_retry_after_seconds = 300;  // Retry-After at the global cap or the reserve
};

class RegistrationLimits {
 public:
  // A pending-registration place taken by AdmitPending. Keep() once the registration is stored;
  // dropped without Keep() (an error on the way), the place is given back.
  class Slot {
   public:
    Slot(Slot&& o) noexcept;
    Slot& operator=(Slot&&) = delete;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();
    void Keep();

   private:
    friend class RegistrationLimits;
    Slot(RegistrationLimits* owner, uint64_t tag) : owner_(owner), tag_(tag) {}
    RegistrationLimits* owner_;
    uint64_t tag_;
  };

  // `pending_table` is the store table holding one record per pending registration.
  // `shared` (may be null) keeps the rate counts in the store too (service/shared_limits.h).
  RegistrationLimits(store::Store& store, std::string pending_table, const Clock& clock,
                     Logger& log, RegistrationLimitsOptions options,
                     SharedLimits* shared = nullptr);

  // Seconds `peer` must wait before its next step; 0 when it may try now. Counts nothing.
  int64_t PeerRetryAfter(std::string_view peer);
  // Counts one step for `email` (any case) and `peer`, or refuses it (kResourceExhausted, not
  // counted) while either has to wait.
  Status CountStep(std::string_view email, std::string_view peer, int64_t* retry_after_seconds);
  // Takes a place for the new registration `id` of `peer`, pending until `expires_at`.
  Result<Slot> AdmitPending(std::string_view peer, std::string_view id, int64_t expires_at,
                            int64_t* retry_after_seconds);
  // The registration `id` of `peer` was confirmed: it no longer counts for its peer. `peer` (as
  // given to AdmitPending, on whichever node) gives the shared place back; empty: not shared.
  void Confirmed(std::string_view id, std::string_view peer);

  // Registrations tracked per peer in memory (tests).
  size_t TrackedForTesting();

 private:
  struct Pending {
    std::string peer;
    int64_t expires_at = 0;
    bool shared = false;  // counted in the shared per-peer count too
  };
  // Counts one pending registration of `peer` in the shared count. Ok(true): counted; Ok(false):
  // the peer is at its cap (*retry_after_seconds set); an error: the store's.
  Result<bool> AdmitShared(const std::string& peer, int64_t expires_at, int64_t now,
                           int64_t* retry_after_seconds);
  // Gives one shared place of `peer` back, without waiting.
  void ReleaseShared(std::string_view peer);
  void Settle(uint64_t tag, bool keep);
  void RemoveLocked(uint64_t tag);
  void DropExpiredLocked(int64_t now);
  void DropExpiredOfPeerLocked(const std::string& peer, int64_t now);
  // Seconds until `peer` is under its cap in this node's own count; 0: under it now.
  int64_t LocalPeerWaitLocked(const std::string& peer, int64_t now);
  void LogFullLocked(std::string_view reason, int64_t now);

  store::Store& store_;
  const std::string pending_table_;
  const Clock& clock_;
  Logger& log_;
  const RegistrationLimitsOptions options_;
  StepLimiter address_limiter_;
  StepLimiter peer_limiter_;
  SharedLimits* shared_;  // null: per-peer pending counts in memory only

  std::mutex mu_;
  std::unordered_map<uint64_t, Pending> by_tag_;                    // guarded by mu_
  std::unordered_map<std::string, std::vector<uint64_t>> by_peer_;  // guarded by mu_
  uint64_t in_flight_ = 0;                                          // guarded by mu_
  int64_t last_full_log_ = 0;                                       // guarded by mu_
};

}  // namespace otd::service
