#include "crypto/random.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>

#include "crypto/internal/openssl_error.h"

namespace otd::crypto {

namespace {

using RandFn = int (*)(unsigned char*, int);

Status Fill(RandFn fn, std::span<uint8_t> out) {
  // RAND_bytes takes an int length: fill in chunks.
  constexpr size_t kChunk = static_cast<size_t>(INT_MAX);
  for (size_t done = 0; done < out.size();) {
    const size_t n = std::min(kChunk, out.size() - done);
    if (fn(out.data() + done, static_cast<int>(n)) != 1) {
      OPENSSL_cleanse(out.data(), out.size());
      const Status failure = internal::OpenSslFailure("random: DRBG failed");
      return Unavailable(failure.message());
    }
    done += n;
  }
  return Status::Ok();
}

Status CheckChars(size_t chars) {
  if (chars == 0 || chars > kMaxRandomStringChars) {
    return InvalidArgument("random: string length out of range");
  }
  return Status::Ok();
}

// Maps each random byte to one alphabet character in place. 256 is a multiple of 64, so taking
// the low six bits keeps the distribution uniform (no modulo bias).
void MapToAlphabet(std::span<uint8_t> bytes) {
  static_assert(kUrlSafeAlphabet.size() == 64);
  for (uint8_t& b : bytes) {
    b = static_cast<uint8_t>(kUrlSafeAlphabet[b & 0x3f]);
  }
}

}  // namespace

Status RandomBytes(std::span<uint8_t> out) { return Fill(RAND_bytes, out); }
Status RandomPrivateBytes(std::span<uint8_t> out) { return Fill(RAND_priv_bytes, out); }

Result<SecretBytes> RandomSecret(size_t n) {
  SecretBytes out(n);
  OTD_RETURN_IF_ERROR(RandomPrivateBytes(out.MutableReveal(SecretAccess::Grant())));
  return out;
}

Result<std::string> RandomUrlSafeString(size_t chars) {
  OTD_RETURN_IF_ERROR(CheckChars(chars));
  std::string out(chars, '\0');
  std::span<uint8_t> bytes(reinterpret_cast<uint8_t*>(out.data()), out.size());
  OTD_RETURN_IF_ERROR(RandomBytes(bytes));
  MapToAlphabet(bytes);
  return out;
}

Result<SecretBytes> RandomUrlSafeSecret(size_t chars) {
  OTD_RETURN_IF_ERROR(CheckChars(chars));
  SecretBytes out(chars);
  std::span<uint8_t> bytes = out.MutableReveal(SecretAccess::Grant());
  OTD_RETURN_IF_ERROR(RandomPrivateBytes(bytes));
  MapToAlphabet(bytes);
  return out;
}

}  // namespace otd::crypto
