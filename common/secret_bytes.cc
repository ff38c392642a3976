#include "common/secret_bytes.h"

#include <openssl/crypto.h>

#include <cstring>
#include <new>
#include <utility>

namespace otd {

namespace {

uint8_t* AllocateSecret(size_t n) {
  if (n == 0) {
    return nullptr;
  }
  // The secure heap (small, mlocked, excluded from dumps) is for keys, PINs, seeds and other small
  // secrets. When it is not initialised, or a buffer does not fit (a large payload, or the heap is
  // full), the normal heap is used: such buffers are still wiped on free (OPENSSL_secure_clear_free
  // cleanses non-secure pointers too), and core dumps are disabled for the whole process.
  void* p = OPENSSL_secure_zalloc(n);
  if (p == nullptr) {
    p = OPENSSL_zalloc(n);
  }
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  return static_cast<uint8_t*>(p);
}

}  // namespace

SecretBytes::SecretBytes(size_t n) : data_(AllocateSecret(n)), size_(n), capacity_(n) {}

SecretBytes SecretBytes::CopyFrom(std::span<const uint8_t> bytes) {
  SecretBytes s(bytes.size());
  if (!bytes.empty()) {
    std::memcpy(s.data_, bytes.data(), bytes.size());
  }
  return s;
}

SecretBytes SecretBytes::CopyFrom(std::string_view bytes) {
  return CopyFrom(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      capacity_(std::exchange(o.capacity_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    Release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
  }
  return *this;
}

SecretBytes::~SecretBytes() { Release(); }

void SecretBytes::Release() noexcept {
  if (data_ != nullptr) {
    // OPENSSL_secure_clear_free cleanses before freeing, for both heaps.
    OPENSSL_secure_clear_free(data_, capacity_);
  }
  data_ = nullptr;
  size_ = 0;
  capacity_ = 0;
}

SecretBytes SecretBytes::Clone() const { return CopyFrom(std::span<const uint8_t>(data_, size_)); }

bool SecretBytes::IsOnSecureHeap() const {
  return data_ != nullptr && CRYPTO_secure_allocated(data_) == 1;
}

void SecretBytes::Truncate(size_t n) {
  if (n >= size_) {
    return;
  }
  OPENSSL_cleanse(data_ + n, size_ - n);
  size_ = n;
}

bool ConstantTimeEquals(const SecretBytes& a, const SecretBytes& b) {
  if (a.size_ != b.size_) {
    return false;
  }
  if (a.size_ == 0) {
    return true;
  }
  return CRYPTO_memcmp(a.data_, b.data_, a.size_) == 0;
}

bool ConstantTimeEquals(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) {
    return false;
  }
  if (a.empty()) {
    return true;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace otd
