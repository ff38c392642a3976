#include "hsm/internal/module.h"

#include <dlfcn.h>

#include <utility>

#include "hsm/internal/ck_error.h"

namespace otd::hsm::internal {

void Pkcs11Module::DlClose::operator()(void* handle) const noexcept {
  if (handle != nullptr) {
    dlclose(handle);
  }
}

std::string PaddedField(const CK_UTF8CHAR* field, size_t size) {
  std::string s(reinterpret_cast<const char*>(field), size);
  size_t end = s.find_last_not_of(std::string_view(" \0", 2));
  return end == std::string::npos ? std::string() : s.substr(0, end + 1);
}

Result<std::unique_ptr<Pkcs11Module>> Pkcs11Module::Load(const std::string& path) {
  if (path.empty()) {
    return Unavailable("PKCS#11 module path is not set");
  }
  dlerror();  // clear
  DlHandle lib(dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!lib) {
    const char* err = dlerror();
    return Unavailable("cannot load PKCS#11 module " + path + ": " +
                       (err != nullptr ? err : "dlopen failed"));
  }
  void* sym = dlsym(lib.get(), "C_GetFunctionList");
  if (sym == nullptr) {
    return Unavailable("PKCS#11 module " + path + " has no C_GetFunctionList");
  }
  auto get_function_list = reinterpret_cast<CK_C_GetFunctionList>(sym);
  CK_FUNCTION_LIST* fn = nullptr;
  CK_RV rv = get_function_list(&fn);
  if (rv != CKR_OK || fn == nullptr) {
    return Unavailable("PKCS#11 module " + path + ": C_GetFunctionList: " + CkrName(rv));
  }
  std::unique_ptr<Pkcs11Module> m(new Pkcs11Module(path, std::move(lib), fn));

  rv = m->Initialize();
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    // Somebody else in this process owns the module (another Token on the same library, or a
    // library that uses it). Sharing would let their C_Finalize pull the rug from under us.
    return FailedPrecondition("PKCS#11 module " + path +
                              " is already initialised in this process "
                              "(C_Initialize: CKR_CRYPTOKI_ALREADY_INITIALIZED); only one Token "
                              "per module may be open at a time");
  }
  if (rv != CKR_OK) {
    return Status(CkrCode(rv) == Code::kUnavailable ? Code::kUnavailable : Code::kInternal,
                  "PKCS#11 module " + path + ": C_Initialize: " + CkrName(rv));
  }
  m->initialized_ = true;

  CK_INFO info{};
  if (fn->C_GetInfo(&info) == CKR_OK) {
    m->library_info_ = PaddedField(info.manufacturerID, sizeof info.manufacturerID) + " " +
                       PaddedField(info.libraryDescription, sizeof info.libraryDescription) + " " +
                       std::to_string(info.libraryVersion.major) + "." +
                       std::to_string(info.libraryVersion.minor);
  }
  return m;
}

CK_RV Pkcs11Module::Initialize() {
  CK_C_INITIALIZE_ARGS args{};
  args.CreateMutex = nullptr;
  args.DestroyMutex = nullptr;
  args.LockMutex = nullptr;
  args.UnlockMutex = nullptr;
  args.flags = CKF_OS_LOCKING_OK;
  args.pReserved = nullptr;
  return fn_->C_Initialize(&args);
}

Status Pkcs11Module::Reinitialize() {
  if (initialized_) {
    fn_->C_Finalize(nullptr);  // whatever it answers, the old incarnation is gone for us
    initialized_ = false;
  }
  CK_RV rv = Initialize();
  if (rv != CKR_OK) {
    return Unavailable("PKCS#11 module " + path_ + ": C_Initialize: " + CkrName(rv));
  }
  initialized_ = true;
  return Status::Ok();
}

Pkcs11Module::~Pkcs11Module() {
  if (initialized_ && fn_ != nullptr) {
    fn_->C_Finalize(nullptr);
  }
  // lib_ is released after this body: dlclose.
}

}  // namespace otd::hsm::internal
