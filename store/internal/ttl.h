#pragma once
// The TTL index of an LmdbStore: its key layout, keeping it in step with writes, and purging.
// Private to store/.
//
// Key layout of the two internal TTL tables (big-endian integers, DESIGN §4 / rule 15):
//
//   "__ttl"      [expires_at u64][u8 table length][table][key] -> empty
//                sorted by expiry, so PurgeExpired() walks it from the first entry.
//   "__ttl_rev"  [u8 table length][table][key] -> [expires_at u64]
//                finds a record's current TTL entry, so replacing or deleting the record also
//                removes the old "__ttl" entry.
//
// Invariant (kept inside every write transaction): a "__ttl" entry exists iff the matching
// "__ttl_rev" entry exists and holds the same expires_at.

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"
#include "store/store.h"

namespace otd::store::internal {

inline constexpr std::string_view kTtlTable = "__ttl";
inline constexpr std::string_view kTtlRevTable = "__ttl_rev";
inline constexpr size_t kMaxTableNameBytes = 255;  // the length prefix is one byte

// Table names must be <= kMaxTableNameBytes; callers check.
Bytes EncodeTtlRevKey(std::string_view table, ByteView key);
Bytes EncodeTtlKey(uint64_t expires_at, std::string_view table, ByteView key);
Bytes EncodeU64(uint64_t v);

// Sizes of the encodings above, to validate keys against mdb_env_get_maxkeysize().
inline size_t TtlRevKeySize(std::string_view table, size_t key) { return 1 + table.size() + key; }
inline size_t TtlKeySize(std::string_view table, size_t key) { return 8 + 1 + table.size() + key; }

struct TtlEntry {
  uint64_t expires_at = 0;
  std::string_view table;  // views into the decoded buffer
  ByteView key;
};
// nullopt when the bytes are not a well-formed "__ttl" key.
std::optional<TtlEntry> DecodeTtlKey(ByteView raw);
std::optional<uint64_t> DecodeU64(ByteView raw);

class Env;

// Keeps the TTL index in step with a record that was written (`removed` false: its expiry is
// m.expires_at, 0 = none) or deleted. LMDB failures set *rc and return env.Fail(...).
Status UpdateTtl(const Env& env, MDB_txn* txn, const Mutation& m, bool removed, int* rc);

// The record's current expiry from the reverse index (0: none), inside `txn`.
Result<int64_t> ExpiryIn(const Env& env, MDB_txn* txn, std::string_view table, ByteView key,
                         int* rc);

// Deletes up to `max` records whose expiry <= now, oldest expiry first; *purged counts them.
// Stale TTL entries (the record got another expiry or is gone) are dropped on the way. LMDB
// failures set *rc and return env.Fail(...).
Status PurgeExpired(const Env& env, MDB_txn* txn, int64_t now, size_t max, size_t* purged, int* rc);

}  // namespace otd::store::internal
