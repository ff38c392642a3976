// Secret, encodings, PBKDF2/TOTP/challenge hash and OT1 signing (pure functions over OpenSSL).
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>

#include "opentoken/client.h"

namespace opentoken {

void Wipe(std::string& s) {
  if (!s.empty()) {
    OPENSSL_cleanse(s.data(), s.size());
  }
  s.clear();
}

Secret::Secret(Secret&& o) noexcept : value_(std::move(o.value_)) { Wipe(o.value_); }

Secret& Secret::operator=(Secret&& o) noexcept {
  if (this != &o) {
    Wipe(value_);
    value_ = std::move(o.value_);
    Wipe(o.value_);
  }
  return *this;
}

Secret::~Secret() { Wipe(value_); }

namespace {

Error Usage(std::string message) { return Error{Error::Kind::kUsage, 0, std::move(message), {}}; }

std::string_view AsView(const unsigned char* p, size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

const unsigned char* AsUnsigned(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::string Hmac(const EVP_MD* md, std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()), AsUnsigned(data), data.size(), out.data(),
       &len);
  std::string r(AsView(out.data(), len));
  OPENSSL_cleanse(out.data(), out.size());
  return r;
}

std::string ToLower(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return r;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0x0f]);
  }
  return out;
}

Result<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return Usage("hex: odd length");
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
      return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
      return c - 'A' + 10;
    }
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return Usage("hex: not a hex digit");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), AsUnsigned(bytes),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Base32Decode(std::string_view text) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    int v = -1;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a';
    } else if (c >= '2' && c <= '7') {
      v = c - '2' + 26;
    } else if (c == '=' || c == ' ' || c == '-') {
      continue;
    } else {
      return Usage("base32: invalid character");
    }
    buffer = (buffer << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  std::string mac = Hmac(EVP_sha256(), key, data);
  std::string hex = HexEncode(mac);
  Wipe(mac);
  return hex;
}

Result<Secret> PasswordHash(const nlohmann::json& config, const Secret& password) {
  if (!config.is_object() || config.value("type", "") != "pbkdf2" ||
      config.value("algorithm", "") != "sha512" || config.value("encoding", "") != "base64" ||
      !config.contains("salt") || !config["salt"].is_string() || !config.contains("iterations") ||
      !config["iterations"].is_number_integer() || !config.contains("derivedLength") ||
      !config["derivedLength"].is_number_integer()) {
    return Error{Error::Kind::kTransport,
                 0,
                 "passwordHashConfig: expected pbkdf2/sha512/base64 with salt, iterations and "
                 "derivedLength",
                 {}};
  }
  const auto iterations = config["iterations"].get<std::int64_t>();
  const auto length = config["derivedLength"].get<std::int64_t>();
  if (iterations < 1 || iterations > 10'000'000 || length < 1 || length > 1024) {
    return Error{Error::Kind::kTransport, 0, "passwordHashConfig: parameters out of range", {}};
  }
  const std::string salt = config["salt"].get<std::string>();
  std::string raw(static_cast<size_t>(length), '\0');
  const std::string& pw = password.Reveal();
  if (PKCS5_PBKDF2_HMAC(pw.data(), static_cast<int>(pw.size()), AsUnsigned(salt),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha512(),
                        static_cast<int>(length),
                        reinterpret_cast<unsigned char*>(raw.data())) != 1) {
    Wipe(raw);
    return Error{Error::Kind::kLocal, 0, "PBKDF2 failed", {}};
  }
  Secret out(Base64Encode(raw));
  Wipe(raw);
  return out;
}

Result<Secret> ChallengeHash(const Secret& password_hash, const nlohmann::json& config) {
  if (!config.is_object() || config.value("algorithm", "") != "sha512" ||
      config.value("encoding", "") != "hex" || !config.contains("salt") ||
      !config["salt"].is_string()) {
    return Error{
        Error::Kind::kTransport, 0, "challengeHashConfig: expected sha512/hex with a salt", {}};
  }
  std::string input = password_hash.Reveal() + config["salt"].get<std::string>();
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  const int rc = EVP_Digest(input.data(), input.size(), md.data(), &len, EVP_sha512(), nullptr);
  Wipe(input);
  if (rc != 1) {
    return Error{Error::Kind::kLocal, 0, "SHA-512 failed", {}};
  }
  Secret out(HexEncode(AsView(md.data(), len)));
  OPENSSL_cleanse(md.data(), md.size());
  return out;
}

std::string Totp(std::string_view key, std::int64_t unix_time, int step_offset) {
  const std::int64_t counter = unix_time / 30 + step_offset;
  std::array<char, 8> msg{};
  for (int i = 7; i >= 0; --i) {
    msg[static_cast<size_t>(i)] =
        static_cast<char>((static_cast<std::uint64_t>(counter) >> (8 * (7 - i))) & 0xff);
  }
  std::string mac = Hmac(EVP_sha1(), key, std::string_view(msg.data(), msg.size()));
  const auto offset = static_cast<size_t>(static_cast<unsigned char>(mac.back()) & 0x0f);
  std::uint32_t bin = 0;
  for (size_t i = 0; i < 4; ++i) {
    bin = (bin << 8) | static_cast<unsigned char>(mac[offset + i]);
  }
  Wipe(mac);
  const std::uint32_t code = (bin & 0x7fffffffU) % 1'000'000U;
  std::string digits = std::to_string(code);
  return std::string(6 - digits.size(), '0') + digits;
}

std::string Ot1Date(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::array<char, 32> buf{};
  const size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf.data(), n);
}

Result<std::string> CanonicalString(std::string_view method, std::string_view target,
                                    const Headers& headers,
                                    const std::vector<std::string>& signed_names,
                                    std::string_view body) {
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  std::string out;
  out.append(method).append("\n").append(path).append("\n").append(query).append("\n");
  for (const std::string& name : signed_names) {
    const std::string lower = ToLower(Trim(name));
    const Header* found = nullptr;
    for (const Header& h : headers) {
      if (ToLower(Trim(h.first)) == lower) {
        found = &h;
        break;
      }
    }
    if (found == nullptr) {
      return Usage("signed header " + lower + " is not in the request");
    }
    std::string value(Trim(found->second));
    if (lower == "host") {
      value = ToLower(value);
    }
    out.append(lower).append(":").append(value).append("\n");
  }
  out.append("\n");
  out.append(body);
  return out;
}

Result<Headers> Sign(std::string_view method, std::string_view target, const Headers& headers,
                     std::string_view body, std::string_view access_code, const Secret& secret,
                     std::string_view date) {
  Headers out = headers;
  out.emplace_back("X-OpenToken-Date",
                   date.empty() ? Ot1Date(std::time(nullptr)) : std::string(date));
  static const std::vector<std::string> kSigned = {"host", "content-type", "x-opentoken-date"};
  Result<std::string> canonical = CanonicalString(method, target, out, kSigned, body);
  if (!canonical.ok()) {
    return canonical.error();
  }
  const std::string signature = HmacSha256Hex(secret.Reveal(), *canonical);
  Wipe(*canonical);  // holds the body (the payload being tokenized)
  out.emplace_back("Authorization", std::string(kOt1Scheme) +
                                        "; access-code=" + std::string(access_code) +
                                        "; signed-headers=host content-type x-opentoken-date; "
                                        "signature=" +
                                        signature);
  return out;
}

}  // namespace opentoken
