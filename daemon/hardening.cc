#include "daemon/hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <openssl/crypto.h>

namespace otd::daemon {

Status DisableCoreDumps() {
  struct rlimit none {
    0, 0
  };
  if (::setrlimit(RLIMIT_CORE, &none) != 0) {
    return Unavailable("cannot set RLIMIT_CORE to 0");
  }
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Unavailable("cannot clear PR_SET_DUMPABLE");
  }
  return Status::Ok();
}

Result<uint64_t> RaiseOpenFileLimit() {
  struct rlimit lim {};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return Unavailable("cannot read RLIMIT_NOFILE");
  }
  if (lim.rlim_cur != lim.rlim_max) {
    struct rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      lim = raised;
    }
  }
  return static_cast<uint64_t>(lim.rlim_cur == RLIM_INFINITY ? UINT64_MAX : lim.rlim_cur);
}

Result<SecureHeap> SecureHeap::Init(size_t bytes, size_t min_chunk) {
  if (CRYPTO_secure_malloc_initialized() == 1) {
    return Unavailable("the secure heap is already initialised");
  }
  int rc = CRYPTO_secure_malloc_init(bytes, min_chunk);
  if (rc != 1) {
    if (rc == 2) {
      CRYPTO_secure_malloc_done();
    }
    return Unavailable(
        "cannot create a locked secure heap for secrets (mlock failed?): raise RLIMIT_MEMLOCK "
        "(LimitMEMLOCK= in the unit) to at least 2 MiB");
  }
  SecureHeap h;
  h.active_ = true;
  return h;
}

SecureHeap::~SecureHeap() {
  if (active_) {
    CRYPTO_secure_malloc_done();
  }
}

}  // namespace otd::daemon
