#pragma once
// Pkcs11Module: the single owner of a PKCS#11 library's process-global state.
// Load() = dlopen(path, RTLD_NOW | RTLD_LOCAL) + C_GetFunctionList + C_Initialize with
// CKF_OS_LOCKING_OK; the destructor = C_Finalize + dlclose. C_Initialize is process global, so
// at most one Pkcs11Module per library may be alive at a time: a second Load() of an initialised
// library fails (kFailedPrecondition, CKR_CRYPTOKI_ALREADY_INITIALIZED) instead of sharing it.

#include <memory>
#include <string>
#include <utility>

#include "common/status.h"
#include "hsm/internal/pkcs11.h"

namespace otd::hsm::internal {

class Pkcs11Module {
 public:
  // kUnavailable when the library cannot be loaded or has no C_GetFunctionList, kFailedPrecondition
  // when it is already initialised in this process, kInternal for other C_Initialize failures.
  static Result<std::unique_ptr<Pkcs11Module>> Load(const std::string& path);
  ~Pkcs11Module();
  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;

  // C_Finalize (if initialised) then C_Initialize again: the module forgets every session, login
  // and object handle and re-reads its tokens (SoftHSM re-scans its token directory; a token
  // whose files vanished stays invalid in-process until then). The caller must guarantee that no
  // other thread is inside the module and that no session of the old incarnation is used again.
  // After a failure the module stays uninitialised (every call answers
  // CKR_CRYPTOKI_NOT_INITIALIZED) until a later Reinitialize() succeeds.
  Status Reinitialize();

  CK_FUNCTION_LIST* fn() const { return fn_; }
  const std::string& path() const { return path_; }
  // From C_GetInfo: "<manufacturer> <description> <version>" (may be empty).
  const std::string& library_info() const { return library_info_; }

 private:
  struct DlClose {
    void operator()(void* handle) const noexcept;
  };
  using DlHandle = std::unique_ptr<void, DlClose>;

  // C_Initialize with CKF_OS_LOCKING_OK.
  CK_RV Initialize();

  Pkcs11Module(std::string path, DlHandle lib, CK_FUNCTION_LIST* fn)
      : path_(std::move(path)), lib_(std::move(lib)), fn_(fn) {}

  std::string path_;
  DlHandle lib_;  // destroyed last: dlclose after C_Finalize
  CK_FUNCTION_LIST* fn_ = nullptr;
  bool initialized_ = false;  // we called C_Initialize successfully: C_Finalize in ~
  std::string library_info_;
};

// CK_UTF8CHAR fields of CK_TOKEN_INFO / CK_INFO are fixed-size and blank padded (some modules
// pad with NULs): the text without the padding.
std::string PaddedField(const CK_UTF8CHAR* field, size_t size);

}  // namespace otd::hsm::internal
