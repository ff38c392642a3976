#pragma once
// The counts of the login, registration and e-mail limiters (service/rate_limiter.h) kept in the
// store, so that daemons sharing one database (the PostgreSQL backend, issue 16) share them: an
// attacker gains nothing by spreading tries over nodes. On LMDB (one process) the limiters count
// in memory only and this class is not used.
//
// Records live in tables::kLimits. The key is a keyed hash of (limiter name, limiter key) made in
// the token (KeyHierarchy::StableKeyedHash), never an account id, an address or a peer in clear;
// the value is a versioned 21-byte record: version 1, failures (u32 BE), last failure and blocked
// until (i64 BE, Unix seconds). Counts and times are not secret, so it is not sealed. Each record
// expires (TTL purge) when the limiter would forget it. Updates are compare-and-swap
// (service/retry.h), so concurrent steps on several nodes each count.
//
// The keyed hashes of recent keys are kept in a bounded map (at most kMaxCachedKeys, cleared when
// full), so a check and its count cost one HMAC in the token, not two.
//
// Errors: reads and writes return the store's or the token's error; callers keep their in-memory
// count as well and fall back to it (a store outage never opens the limits on this node).
//
// Thread safety: thread safe. UpdateAsync's follow-up reads and commits run on the store's
// backend thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/bytes.h"
#include "common/status.h"
#include "store/store.h"

namespace otd::service {

class KeyHierarchy;

struct LimitEntry {
  uint32_t failures = 0;
  int64_t last_failure = 0;
  int64_t blocked_until = 0;
};

class SharedLimits {
 public:
  // Makes the store key of (limiter, key).
  using Hasher = std::function<Result<Bytes>(std::string_view limiter, std::string_view key)>;
  // Changes the entry (a fresh one when none is stored) and returns its forget time (the
  // record's expires_at).
  using Updater = std::function<int64_t(LimitEntry&)>;

  SharedLimits(store::Store& store, Hasher hasher);
  // The hasher of a vault: StableKeyedHash(tables::kLimits, limiter, key).
  static Hasher KeyedHashes(KeyHierarchy& keys);

  // The stored entry, nullopt when there is none.
  Result<std::optional<LimitEntry>> Read(std::string_view limiter, std::string_view key);
  // Read-modify-write, retried on lost races; waits for the commit.
  Status Update(std::string_view limiter, std::string_view key, const Updater& update);
  // The same without waiting: the first attempt inserts a fresh entry (no read), a lost race
  // reads and retries from the store's thread. Errors are dropped (the caller counts in memory).
  void UpdateAsync(std::string_view limiter, std::string_view key, Updater update);
  // Removes the entry if there is one.
  Status Erase(std::string_view limiter, std::string_view key);

  static Bytes Encode(const LimitEntry& e);
  static std::optional<LimitEntry> Decode(ByteView raw);

  static constexpr size_t kMaxCachedKeys = 10'000;

 private:
  Result<Bytes> StoreKey(std::string_view limiter, std::string_view key);
  // Captures only the store (which outlives every pending commit), not this object.
  static void AsyncAttempt(store::Store& store, const Bytes& store_key, std::optional<Bytes> expect,
                           LimitEntry base, const std::shared_ptr<Updater>& update, int attempt);

  store::Store& store_;
  Hasher hasher_;
  std::mutex mu_;
  std::unordered_map<std::string, Bytes> cache_;  // guarded by mu_
};

}  // namespace otd::service
