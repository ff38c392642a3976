#pragma once
// One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238) with HMAC-SHA1, the variant every
// authenticator app supports, plus the otpauth:// URI that such apps scan as a QR code.
//
// Codes are decimal strings of exactly `digits` characters (leading zeros kept). They are
// short-lived secrets: compare them with TotpCodeEquals, never ==, and do not log them.
// Thread safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd::crypto {

inline constexpr int kTotpDefaultPeriod = 30;
inline constexpr int kTotpDefaultDigits = 6;
inline constexpr int kOtpMinDigits = 6;  // RFC 4226 §5.3: at least six
inline constexpr int kOtpMaxDigits = 8;

// RFC 4226: HMAC-SHA1(key, counter as 8 bytes big-endian), dynamic truncation, mod 10^digits.
// kInvalidArgument for an empty key or digits outside kOtpMinDigits..kOtpMaxDigits.
Result<std::string> HotpCode(const SecretBytes& key, uint64_t counter,
                             int digits = kTotpDefaultDigits);

// RFC 6238 with T0 = 0: HotpCode(key, floor(unix_time / period), digits).
// kInvalidArgument also for unix_time < 0 or period < 1.
Result<std::string> TotpCode(const SecretBytes& key, int64_t unix_time,
                             int period = kTotpDefaultPeriod, int digits = kTotpDefaultDigits);

// Constant-time equality of two codes (CRYPTO_memcmp); different lengths compare unequal
// (the length of a code is not secret).
bool TotpCodeEquals(std::string_view a, std::string_view b);

// otpauth://totp/<issuer>:<account>?secret=<base32_key>&issuer=<issuer>
// (Key Uri Format). issuer and account are percent-encoded byte by byte, keeping only RFC 3986
// unreserved characters (A-Z a-z 0-9 - . _ ~). base32_key is the raw key in base32; trailing '='
// padding is dropped, as authenticator apps expect, and any character that is not unreserved is
// percent-encoded so it cannot break the URI. The defaults (SHA1, 6 digits, 30 s) are implied.
// The result contains the key: show it once (QR code) and do not log or store it.
std::string OtpauthUri(std::string_view issuer, std::string_view account,
                       std::string_view base32_key);

// The same URI built from the raw key, without the key ever being held outside SecretBytes.
// kInvalidArgument for an empty key.
Result<SecretBytes> OtpauthUriSecret(std::string_view issuer, std::string_view account,
                                     const SecretBytes& key);

}  // namespace otd::crypto
