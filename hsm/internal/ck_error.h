#pragma once
// CK_RV -> Status. Every message names the PKCS#11 function and the CKR_ constant, e.g.
// "C_Login: CKR_PIN_INCORRECT"; an unknown value is shown as hex ("C_Sign: CKR 0x80000123").

#include <string>
#include <string_view>

#include "common/status.h"
#include "hsm/internal/pkcs11.h"

namespace otd::hsm::internal {

// "CKR_PIN_INCORRECT", or "CKR 0x%08lx" for values not in the table.
std::string CkrName(CK_RV rv);

// The mapping documented in hsm.h: token/session loss -> kUnavailable, authentication failures of
// data (ciphertext, wrapped key, signature) -> kDataLoss, PIN problems -> kPermissionDenied,
// everything else -> kInternal. CKR_OK -> kOk.
Code CkrCode(CK_RV rv);

// Status{CkrCode(rv), "<function>: <CkrName(rv)>"}. rv must not be CKR_OK.
Status CkrStatus(std::string_view function, CK_RV rv);

// True for the kUnavailable family: the session must be dropped and the token re-opened
// (slot lookup, session, login) before it is used again.
bool IsTokenLost(CK_RV rv);

// True when the session handle is known to be gone already (closing it again is pointless and,
// with a module that reuses handle numbers, could close somebody else's session).
bool IsSessionHandleDead(CK_RV rv);

}  // namespace otd::hsm::internal
