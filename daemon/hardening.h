#pragma once
// Process hardening done before any secret exists (style-and-safety B.5.3):
//  * core dumps off: prctl(PR_SET_DUMPABLE, 0) and RLIMIT_CORE = 0;
//  * OpenSSL's secure heap (mlocked, MADV_DONTDUMP, guard pages) for every SecretBytes.
// And one resource limit: open files up to the hard limit (the connection budgets need them).
// The SecureHeap owner lives in main() for the life of the process.

#include <cstddef>
#include <cstdint>

#include "common/status.h"

namespace otd::daemon {

Status DisableCoreDumps();

// Raises the soft RLIMIT_NOFILE to the hard limit (every client connection holds a descriptor;
// the soft default is often 1024). Returns the soft limit now in force; kUnavailable if it
// cannot be read.
Result<uint64_t> RaiseOpenFileLimit();

class SecureHeap {
 public:
  // kUnavailable if the heap cannot be created or cannot be locked (CRYPTO_secure_malloc_init != 1,
  // e.g. RLIMIT_MEMLOCK too small: raise LimitMEMLOCK in the unit).
  static Result<SecureHeap> Init(size_t bytes = 1 << 20, size_t min_chunk = 32);
  SecureHeap(SecureHeap&& o) noexcept : active_(o.active_) { o.active_ = false; }
  SecureHeap(const SecureHeap&) = delete;
  ~SecureHeap();

 private:
  SecureHeap() = default;
  bool active_ = false;
};

}  // namespace otd::daemon
