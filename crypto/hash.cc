#include "crypto/hash.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <climits>
#include <string>

#include "crypto/internal/evp_handles.h"
#include "crypto/internal/openssl_error.h"

namespace otd::crypto {

namespace {

using internal::EvpMac;
using internal::EvpMacCtx;
using internal::EvpMd;
using internal::OpenSslFailure;

// OpenSSL may reject a null pointer even with a zero length; empty spans can have one.
const uint8_t kEmpty[1] = {0};
const uint8_t* DataOrEmpty(ByteView b) { return b.data() != nullptr ? b.data() : kEmpty; }

Result<Bytes> Digest(const char* name, size_t size, ByteView data) {
  EvpMd md(EVP_MD_fetch(nullptr, name, nullptr));
  if (!md) {
    return OpenSslFailure(std::string("digest: fetching ") + name);
  }
  Bytes out(size);
  unsigned int out_len = 0;
  if (EVP_Digest(DataOrEmpty(data), data.size(), out.data(), &out_len, md.get(), nullptr) != 1) {
    return OpenSslFailure(std::string("digest: ") + name);
  }
  if (out_len != size) {
    return Internal(std::string("digest: unexpected size for ") + name);
  }
  return out;
}

Result<Bytes> Hmac(const char* digest, size_t size, const SecretBytes& key, ByteView data) {
  if (key.empty()) {
    return InvalidArgument("hmac: empty key");
  }
  EvpMac mac(EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr));
  if (!mac) {
    return OpenSslFailure("hmac: fetching HMAC");
  }
  EvpMacCtx ctx(EVP_MAC_CTX_new(mac.get()));
  if (!ctx) {
    return OpenSslFailure("hmac: new context");
  }
  // OSSL_PARAM wants a mutable char*; OpenSSL only reads it.
  std::string digest_name(digest);
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name.data(), 0),
      OSSL_PARAM_construct_end(),
  };
  const std::span<const uint8_t> k = key.Reveal(SecretAccess::Grant());
  if (EVP_MAC_init(ctx.get(), k.data(), k.size(), params) != 1) {
    return OpenSslFailure(std::string("hmac: init ") + digest);
  }
  if (EVP_MAC_update(ctx.get(), DataOrEmpty(data), data.size()) != 1) {
    return OpenSslFailure(std::string("hmac: update ") + digest);
  }
  Bytes out(size);
  size_t out_len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &out_len, out.size()) != 1) {
    return OpenSslFailure(std::string("hmac: final ") + digest);
  }
  if (out_len != size) {
    return Internal(std::string("hmac: unexpected size for ") + digest);
  }
  return out;
}

}  // namespace

Result<Bytes> Sha256(ByteView data) { return Digest("SHA2-256", kSha256Size, data); }
Result<Bytes> Sha512(ByteView data) { return Digest("SHA2-512", kSha512Size, data); }

Result<Bytes> HmacSha1(const SecretBytes& key, ByteView data) {
  return Hmac("SHA1", kSha1Size, key, data);
}
Result<Bytes> HmacSha256(const SecretBytes& key, ByteView data) {
  return Hmac("SHA2-256", kSha256Size, key, data);
}
Result<Bytes> HmacSha512(const SecretBytes& key, ByteView data) {
  return Hmac("SHA2-512", kSha512Size, key, data);
}

Result<SecretBytes> Pbkdf2Sha512(const SecretBytes& password, ByteView salt, uint32_t iterations,
                                 size_t out_len) {
  if (iterations == 0 || iterations > static_cast<uint32_t>(INT_MAX)) {
    return InvalidArgument("pbkdf2: iterations out of range");
  }
  if (out_len == 0 || out_len > kPbkdf2MaxOutputBytes) {
    return InvalidArgument("pbkdf2: output length out of range");
  }
  if (password.size() > static_cast<size_t>(INT_MAX) ||
      salt.size() > static_cast<size_t>(INT_MAX)) {
    return InvalidArgument("pbkdf2: input too large");
  }
  const std::span<const uint8_t> pw = password.Reveal(SecretAccess::Grant());
  SecretBytes out(out_len);
  std::span<uint8_t> dst = out.MutableReveal(SecretAccess::Grant());
  // PKCS5_PBKDF2_HMAC runs the KDF in PKCS#5 mode (no SP 800-132 lower-bound checks), so the
  // published small test vectors work; the caller chooses real parameters.
  if (PKCS5_PBKDF2_HMAC(reinterpret_cast<const char*>(DataOrEmpty(pw)), static_cast<int>(pw.size()),
                        DataOrEmpty(salt), static_cast<int>(salt.size()),
                        static_cast<int>(iterations), EVP_sha512(), static_cast<int>(dst.size()),
                        dst.data()) != 1) {
    return OpenSslFailure("pbkdf2: derive");  // `out` is wiped on destruction
  }
  return out;
}

}  // namespace otd::crypto
