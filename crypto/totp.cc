#include "crypto/totp.h"

#include <openssl/crypto.h>

#include <array>
#include <cstring>

#include "crypto/encoding.h"
#include "crypto/hash.h"

namespace otd::crypto {

namespace {

constexpr uint32_t kPowersOfTen[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

bool IsUnreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHexDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (IsUnreserved(c)) {
      out.push_back(c);
    } else {
      const auto b = static_cast<uint8_t>(c);
      out.push_back('%');
      out.push_back(kHexDigits[b >> 4]);
      out.push_back(kHexDigits[b & 0x0f]);
    }
  }
  return out;
}

std::string_view StripPadding(std::string_view b32) {
  while (!b32.empty() && b32.back() == '=') {
    b32.remove_suffix(1);
  }
  return b32;
}

std::string UriPrefix(std::string_view issuer, std::string_view account) {
  return "otpauth://totp/" + PercentEncode(issuer) + ":" + PercentEncode(account) + "?secret=";
}

std::string UriSuffix(std::string_view issuer) { return "&issuer=" + PercentEncode(issuer); }

}  // namespace

Result<std::string> HotpCode(const SecretBytes& key, uint64_t counter, int digits) {
  if (key.empty()) {
    return InvalidArgument("otp: empty key");
  }
  if (digits < kOtpMinDigits || digits > kOtpMaxDigits) {
    return InvalidArgument("otp: digits out of range");
  }
  std::array<uint8_t, 8> msg{};
  for (size_t i = 0; i < msg.size(); ++i) {
    msg[msg.size() - 1 - i] = static_cast<uint8_t>(counter >> (8 * i));
  }
  OTD_ASSIGN_OR_RETURN(Bytes mac, HmacSha1(key, msg));
  // RFC 4226 §5.3 dynamic truncation.
  const size_t offset = mac[mac.size() - 1] & 0x0f;
  const uint32_t binary = (static_cast<uint32_t>(mac[offset] & 0x7f) << 24) |
                          (static_cast<uint32_t>(mac[offset + 1]) << 16) |
                          (static_cast<uint32_t>(mac[offset + 2]) << 8) |
                          static_cast<uint32_t>(mac[offset + 3]);
  OPENSSL_cleanse(mac.data(), mac.size());
  uint32_t value = binary % kPowersOfTen[digits];
  std::string code(static_cast<size_t>(digits), '0');
  for (size_t i = code.size(); i-- > 0;) {
    code[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  return code;
}

Result<std::string> TotpCode(const SecretBytes& key, int64_t unix_time, int period, int digits) {
  if (unix_time < 0) {
    return InvalidArgument("totp: time before the epoch");
  }
  if (period < 1) {
    return InvalidArgument("totp: period out of range");
  }
  return HotpCode(key, static_cast<uint64_t>(unix_time / period), digits);
}

bool TotpCodeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  if (a.empty()) {
    return true;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string OtpauthUri(std::string_view issuer, std::string_view account,
                       std::string_view base32_key) {
  return UriPrefix(issuer, account) + PercentEncode(StripPadding(base32_key)) + UriSuffix(issuer);
}

Result<SecretBytes> OtpauthUriSecret(std::string_view issuer, std::string_view account,
                                     const SecretBytes& key) {
  if (key.empty()) {
    return InvalidArgument("otpauth: empty key");
  }
  OTD_ASSIGN_OR_RETURN(SecretBytes b32, Base32EncodeSecret(key, Base32Padding::kUnpadded));
  const std::string prefix = UriPrefix(issuer, account);
  const std::string suffix = UriSuffix(issuer);
  const std::span<const uint8_t> k = b32.Reveal(SecretAccess::Grant());
  SecretBytes out(prefix.size() + k.size() + suffix.size());
  std::span<uint8_t> dst = out.MutableReveal(SecretAccess::Grant());
  std::memcpy(dst.data(), prefix.data(), prefix.size());
  std::memcpy(dst.data() + prefix.size(), k.data(), k.size());
  std::memcpy(dst.data() + prefix.size() + k.size(), suffix.data(), suffix.size());
  return out;
}

}  // namespace otd::crypto
