#include "crypto/encoding.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

namespace otd::crypto {

namespace {

// A radix-2^k encoding of bytes (k = 4, 5 or 6), written most significant bit first.
struct Codec {
  const char* name;           // for error messages
  std::string_view alphabet;  // 2^k characters, the encoder's output alphabet
  int bits;                   // k
  size_t block_chars;         // characters per padded block (2, 8 or 4)
  uint32_t valid_tails;       // bit r set: an unpadded length with length % block_chars == r
                              // can occur
  bool case_insensitive;      // the decoder also accepts the other case of letters
};

constexpr Codec kHex{"hex", "0123456789abcdef", 4, 2, 1u << 0, true};
constexpr Codec kBase64{"base64",
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                        6,
                        4,
                        (1u << 0) | (1u << 2) | (1u << 3),
                        false};
constexpr Codec kBase64Url{"base64url",
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                           6,
                           4,
                           (1u << 0) | (1u << 2) | (1u << 3),
                           false};
constexpr Codec kBase32{"base32",
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
                        5,
                        8,
                        (1u << 0) | (1u << 2) | (1u << 4) | (1u << 5) | (1u << 7),
                        true};

constexpr uint8_t kInvalid = 0xff;
using DecodeTable = std::array<uint8_t, 256>;

constexpr char OtherCase(char c) {
  if (c >= 'a' && c <= 'z') {
    return static_cast<char>(c - 'a' + 'A');
  }
  if (c >= 'A' && c <= 'Z') {
    return static_cast<char>(c - 'A' + 'a');
  }
  return c;
}

constexpr DecodeTable MakeDecodeTable(const Codec& codec) {
  DecodeTable table{};
  for (auto& v : table) {
    v = kInvalid;
  }
  for (size_t i = 0; i < codec.alphabet.size(); ++i) {
    char c = codec.alphabet[i];
    table[static_cast<uint8_t>(c)] = static_cast<uint8_t>(i);
    if (codec.case_insensitive) {
      table[static_cast<uint8_t>(OtherCase(c))] = static_cast<uint8_t>(i);
    }
  }
  return table;
}

constexpr DecodeTable kHexTable = MakeDecodeTable(kHex);
constexpr DecodeTable kBase64Table = MakeDecodeTable(kBase64);
constexpr DecodeTable kBase64UrlTable = MakeDecodeTable(kBase64Url);
constexpr DecodeTable kBase32Table = MakeDecodeTable(kBase32);

constexpr size_t kMaxSize = std::numeric_limits<size_t>::max();

// Characters needed for n bytes, or kMaxSize when that does not fit in size_t.
size_t EncodedSize(const Codec& codec, size_t n, bool pad) {
  const size_t block_bytes = codec.block_chars * static_cast<size_t>(codec.bits) / 8;
  const size_t blocks = n / block_bytes + (n % block_bytes != 0 ? 1 : 0);
  if (blocks > kMaxSize / codec.block_chars) {
    return kMaxSize;
  }
  if (pad) {
    return blocks * codec.block_chars;
  }
  // ceil(8n / k), computed per block so it cannot overflow.
  const size_t tail_bytes = n % block_bytes;
  const size_t full = (n / block_bytes) * codec.block_chars;
  return full +
         (tail_bytes * 8 + static_cast<size_t>(codec.bits) - 1) / static_cast<size_t>(codec.bits);
}

// Writes exactly EncodedSize(codec, in.size(), pad) characters to out.
void EncodeInto(const Codec& codec, ByteView in, bool pad, char* out) {
  const uint32_t mask = (1u << codec.bits) - 1;
  uint32_t acc = 0;
  int acc_bits = 0;
  size_t written = 0;
  for (uint8_t b : in) {
    acc = (acc << 8) | b;
    acc_bits += 8;
    while (acc_bits >= codec.bits) {
      acc_bits -= codec.bits;
      out[written++] = codec.alphabet[(acc >> acc_bits) & mask];
    }
    acc &= (1u << acc_bits) - 1;
  }
  if (acc_bits > 0) {
    out[written++] = codec.alphabet[(acc << (codec.bits - acc_bits)) & mask];
  }
  if (pad) {
    while (written % codec.block_chars != 0) {
      out[written++] = '=';
    }
  }
}

// Checks the shape of `text` (length and padding) and returns the number of data characters
// (the text without its padding).
Result<size_t> DataLength(const Codec& codec, std::string_view text, bool pad) {
  const size_t first_pad = text.find('=');
  size_t data_len = text.size();
  if (first_pad != std::string_view::npos) {
    if (!pad) {
      return InvalidArgument(std::string(codec.name) + ": unexpected padding");
    }
    data_len = first_pad;
    if (text.find_first_not_of('=', first_pad) != std::string_view::npos) {
      return InvalidArgument(std::string(codec.name) + ": padding inside the data");
    }
  }
  if ((codec.valid_tails & (1u << (data_len % codec.block_chars))) == 0) {
    return InvalidArgument(std::string(codec.name) + ": invalid length");
  }
  if (pad) {
    const size_t rem = data_len % codec.block_chars;
    const size_t want_pad = rem == 0 ? 0 : codec.block_chars - rem;
    if (text.size() - data_len != want_pad) {
      return InvalidArgument(std::string(codec.name) + ": invalid padding");
    }
  }
  return data_len;
}

size_t DecodedSize(const Codec& codec, size_t data_len) {
  // data_len * k / 8 without overflow: whole blocks, then the tail.
  const size_t block_bytes = codec.block_chars * static_cast<size_t>(codec.bits) / 8;
  return (data_len / codec.block_chars) * block_bytes +
         (data_len % codec.block_chars) * static_cast<size_t>(codec.bits) / 8;
}

// Decodes the data characters `data` into exactly out.size() == DecodedSize() bytes.
Status DecodeInto(const Codec& codec, const DecodeTable& table, std::string_view data,
                  std::span<uint8_t> out) {
  uint32_t acc = 0;
  int acc_bits = 0;
  size_t written = 0;
  for (char c : data) {
    const uint8_t v = table[static_cast<uint8_t>(c)];
    if (v == kInvalid) {
      return InvalidArgument(std::string(codec.name) + ": invalid character");
    }
    acc = (acc << codec.bits) | v;
    acc_bits += codec.bits;
    if (acc_bits >= 8) {
      acc_bits -= 8;
      out[written++] = static_cast<uint8_t>(acc >> acc_bits);
    }
    acc &= (1u << acc_bits) - 1;
  }
  if (acc != 0) {
    return InvalidArgument(std::string(codec.name) + ": non-zero trailing bits");
  }
  if (written != out.size()) {
    return Internal(std::string(codec.name) + ": decoded size mismatch");
  }
  return Status::Ok();
}

std::string EncodeToString(const Codec& codec, ByteView in, bool pad) {
  std::string out(EncodedSize(codec, in.size(), pad), '\0');
  EncodeInto(codec, in, pad, out.data());
  return out;
}

Result<SecretBytes> EncodeToSecret(const Codec& codec, const SecretBytes& in, bool pad) {
  const size_t n = EncodedSize(codec, in.size(), pad);
  if (n == kMaxSize) {
    return ResourceExhausted(std::string(codec.name) + ": input too large");
  }
  SecretBytes out(n);
  std::span<uint8_t> dst = out.MutableReveal(SecretAccess::Grant());
  EncodeInto(codec, in.Reveal(SecretAccess::Grant()), pad, reinterpret_cast<char*>(dst.data()));
  return out;
}

Result<Bytes> DecodeToBytes(const Codec& codec, const DecodeTable& table, std::string_view text,
                            bool pad) {
  OTD_ASSIGN_OR_RETURN(size_t data_len, DataLength(codec, text, pad));
  Bytes out(DecodedSize(codec, data_len));
  OTD_RETURN_IF_ERROR(DecodeInto(codec, table, text.substr(0, data_len), out));
  return out;
}

Result<SecretBytes> DecodeToSecret(const Codec& codec, const DecodeTable& table,
                                   std::string_view text, bool pad) {
  OTD_ASSIGN_OR_RETURN(size_t data_len, DataLength(codec, text, pad));
  // On failure `out` is destroyed, which wipes whatever was decoded so far.
  SecretBytes out(DecodedSize(codec, data_len));
  OTD_RETURN_IF_ERROR(
      DecodeInto(codec, table, text.substr(0, data_len), out.MutableReveal(SecretAccess::Grant())));
  return out;
}

bool Padded(Base32Padding p) { return p == Base32Padding::kPadded; }

}  // namespace

std::string HexEncode(ByteView data) { return EncodeToString(kHex, data, false); }
Result<SecretBytes> HexEncodeSecret(const SecretBytes& data) {
  return EncodeToSecret(kHex, data, false);
}
Result<Bytes> HexDecode(std::string_view text) {
  return DecodeToBytes(kHex, kHexTable, text, false);
}

std::string Base64Encode(ByteView data) { return EncodeToString(kBase64, data, true); }
Result<Bytes> Base64Decode(std::string_view text) {
  return DecodeToBytes(kBase64, kBase64Table, text, true);
}
Result<SecretBytes> Base64EncodeSecret(const SecretBytes& data) {
  return EncodeToSecret(kBase64, data, true);
}
Result<SecretBytes> Base64DecodeSecret(std::string_view text) {
  return DecodeToSecret(kBase64, kBase64Table, text, true);
}

std::string Base64UrlEncode(ByteView data) { return EncodeToString(kBase64Url, data, false); }
Result<Bytes> Base64UrlDecode(std::string_view text) {
  return DecodeToBytes(kBase64Url, kBase64UrlTable, text, false);
}

std::string Base32Encode(ByteView data, Base32Padding padding) {
  return EncodeToString(kBase32, data, Padded(padding));
}
Result<Bytes> Base32Decode(std::string_view text, Base32Padding padding) {
  return DecodeToBytes(kBase32, kBase32Table, text, Padded(padding));
}
Result<SecretBytes> Base32EncodeSecret(const SecretBytes& data, Base32Padding padding) {
  return EncodeToSecret(kBase32, data, Padded(padding));
}
Result<SecretBytes> Base32DecodeSecret(std::string_view text, Base32Padding padding) {
  return DecodeToSecret(kBase32, kBase32Table, text, Padded(padding));
}

}  // namespace otd::crypto
