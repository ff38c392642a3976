#include "service/record.h"

#include <cstring>

namespace otd::service {

namespace {

void PutU32(Bytes& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

uint32_t GetU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void PutField(Bytes& out, std::string_view s) {
  out.push_back(static_cast<uint8_t>(s.size() >> 8));
  out.push_back(static_cast<uint8_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

}  // namespace

Bytes EncodeSealed(const SealedRecord& r) {
  Bytes out;
  out.reserve(kSealedHeaderBytes + r.ciphertext_and_tag.size());
  out.push_back(kFormatSealed);
  PutU32(out, r.key_version);
  out.insert(out.end(), r.nonce.begin(), r.nonce.end());
  out.insert(out.end(), r.ciphertext_and_tag.begin(), r.ciphertext_and_tag.end());
  return out;
}

Result<SealedRecord> DecodeSealed(ByteView bytes) {
  if (bytes.size() < kSealedHeaderBytes + kTagBytes || bytes.size() > kMaxRecordBytes) {
    return DataLoss("sealed record has an impossible length");
  }
  if (bytes[0] != kFormatSealed) {
    return DataLoss("sealed record has an unknown format byte");
  }
  SealedRecord r;
  r.key_version = GetU32(bytes.data() + 1);
  if (r.key_version == 0) {
    return DataLoss("sealed record has key version 0");
  }
  std::memcpy(r.nonce.data(), bytes.data() + 5, kNonceBytes);
  r.ciphertext_and_tag.assign(bytes.begin() + kSealedHeaderBytes, bytes.end());
  return r;
}

Bytes EncodeWrappedKey(const WrappedKeyRecord& r) {
  Bytes out;
  out.reserve(5 + r.wrapped.size());
  out.push_back(kFormatWrappedKey);
  PutU32(out, r.kek_version);
  out.insert(out.end(), r.wrapped.begin(), r.wrapped.end());
  return out;
}

Result<WrappedKeyRecord> DecodeWrappedKey(ByteView bytes) {
  // AES-KWP output is a multiple of 8 bytes, at least 16; our keys wrap to 40 bytes.
  if (bytes.size() < 5 + 16 || bytes.size() > 5 + 1024 || (bytes.size() - 5) % 8 != 0) {
    return DataLoss("wrapped key record has an impossible length");
  }
  if (bytes[0] != kFormatWrappedKey) {
    return DataLoss("wrapped key record has an unknown format byte");
  }
  WrappedKeyRecord r;
  r.kek_version = GetU32(bytes.data() + 1);
  if (r.kek_version == 0) {
    return DataLoss("wrapped key record has KEK version 0");
  }
  r.wrapped.assign(bytes.begin() + 5, bytes.end());
  return r;
}

Bytes SealedAssociatedData(std::string_view table, std::string_view account,
                           std::string_view record_id, uint32_t key_version) {
  static constexpr std::string_view kDomain = "otd-aad-v1";
  Bytes aad(kDomain.begin(), kDomain.end());
  PutField(aad, table);
  PutField(aad, account);
  PutField(aad, record_id);
  aad.push_back(kFormatSealed);
  PutU32(aad, key_version);
  return aad;
}

}  // namespace otd::service
