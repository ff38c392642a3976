#pragma once
// SecretBytes: the only type that holds key material, PINs, access-code secrets, password hashes,
// TOTP seeds and tokenized payloads in memory.
//
// * Allocated from OpenSSL's secure heap when it has been initialised (SecureHeap, owned by
//   main): mlocked, MADV_DONTDUMP, guard pages. Otherwise from the normal heap, still wiped.
// * Wiped with OPENSSL_cleanse on destruction and on move-from.
// * Move-only; copies are explicit (Clone()).
// * Reading the bytes takes a SecretAccess, so every place that touches secret bytes can be
//   found with `grep -rn SecretAccess`.
// * Never converts to a string, never prints its contents.
//
// Thread safety: like std::vector (distinct objects may be used concurrently).

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string_view>

namespace otd {

// A greppable capability for reading secret bytes.
class SecretAccess {
 public:
  static SecretAccess Grant() { return SecretAccess(); }

 private:
  SecretAccess() = default;
};

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t n);  // n zero bytes
  static SecretBytes CopyFrom(std::span<const uint8_t> bytes);
  static SecretBytes CopyFrom(std::string_view bytes);
  SecretBytes(SecretBytes&& o) noexcept;
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  SecretBytes Clone() const;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // True when the buffer lives in OpenSSL's secure heap.
  bool IsOnSecureHeap() const;
  // Shrinks the logical size (the tail is wiped). n must be <= size().
  void Truncate(size_t n);

  std::span<const uint8_t> Reveal(SecretAccess) const { return {data_, size_}; }
  std::span<uint8_t> MutableReveal(SecretAccess) { return {data_, size_}; }
  std::string_view RevealString(SecretAccess) const {
    return {reinterpret_cast<const char*>(data_), size_};
  }

  // Constant-time comparison (CRYPTO_memcmp); different sizes compare unequal.
  friend bool ConstantTimeEquals(const SecretBytes& a, const SecretBytes& b);

  friend std::ostream& operator<<(std::ostream& o, const SecretBytes& s) {
    return o << "SecretBytes[" << s.size() << " bytes, redacted]";
  }

 private:
  void Release() noexcept;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// Constant-time comparison of public-length byte strings (e.g. MACs).
bool ConstantTimeEquals(std::span<const uint8_t> a, std::span<const uint8_t> b);

}  // namespace otd
