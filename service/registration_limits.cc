#include "service/registration_limits.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "common/secret_bytes.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"

namespace otd::service {

namespace {

constexpr int64_t kFullLogEverySeconds = 60;
// At most this many registrations are tracked per peer in memory (about 150 bytes each), even
// when max_pending is larger: beyond it the entry that expires first is forgotten (its peer may
// then make one more; the global cap still holds).
constexpr size_t kMaxTracked = 100'000;
// The shared per-peer count of pending registrations (SharedLimits).
constexpr std::string_view kPendingLimiter = "registration-pending-peer";

// A 64-bit tag of the registration id: enough to tell the tracked registrations apart (a
// collision only merges two entries' bookkeeping), and the id itself, which lets its holder read
// the registration, is not kept.
Result<uint64_t> TagOf(std::string_view id) {
  OTD_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(AsBytes(id)));
  uint64_t tag = 0;
  std::memcpy(&tag, digest.data(), sizeof(tag));
  return tag;
}

// hex(SHA-256(lower-case address)), the key of the per-address limiter (as the e-mail routes).
// The lower-cased copy lives in a SecretBytes, wiped when done.
Result<std::string> AddressKey(std::string_view email) {
  SecretBytes lower = SecretBytes::CopyFrom(email);
  for (uint8_t& c : lower.MutableReveal(SecretAccess::Grant())) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<uint8_t>(c - 'A' + 'a');
    }
  }
  OTD_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(lower.Reveal(SecretAccess::Grant())));
  return crypto::HexEncode(digest);
}

}  // namespace

RegistrationLimits::Slot::Slot(Slot&& o) noexcept
    : owner_(std::exchange(o.owner_, nullptr)), tag_(o.tag_) {}

RegistrationLimits::Slot::~Slot() {
  if (owner_ != nullptr) {
    owner_->Settle(tag_, false);
  }
}

void RegistrationLimits::Slot::Keep() {
  if (owner_ != nullptr) {
    std::exchange(owner_, nullptr)->Settle(tag_, true);
  }
}

RegistrationLimits::RegistrationLimits(store::Store& store, std::string pending_table,
                                       const Clock& clock, Logger& log,
                                       RegistrationLimitsOptions options, SharedLimits* shared)
    : store_(store),
      pending_table_(std::move(pending_table)),
      clock_(clock),
      log_(log),
      options_(options),
      address_limiter_(clock, options.address_rate_limit, shared, "registration-address"),
      peer_limiter_(clock, options.peer_rate_limit, shared, "registration-peer"),
      shared_(shared) {}

int64_t RegistrationLimits::PeerRetryAfter(std::string_view peer) {
  return peer_limiter_.RetryAfter(peer);
}

Status RegistrationLimits::CountStep(std::string_view email, std::string_view peer,
                                     int64_t* retry_after_seconds) {
  *retry_after_seconds = 0;
  OTD_ASSIGN_OR_RETURN(std::string key, AddressKey(email));
  if (int64_t w = Step({{&address_limiter_, key}, {&peer_limiter_, peer}}); w > 0) {
    *retry_after_seconds = w;
    return ResourceExhausted("too many registration steps; wait before trying again");
  }
  return Status::Ok();
}

Result<RegistrationLimits::Slot> RegistrationLimits::AdmitPending(std::string_view peer_view,
                                                                  std::string_view id,
                                                                  int64_t expires_at,
                                                                  int64_t* retry_after_seconds) {
  *retry_after_seconds = 0;
  OTD_ASSIGN_OR_RETURN(uint64_t tag, TagOf(id));
  const std::string peer(peer_view);
  std::lock_guard lock(mu_);
  const int64_t now = clock_.NowSeconds();
  const int64_t local_wait = LocalPeerWaitLocked(peer, now);
  auto peer_full = [&](int64_t wait) -> Status {
    *retry_after_seconds = wait;
    return ResourceExhausted("too many pending registrations from this peer");
  };
  if (shared_ == nullptr && local_wait > 0) {
    return peer_full(local_wait);
  }
  // Under the lock, so concurrent registrations cannot all pass the same count.
  OTD_ASSIGN_OR_RETURN(store::Stats stats, store_.GetStats());
  const uint64_t stored = stats.tables[pending_table_].entries;
  if (stored + in_flight_ >= options_.max_pending) {
    LogFullLocked("pending_cap", now);
    *retry_after_seconds = options_.full_retry_after_seconds;
    return Unavailable("too many pending registrations");
  }
  const uint64_t in_use = stats.used_bytes - std::min(stats.free_bytes, stats.used_bytes);
  // in_use / map_size > max_map_percent / 100, without overflow for any map up to 1 TiB. A
  // backend without a fixed capacity (PostgreSQL: map_size 0) has no reserve to keep.
  if (stats.map_size > 0 && in_use * 100 > stats.map_size * options_.max_map_percent) {
    LogFullLocked("map_reserve", now);
    *retry_after_seconds = options_.full_retry_after_seconds;
    return Unavailable("the store keeps its remaining room for authenticated writes");
  }
  const size_t max_tracked =
      static_cast<size_t>(std::min<uint64_t>(options_.max_pending, kMaxTracked));
  if (by_tag_.size() >= max_tracked) {
    DropExpiredLocked(now);
  }
  while (by_tag_.size() >= max_tracked && !by_tag_.empty()) {
    // Only when max_pending is above kMaxTracked (or registrations vanished from the store
    // without a confirmation, e.g. a restore): forget the one that expires first.
    auto first = std::min_element(by_tag_.begin(), by_tag_.end(), [](const auto& a, const auto& b) {
      return a.second.expires_at < b.second.expires_at;
    });
    RemoveLocked(first->first);
  }
  bool shared = false;
  if (shared_ != nullptr) {
    int64_t wait = 0;
    Result<bool> counted = AdmitShared(peer, expires_at, now, &wait);
    if (!counted.ok()) {
      log_.Warn("shared_limit_unavailable", {{"limiter", kPendingLimiter}});
      if (local_wait > 0) {
        return peer_full(local_wait);  // the node's own count decides
      }
    } else if (!*counted) {
      return peer_full(wait);
    }
    shared = counted.ok();
  }
  RemoveLocked(tag);  // a repeated tag replaces the older entry
  by_tag_[tag] = Pending{peer, expires_at, shared};
  by_peer_[peer].push_back(tag);
  ++in_flight_;
  return Slot(this, tag);
}

void RegistrationLimits::Confirmed(std::string_view id, std::string_view peer) {
  if (shared_ != nullptr && !peer.empty()) {
    ReleaseShared(peer);
  }
  auto tag = TagOf(id);
  if (!tag.ok()) {
    return;
  }
  std::lock_guard lock(mu_);
  RemoveLocked(*tag);
}

Result<bool> RegistrationLimits::AdmitShared(const std::string& peer, int64_t expires_at,
                                             int64_t now, int64_t* retry_after_seconds) {
  bool admitted = false;
  int64_t latest = 0;
  const uint32_t cap = options_.max_pending_per_peer;
  // failures: the registrations counted; blocked_until: the latest of their expiries, when all
  // of them have expired or been confirmed (a count that was never given back ends there).
  OTD_RETURN_IF_ERROR(shared_->Update(kPendingLimiter, peer, [&](LimitEntry& e) {
    if (e.blocked_until <= now) {
      e = LimitEntry{};
    }
    admitted = e.failures < cap;
    if (admitted) {
      ++e.failures;
      e.last_failure = now;
      e.blocked_until = std::max(e.blocked_until, expires_at);
    }
    latest = e.blocked_until;
    return e.blocked_until;
  }));
  if (!admitted) {
    *retry_after_seconds = std::max<int64_t>(1, latest - now);  // its latest pending one
  }
  return admitted;
}

void RegistrationLimits::ReleaseShared(std::string_view peer) {
  const int64_t now = clock_.NowSeconds();
  shared_->UpdateAsync(kPendingLimiter, peer, [now](LimitEntry& e) {
    if (e.failures > 0) {
      --e.failures;
    }
    if (e.failures == 0) {
      e.blocked_until = now;  // nothing pending: forgotten by the next purge
    }
    return std::max(e.blocked_until, now + 1);
  });
}

int64_t RegistrationLimits::LocalPeerWaitLocked(const std::string& peer, int64_t now) {
  DropExpiredOfPeerLocked(peer, now);
  auto it = by_peer_.find(peer);
  if (it == by_peer_.end() || it->second.size() < options_.max_pending_per_peer) {
    return 0;
  }
  int64_t first = std::numeric_limits<int64_t>::max();
  for (uint64_t t : it->second) {
    if (auto e = by_tag_.find(t); e != by_tag_.end()) {
      first = std::min(first, e->second.expires_at);
    }
  }
  return first == std::numeric_limits<int64_t>::max() ? options_.full_retry_after_seconds
                                                      : std::max<int64_t>(1, first - now);
}

size_t RegistrationLimits::TrackedForTesting() {
  std::lock_guard lock(mu_);
  return by_tag_.size();
}

void RegistrationLimits::Settle(uint64_t tag, bool keep) {
  std::string give_back;  // the peer whose shared place is given back
  {
    std::lock_guard lock(mu_);
    if (in_flight_ > 0) {
      --in_flight_;
    }
    if (!keep) {
      if (auto it = by_tag_.find(tag); it != by_tag_.end() && it->second.shared) {
        give_back = it->second.peer;
      }
      RemoveLocked(tag);
    }
  }
  if (!give_back.empty()) {
    ReleaseShared(give_back);
  }
}

void RegistrationLimits::RemoveLocked(uint64_t tag) {
  auto it = by_tag_.find(tag);
  if (it == by_tag_.end()) {
    return;
  }
  if (auto p = by_peer_.find(it->second.peer); p != by_peer_.end()) {
    std::erase(p->second, tag);
    if (p->second.empty()) {
      by_peer_.erase(p);
    }
  }
  by_tag_.erase(it);
}

void RegistrationLimits::DropExpiredLocked(int64_t now) {
  std::vector<uint64_t> expired;
  for (const auto& [tag, p] : by_tag_) {
    if (p.expires_at <= now) {
      expired.push_back(tag);
    }
  }
  for (uint64_t tag : expired) {
    RemoveLocked(tag);
  }
}

void RegistrationLimits::DropExpiredOfPeerLocked(const std::string& peer, int64_t now) {
  auto it = by_peer_.find(peer);
  if (it == by_peer_.end()) {
    return;
  }
  std::vector<uint64_t> expired;
  for (uint64_t tag : it->second) {
    if (auto e = by_tag_.find(tag); e == by_tag_.end() || e->second.expires_at <= now) {
      expired.push_back(tag);
    }
  }
  for (uint64_t tag : expired) {
    RemoveLocked(tag);
  }
}

void RegistrationLimits::LogFullLocked(std::string_view reason, int64_t now) {
  if (now - last_full_log_ < kFullLogEverySeconds) {
    return;
  }
  last_full_log_ = now;
  log_.Warn("registrations_refused", {{"reason", reason}});
}

}  // namespace otd::service
