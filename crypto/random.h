#pragma once
// Random bytes and random URL-safe strings from OpenSSL's DRBGs (seeded from the OS).
//
// Two sources, as OpenSSL recommends (RAND_bytes(3)):
// * RandomPrivateBytes / RandomSecret / RandomUrlSafeSecret use RAND_priv_bytes, the DRBG whose
//   output is never exposed in public values. Use them for keys, seeds, access-code secrets and
//   bearer credentials.
// * RandomBytes / RandomUrlSafeString use RAND_bytes. Use them for values that are not secrets
//   (nonces, request ids, public record ids).
// Both fail with kUnavailable when the DRBG cannot produce output (never returns weak bytes).
//
// Thread safe (OpenSSL keeps per-thread DRBG instances).

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd::crypto {

// Fills `out` (any size, including empty).
Status RandomBytes(std::span<uint8_t> out);
Status RandomPrivateBytes(std::span<uint8_t> out);

// n random bytes for key material (RAND_priv_bytes); n == 0 gives an empty SecretBytes.
Result<SecretBytes> RandomSecret(size_t n);

// The 64-character base64url alphabet, A-Z a-z 0-9 - _ .
inline constexpr std::string_view kUrlSafeAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// `chars` characters, each uniform and independent over kUrlSafeAlphabet (6 bits each, so
// 32 characters carry 192 bits). chars must be in 1..kMaxRandomStringChars, else
// kInvalidArgument.
inline constexpr size_t kMaxRandomStringChars = 4096;
Result<std::string> RandomUrlSafeString(size_t chars);
// The same from RAND_priv_bytes, held only in SecretBytes (e.g. an access-code secret).
Result<SecretBytes> RandomUrlSafeSecret(size_t chars);

}  // namespace otd::crypto
