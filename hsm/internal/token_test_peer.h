#pragma once
// Test-only access to a Token's PKCS#11 internals (hsm tests and tests/integration). Production
// code must not include this header.

#include <cstddef>
#include <cstdint>

#include "hsm/hsm.h"
#include "hsm/internal/pkcs11.h"
#include "hsm/internal/token_impl.h"

namespace otd::hsm {

class TokenTestPeer {
 public:
  static CK_FUNCTION_LIST* Functions(Token& t) { return t.impl_->fn(); }
  static CK_SLOT_ID Slot(Token& t) { return t.impl_->slot(); }
  static CK_SESSION_HANDLE Handle(const Session& s) { return s.handle_; }
  static uint64_t Generation(Token& t) { return t.impl_->generation(); }
  static size_t OpenSessions(Token& t) { return t.impl_->open_sessions(); }
  static size_t IdleSessions(Token& t) { return t.impl_->idle_sessions(); }
  // Closes every session of this process on the token behind the pool's back (which also logs
  // the user out), as a token removal or module restart would. No session may be in use by
  // another thread at the time.
  static CK_RV CloseAllSessions(Token& t) { return Functions(t)->C_CloseAllSessions(Slot(t)); }
};

}  // namespace otd::hsm
