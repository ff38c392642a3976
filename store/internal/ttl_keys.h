#pragma once
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

#include <cstdint>
#include <optional>
#include <string_view>

#include "common/bytes.h"

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

}  // namespace otd::store::internal
