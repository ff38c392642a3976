#pragma once
// The `meta` table's records and their encodings, shared by the KeyHierarchy's translation units
// (service/key_hierarchy.cc, service/vault_identity.cc). Private to service/.

#include <cstdint>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"
#include "service/tables.h"

namespace otd::service::internal {

inline constexpr std::string_view kMetaTable = tables::kMeta;
inline constexpr std::string_view kAccountKeysTable = tables::kAccountKeys;
inline constexpr std::string_view kMetaKekVersion = "kek_version";
inline constexpr std::string_view kMetaIndexVersion = "index_version";
inline constexpr std::string_view kMetaIndexMinVersion = "index_min_version";
inline constexpr std::string_view kMetaIdentity = "vault_identity";
inline constexpr size_t kHmacBytes = 32;

// Big-endian u32, the encoding of the version records.
inline Bytes U32Bytes(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

inline Result<uint32_t> ParseU32(ByteView b) {
  if (b.size() != 4) {
    return DataLoss("meta value has the wrong length");
  }
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

}  // namespace otd::service::internal
