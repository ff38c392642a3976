#pragma once
// Text encodings of byte strings: hex, base64, base64url, base32 (RFC 4648).
//
// Contract shared by every decoder here:
// * Strict. Anything that is not the canonical encoding of some byte string is rejected with
//   kInvalidArgument: characters outside the alphabet (including whitespace and line breaks),
//   a length that no encoding can have, padding where the variant has none or missing/misplaced
//   padding where it is required, and non-zero unused bits in the last character (RFC 4648
//   §3.5), so every byte string has exactly one accepted encoding.
// * Error messages never echo the input (it may be secret).
// * The empty string encodes to "" and "" decodes to empty bytes.
//
// The *Secret variants produce or fill SecretBytes without passing through a std::string or
// Bytes, for TOTP seeds and tokenized payloads. Decoders take the text as a string_view: pass
// `s.RevealString(SecretAccess::Grant())` for secret text held in a SecretBytes.
//
// All functions are pure and thread safe.

#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd::crypto {

// Base16, lowercase ("00ff"). The decoder accepts either case but needs an even length.
std::string HexEncode(ByteView data);
// Lower-case hex of a secret, into a SecretBytes of exactly the right size (no intermediate copy).
Result<SecretBytes> HexEncodeSecret(const SecretBytes& data);
Result<Bytes> HexDecode(std::string_view text);

// Standard base64 (RFC 4648 §4, alphabet A-Z a-z 0-9 + /) with '=' padding to a multiple of
// four characters. The decoder requires exactly that padding.
std::string Base64Encode(ByteView data);
Result<Bytes> Base64Decode(std::string_view text);
Result<SecretBytes> Base64EncodeSecret(const SecretBytes& data);
Result<SecretBytes> Base64DecodeSecret(std::string_view text);

// URL- and filename-safe base64 (RFC 4648 §5, alphabet A-Z a-z 0-9 - _) without padding.
// The decoder rejects '=', '+' and '/'.
std::string Base64UrlEncode(ByteView data);
Result<Bytes> Base64UrlDecode(std::string_view text);

// Base32 (RFC 4648 §6, alphabet A-Z 2-7), encoded uppercase. kPadded pads with '=' to a multiple
// of eight characters and its decoder requires that padding; kUnpadded (as used in otpauth://
// URIs) emits no '=' and its decoder rejects any. Decoding is case-insensitive.
enum class Base32Padding { kPadded, kUnpadded };
std::string Base32Encode(ByteView data, Base32Padding padding = Base32Padding::kPadded);
Result<Bytes> Base32Decode(std::string_view text, Base32Padding padding = Base32Padding::kPadded);
Result<SecretBytes> Base32EncodeSecret(const SecretBytes& data,
                                       Base32Padding padding = Base32Padding::kPadded);
Result<SecretBytes> Base32DecodeSecret(std::string_view text,
                                       Base32Padding padding = Base32Padding::kPadded);

}  // namespace otd::crypto
