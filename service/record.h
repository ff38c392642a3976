#pragma once
// Versioned record envelopes (DESIGN §4). Every value the service writes to the store is one of:
//
//   sealed record   [format u8 = 0x01][key version u32][nonce 12][ciphertext][tag 16]
//   wrapped key     [format u8 = 0x02][KEK version u32][AES-KWP wrapped key bytes]
//
// Integers are big-endian. The decoder checks lengths before slicing and never accepts an unknown
// format byte. The associated data of a sealed record binds it to its table, account and record
// id, and to its own header (format and key version), so a record copied to another table, account
// or id (or re-labelled with another version) fails to open.

#include <array>
#include <cstdint>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"

namespace otd::service {

inline constexpr uint8_t kFormatSealed = 0x01;
inline constexpr uint8_t kFormatWrappedKey = 0x02;
inline constexpr size_t kNonceBytes = 12;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kSealedHeaderBytes = 1 + 4 + kNonceBytes;
inline constexpr size_t kMaxRecordBytes = 64u * 1024 * 1024;

struct SealedRecord {
  uint32_t key_version = 0;
  std::array<uint8_t, kNonceBytes> nonce{};
  Bytes ciphertext_and_tag;  // at least kTagBytes
};

struct WrappedKeyRecord {
  uint32_t kek_version = 0;
  Bytes wrapped;
};

Bytes EncodeSealed(const SealedRecord& r);
Result<SealedRecord> DecodeSealed(ByteView bytes);  // kDataLoss on any malformed input

Bytes EncodeWrappedKey(const WrappedKeyRecord& r);
Result<WrappedKeyRecord> DecodeWrappedKey(ByteView bytes);

// Associated data: "otd-aad-v1" | u16 len | table | u16 len | account | u16 len | record id |
// format | key version. Length prefixes make the encoding unambiguous.
Bytes SealedAssociatedData(std::string_view table, std::string_view account,
                           std::string_view record_id, uint32_t key_version);

}  // namespace otd::service
