#pragma once
// SHA-2 digests, HMAC and PBKDF2 through OpenSSL's EVP interfaces (default library context).
//
// * Every function returns an error value instead of throwing; kInternal means OpenSSL itself
//   failed (no provider, out of memory) and carries no caller data.
// * HMAC keys are SecretBytes and must not be empty (an empty key is always a caller bug here).
// * Outputs are fixed size: 32 bytes for SHA-256, 64 for SHA-512, 20 for HMAC-SHA1.
// * Compare MACs with otd::ConstantTimeEquals (common/secret_bytes.h), never with ==.
//
// Thread safe: no shared state beyond OpenSSL's own.

#include <cstddef>
#include <cstdint>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd::crypto {

inline constexpr size_t kSha1Size = 20;
inline constexpr size_t kSha256Size = 32;
inline constexpr size_t kSha512Size = 64;

Result<Bytes> Sha256(ByteView data);
Result<Bytes> Sha512(ByteView data);

// HMAC (RFC 2104). HMAC-SHA1 exists for TOTP (RFC 6238) only.
Result<Bytes> HmacSha1(const SecretBytes& key, ByteView data);
Result<Bytes> HmacSha256(const SecretBytes& key, ByteView data);
Result<Bytes> HmacSha512(const SecretBytes& key, ByteView data);

// PBKDF2 (RFC 8018 §5.2) with HMAC-SHA512. The password may be empty; the salt should be at
// least 16 random bytes (not enforced, for published test vectors). iterations >= 1 and
// 1 <= out_len <= kPbkdf2MaxOutputBytes, else kInvalidArgument. The iteration count is the
// caller's policy. The derived key is a secret: it never leaves SecretBytes.
inline constexpr size_t kPbkdf2MaxOutputBytes = 1024;
Result<SecretBytes> Pbkdf2Sha512(const SecretBytes& password, ByteView salt, uint32_t iterations,
                                 size_t out_len);

}  // namespace otd::crypto
