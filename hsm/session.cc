// Session and SessionKey: the PKCS#11 operations on a leased session.

#include <openssl/crypto.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "hsm/hsm.h"
#include "hsm/internal/ck_error.h"
#include "hsm/internal/token_impl.h"

namespace otd::hsm {

static_assert(sizeof(CK_ULONG) <= sizeof(uint64_t), "PKCS#11 handles must fit in uint64_t");
static_assert(sizeof(CK_RV) == sizeof(unsigned long), "CK_RV is unsigned long");

namespace {

constexpr size_t kGcmIvSize = 12;
constexpr size_t kGcmTagSize = 16;
constexpr size_t kHmacSize = 32;
constexpr CK_ULONG kKeySize = 32;  // AES-256 and generated HMAC-SHA256 keys
constexpr size_t kHmacImportMin = 16;
constexpr size_t kHmacImportMax = 128;

// Some modules reject a NULL data pointer even with length 0.
uint8_t kEmpty[1] = {0};

CK_BYTE_PTR In(ByteView b) { return b.empty() ? kEmpty : const_cast<CK_BYTE_PTR>(b.data()); }

// An attribute template whose values live in the object itself: not copyable or movable,
// because the CK_ATTRIBUTEs point into it.
class Template {
 public:
  Template() = default;
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  void Bool(CK_ATTRIBUTE_TYPE type, bool v) { Add(type, v ? &true_ : &false_, sizeof(CK_BBOOL)); }
  void Class(CK_OBJECT_CLASS c) {
    class_ = c;
    Add(CKA_CLASS, &class_, sizeof class_);
  }
  void KeyType(CK_KEY_TYPE k) {
    key_type_ = k;
    Add(CKA_KEY_TYPE, &key_type_, sizeof key_type_);
  }
  void ValueLen(CK_ULONG n) {
    value_len_ = n;
    Add(CKA_VALUE_LEN, &value_len_, sizeof value_len_);
  }
  // `bytes` must outlive the template.
  void Bytes(CK_ATTRIBUTE_TYPE type, std::span<const uint8_t> bytes) {
    Add(type, const_cast<uint8_t*>(bytes.data()), bytes.size());
  }
  // Usage flags: exactly the ones for `usage` are TRUE, all others explicitly FALSE.
  void Usage(std::optional<KeyUsage> usage) {
    const bool wrap = usage == KeyUsage::kWrap;
    const bool encrypt = usage == KeyUsage::kEncrypt;
    const bool sign = usage == KeyUsage::kSign;
    Bool(CKA_ENCRYPT, encrypt);
    Bool(CKA_DECRYPT, encrypt);
    Bool(CKA_WRAP, wrap);
    Bool(CKA_UNWRAP, wrap);
    Bool(CKA_SIGN, sign);
    Bool(CKA_VERIFY, sign);
    Bool(CKA_DERIVE, false);
  }

  CK_ATTRIBUTE* data() { return attrs_.data(); }
  CK_ULONG size() const { return attrs_.size(); }

 private:
  void Add(CK_ATTRIBUTE_TYPE type, void* p, CK_ULONG len) { attrs_.push_back({type, p, len}); }
  CK_BBOOL true_ = CK_TRUE;
  CK_BBOOL false_ = CK_FALSE;
  CK_OBJECT_CLASS class_ = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type_ = CKK_AES;
  CK_ULONG value_len_ = 0;
  std::vector<CK_ATTRIBUTE> attrs_;
};

CK_KEY_TYPE CkKeyType(KeyType t) { return t == KeyType::kAes256 ? CKK_AES : CKK_GENERIC_SECRET; }

CK_MECHANISM_TYPE KeyGenMechanism(KeyType t) {
  return t == KeyType::kAes256 ? CKM_AES_KEY_GEN : CKM_GENERIC_SECRET_KEY_GEN;
}

Status CheckTypeAndUsage(KeyType type, KeyUsage usage) {
  const bool ok = type == KeyType::kAes256
                      ? (usage == KeyUsage::kWrap || usage == KeyUsage::kEncrypt)
                      : usage == KeyUsage::kSign;
  if (!ok) {
    return InvalidArgument(type == KeyType::kAes256
                               ? "an AES-256 key is for wrapping or encryption, not signing"
                               : "an HMAC-SHA256 key is for signing only");
  }
  return Status::Ok();
}

bool IsHandleInvalid(CK_RV rv) {
  return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID ||
         rv == CKR_WRAPPING_KEY_HANDLE_INVALID || rv == CKR_UNWRAPPING_KEY_HANDLE_INVALID;
}

// Destroys a (temporary) object when it goes out of scope unless released.
class ScopedObject {
 public:
  ScopedObject(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object)
      : fn_(fn), session_(session), object_(object) {}
  ScopedObject(const ScopedObject&) = delete;
  ScopedObject& operator=(const ScopedObject&) = delete;
  ~ScopedObject() {
    if (object_ != CK_INVALID_HANDLE) {
      fn_->C_DestroyObject(session_, object_);
    }
  }
  CK_OBJECT_HANDLE get() const { return object_; }
  CK_OBJECT_HANDLE release() { return std::exchange(object_, CK_INVALID_HANDLE); }
  // Destroys now; returns the CK_RV.
  CK_RV Destroy() {
    return fn_->C_DestroyObject(session_, std::exchange(object_, CK_INVALID_HANDLE));
  }

 private:
  CK_FUNCTION_LIST* fn_;
  CK_SESSION_HANDLE session_;
  CK_OBJECT_HANDLE object_;
};

// C_FindObjectsFinal on scope exit.
class FindGuard {
 public:
  FindGuard(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session) : fn_(fn), session_(session) {}
  FindGuard(const FindGuard&) = delete;
  FindGuard& operator=(const FindGuard&) = delete;
  ~FindGuard() { fn_->C_FindObjectsFinal(session_); }

 private:
  CK_FUNCTION_LIST* fn_;
  CK_SESSION_HANDLE session_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// SessionKey

SessionKey::SessionKey(SessionKey&& o) noexcept
    : token_(std::exchange(o.token_, nullptr)),
      session_(std::exchange(o.session_, 0)),
      generation_(std::exchange(o.generation_, 0)),
      object_(std::exchange(o.object_, 0)) {}

SessionKey& SessionKey::operator=(SessionKey&& o) noexcept {
  if (this != &o) {
    Reset();
    token_ = std::exchange(o.token_, nullptr);
    session_ = std::exchange(o.session_, 0);
    generation_ = std::exchange(o.generation_, 0);
    object_ = std::exchange(o.object_, 0);
  }
  return *this;
}

SessionKey::~SessionKey() { Reset(); }

void SessionKey::Reset() noexcept {
  if (token_ != nullptr && object_ != 0) {
    token_->DestroySessionKey(session_, generation_, object_);
  }
  token_ = nullptr;
  object_ = 0;
}

void SessionKey::Release() noexcept {
  if (token_ != nullptr && object_ != 0) {
    token_->ForgetSessionKey(session_);
  }
  token_ = nullptr;
  object_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Session

Session::Session(Session&& o) noexcept
    : token_(std::exchange(o.token_, nullptr)),
      handle_(std::exchange(o.handle_, 0)),
      generation_(o.generation_),
      broken_(o.broken_),
      handle_dead_(o.handle_dead_) {}

Session::~Session() {
  if (token_ != nullptr) {
    token_->Release(handle_, generation_, broken_, handle_dead_);
  }
}

Status Session::Usable() {
  if (token_ == nullptr) {
    return FailedPrecondition("PKCS#11 session was moved from");
  }
  if (broken_) {
    return Unavailable("PKCS#11 session was dropped after a token error; acquire a new one");
  }
  if (generation_ != token_->generation()) {
    broken_ = true;
    return Unavailable(
        "PKCS#11 token was re-opened since this session was leased; acquire a new one");
  }
  return Status::Ok();
}

Status Session::Fail(const char* function, unsigned long rv, const KeyRef* key) {
  Status s = internal::CkrStatus(function, rv);
  if (internal::IsTokenLost(rv)) {
    broken_ = true;
    handle_dead_ = handle_dead_ || internal::IsSessionHandleDead(rv);
    token_->Invalidate(generation_, rv);
  } else if (key != nullptr && key->is_persistent() && IsHandleInvalid(rv)) {
    // Our persistent keys are not deleted while we run: the token's storage changed under us
    // (the next lookup tells whether the key is still there). Retryable, not an internal error.
    token_->EvictKey(key->label());
    return Unavailable(s.message() + " (persistent key '" + key->label() +
                       "' is no longer valid on the token)");
  }
  return s;
}

Result<uint64_t> Session::FindPersistent(std::string_view label) {
  CK_FUNCTION_LIST* f = token_->fn();
  Template t;
  t.Class(CKO_SECRET_KEY);
  t.Bool(CKA_TOKEN, true);
  t.Bytes(CKA_LABEL, AsBytes(label));
  CK_RV rv = f->C_FindObjectsInit(handle_, t.data(), t.size());
  if (rv != CKR_OK) {
    return Fail("C_FindObjectsInit", rv);
  }
  CK_OBJECT_HANDLE found[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
  CK_ULONG n = 0;
  {
    FindGuard guard(f, handle_);
    rv = f->C_FindObjects(handle_, found, 2, &n);
  }
  if (rv != CKR_OK) {
    return Fail("C_FindObjects", rv);
  }
  if (n == 0) {
    if (token_->KeySeen(label)) {
      broken_ = true;
      token_->KeyVanished(generation_, label);
      return Unavailable("persistent key '" + std::string(label) +
                         "' vanished from the token; re-opening it");
    }
    return NotFound("no secret key labelled '" + std::string(label) + "' on the token");
  }
  if (n > 1) {
    return Internal("more than one secret key labelled '" + std::string(label) + "' on the token");
  }
  return static_cast<uint64_t>(found[0]);
}

Result<uint64_t> Session::Resolve(const KeyRef& key) {
  if (!key.is_persistent()) {
    return key.session_object();
  }
  if (key.label().empty()) {
    return InvalidArgument("empty key label");
  }
  if (auto h = token_->CachedKey(key.label(), generation_)) {
    return static_cast<uint64_t>(*h);
  }
  OTD_ASSIGN_OR_RETURN(uint64_t h, FindPersistent(key.label()));
  token_->CacheKey(key.label(), h, generation_);
  return h;
}

Result<bool> Session::HasKey(std::string_view label) {
  return Measured(token_, HsmOp::kFindKey, [&]() -> Result<bool> {
    OTD_RETURN_IF_ERROR(Usable());
    if (label.empty()) {
      return InvalidArgument("empty key label");
    }
    Result<uint64_t> h = FindPersistent(label);
    if (h.ok()) {
      token_->CacheKey(label, *h, generation_);
      return true;
    }
    if (h.status().code() == Code::kNotFound) {
      return false;
    }
    return h.status();
  });
}

Result<std::vector<std::string>> Session::KeyLabels(std::string_view prefix) {
  return Measured(token_, HsmOp::kFindKey, [&]() -> Result<std::vector<std::string>> {
    OTD_RETURN_IF_ERROR(Usable());
    CK_FUNCTION_LIST* f = token_->fn();
    Template t;
    t.Class(CKO_SECRET_KEY);
    t.Bool(CKA_TOKEN, true);
    CK_RV rv = f->C_FindObjectsInit(handle_, t.data(), t.size());
    if (rv != CKR_OK) {
      return Fail("C_FindObjectsInit", rv);
    }
    std::vector<CK_OBJECT_HANDLE> objects;
    {
      FindGuard guard(f, handle_);
      for (;;) {
        CK_OBJECT_HANDLE batch[64];
        CK_ULONG n = 0;
        rv = f->C_FindObjects(handle_, batch, 64, &n);
        if (rv != CKR_OK) {
          return Fail("C_FindObjects", rv);
        }
        objects.insert(objects.end(), batch, batch + n);
        if (n == 0) {
          break;
        }
      }
    }
    std::vector<std::string> out;
    for (CK_OBJECT_HANDLE o : objects) {
      CK_ATTRIBUTE a{CKA_LABEL, nullptr, 0};
      rv = f->C_GetAttributeValue(handle_, o, &a, 1);
      if (rv == CKR_OBJECT_HANDLE_INVALID) {
        continue;  // deleted in between
      }
      if (rv != CKR_OK) {
        return Fail("C_GetAttributeValue", rv);
      }
      if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        continue;
      }
      std::string label(a.ulValueLen, '\0');
      a.pValue = label.data();
      rv = f->C_GetAttributeValue(handle_, o, &a, 1);
      if (rv != CKR_OK) {
        continue;  // deleted or changed in between
      }
      label.resize(a.ulValueLen);
      if (label.starts_with(prefix)) {
        out.push_back(std::move(label));
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  });
}

Status Session::GenerateKey(std::string_view label, KeyType type, KeyUsage usage) {
  return Measured(token_, HsmOp::kGenerateKey, [&]() -> Status {
    OTD_RETURN_IF_ERROR(Usable());
    OTD_RETURN_IF_ERROR(CheckTypeAndUsage(type, usage));
    if (label.empty()) {
      return InvalidArgument("empty key label");
    }
    std::lock_guard<std::mutex> lk(token_->generate_mutex());
    Result<uint64_t> existing = FindPersistent(label);
    if (existing.ok()) {
      return AlreadyExists("a secret key labelled '" + std::string(label) + "' already exists");
    }
    if (existing.status().code() != Code::kNotFound) {
      return existing.status();
    }

    CK_FUNCTION_LIST* f = token_->fn();
    Template t;
    t.Class(CKO_SECRET_KEY);
    t.KeyType(CkKeyType(type));
    t.ValueLen(kKeySize);
    t.Bool(CKA_TOKEN, true);
    t.Bool(CKA_PRIVATE, true);
    t.Bool(CKA_SENSITIVE, true);
    t.Bool(CKA_EXTRACTABLE, false);
    t.Bool(CKA_MODIFIABLE, false);
    t.Bytes(CKA_LABEL, AsBytes(label));
    t.Bytes(CKA_ID, AsBytes(label));
    t.Usage(usage);
    CK_MECHANISM mech{KeyGenMechanism(type), nullptr, 0};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = f->C_GenerateKey(handle_, &mech, t.data(), t.size(), &h);
    if (rv != CKR_OK) {
      return Fail("C_GenerateKey", rv);
    }
    ScopedObject key(f, handle_, h);

    Result<KeyAttributes> attrs = ReadAttributesOf(h, nullptr);
    if (!attrs.ok()) {
      return attrs.status();  // key destroyed by the guard
    }
    if (!attrs->always_sensitive || !attrs->never_extractable || !attrs->sensitive ||
        attrs->extractable || attrs->value_readable) {
      CK_RV drv = key.Destroy();
      return Internal("token created key '" + std::string(label) +
                      "' without CKA_ALWAYS_SENSITIVE/CKA_NEVER_EXTRACTABLE; destroyed it" +
                      (drv == CKR_OK ? "" : " (C_DestroyObject: " + internal::CkrName(drv) + ")"));
    }
    key.release();
    token_->CacheKey(label, h, generation_);
    if (Logger* log = token_->log()) {
      log->Info("hsm_key_generated",
                {{"label", label}, {"type", type == KeyType::kAes256 ? "aes-256" : "hmac-sha256"}});
    }
    return Status::Ok();
  });
}

Result<KeyAttributes> Session::ReadAttributesOf(uint64_t object, const KeyRef* key) {
  CK_FUNCTION_LIST* f = token_->fn();
  CK_BBOOL token = CK_FALSE, priv = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE,
           always_sensitive = CK_FALSE, never_extractable = CK_FALSE, modifiable = CK_TRUE;
  CK_ATTRIBUTE a[] = {
      {CKA_TOKEN, &token, sizeof token},
      {CKA_PRIVATE, &priv, sizeof priv},
      {CKA_SENSITIVE, &sensitive, sizeof sensitive},
      {CKA_EXTRACTABLE, &extractable, sizeof extractable},
      {CKA_ALWAYS_SENSITIVE, &always_sensitive, sizeof always_sensitive},
      {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof never_extractable},
      {CKA_MODIFIABLE, &modifiable, sizeof modifiable},
  };
  CK_RV rv = f->C_GetAttributeValue(handle_, object, a, sizeof a / sizeof a[0]);
  if (rv != CKR_OK) {
    return Fail("C_GetAttributeValue", rv, key);
  }
  KeyAttributes out;
  out.token = token == CK_TRUE;
  out.is_private = priv == CK_TRUE;
  out.sensitive = sensitive == CK_TRUE;
  out.extractable = extractable == CK_TRUE;
  out.always_sensitive = always_sensitive == CK_TRUE;
  out.never_extractable = never_extractable == CK_TRUE;
  out.modifiable = modifiable == CK_TRUE;

  // Length query only: the key bytes are never copied out, even if the token would give them.
  CK_ATTRIBUTE v{CKA_VALUE, nullptr, 0};
  rv = f->C_GetAttributeValue(handle_, object, &v, 1);
  if (rv == CKR_ATTRIBUTE_SENSITIVE) {
    out.value_readable = false;
  } else if (rv == CKR_OK) {
    out.value_readable = v.ulValueLen != CK_UNAVAILABLE_INFORMATION;
  } else {
    return Fail("C_GetAttributeValue(CKA_VALUE)", rv, key);
  }
  return out;
}

Result<KeyAttributes> Session::ReadAttributes(const KeyRef& key) {
  return Measured(token_, HsmOp::kReadAttributes, [&]() -> Result<KeyAttributes> {
    OTD_RETURN_IF_ERROR(Usable());
    OTD_ASSIGN_OR_RETURN(uint64_t h, Resolve(key));
    return ReadAttributesOf(h, &key);
  });
}

// PKCS#11 v2.40 CK_GCM_PARAMS (the layout SoftHSM 2.6 expects): 96-bit IV, 128-bit tag.
static CK_GCM_PARAMS GcmParams(ByteView iv, ByteView aad) {
  CK_GCM_PARAMS params{};
  params.pIv = const_cast<CK_BYTE_PTR>(iv.data());
  params.ulIvLen = iv.size();
  params.ulIvBits = iv.size() * 8;
  params.pAAD = In(aad);
  params.ulAADLen = aad.size();
  params.ulTagBits = kGcmTagSize * 8;
  return params;
}

Result<Bytes> Session::EncryptGcm(const KeyRef& key, ByteView iv, ByteView aad,
                                  ByteView plaintext) {
  return Measured(token_, HsmOp::kEncrypt, [&]() -> Result<Bytes> {
    OTD_RETURN_IF_ERROR(Usable());
    if (iv.size() != kGcmIvSize) {
      return InvalidArgument("AES-GCM IV must be 12 bytes");
    }
    OTD_ASSIGN_OR_RETURN(uint64_t h, Resolve(key));
    CK_FUNCTION_LIST* f = token_->fn();
    CK_GCM_PARAMS params = GcmParams(iv, aad);
    CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
    CK_RV rv = f->C_EncryptInit(handle_, &mech, h);
    if (rv != CKR_OK) {
      return Fail("C_EncryptInit", rv, &key);
    }
    Bytes out(plaintext.size() + kGcmTagSize);
    CK_ULONG n = out.size();
    rv = f->C_Encrypt(handle_, In(plaintext), plaintext.size(), out.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) {  // the operation stays active; retry with the asked size
      out.resize(n);
      rv = f->C_Encrypt(handle_, In(plaintext), plaintext.size(), out.data(), &n);
    }
    if (rv != CKR_OK) {
      return Fail("C_Encrypt", rv, &key);
    }
    if (n != plaintext.size() + kGcmTagSize) {
      return Internal("C_Encrypt (AES-GCM) returned " + std::to_string(n) + " bytes for " +
                      std::to_string(plaintext.size()) + " bytes of plaintext");
    }
    out.resize(n);
    return out;
  });
}

Result<SecretBytes> Session::DecryptGcm(const KeyRef& key, ByteView iv, ByteView aad,
                                        ByteView ciphertext_and_tag) {
  return Measured(token_, HsmOp::kDecrypt, [&]() -> Result<SecretBytes> {
    OTD_RETURN_IF_ERROR(Usable());
    if (iv.size() != kGcmIvSize) {
      return InvalidArgument("AES-GCM IV must be 12 bytes");
    }
    if (ciphertext_and_tag.size() < kGcmTagSize) {
      return DataLoss("AES-GCM ciphertext is shorter than its tag");
    }
    OTD_ASSIGN_OR_RETURN(uint64_t h, Resolve(key));
    CK_FUNCTION_LIST* f = token_->fn();
    CK_GCM_PARAMS params = GcmParams(iv, aad);
    CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
    CK_RV rv = f->C_DecryptInit(handle_, &mech, h);
    if (rv != CKR_OK) {
      return Fail("C_DecryptInit", rv, &key);
    }
    CK_BYTE_PTR ct = const_cast<CK_BYTE_PTR>(ciphertext_and_tag.data());
    CK_ULONG n = 0;
    rv = f->C_Decrypt(handle_, ct, ciphertext_and_tag.size(), nullptr, &n);  // length query
    if (rv != CKR_OK) {
      return Fail("C_Decrypt", rv, &key);
    }
    // Decrypt straight into secret memory (never a plain buffer); at least one byte so that the
    // output pointer is not NULL (NULL would be another length query).
    SecretBytes out(std::max<CK_ULONG>(n, 1));
    auto buf = out.MutableReveal(SecretAccess::Grant());
    n = buf.size();
    rv = f->C_Decrypt(handle_, ct, ciphertext_and_tag.size(), buf.data(), &n);
    if (rv != CKR_OK || n > buf.size()) {
      OPENSSL_cleanse(buf.data(), buf.size());  // no partial plaintext survives
      if (rv == CKR_OK) {
        return Internal("C_Decrypt returned more bytes than it asked for");
      }
      if (rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED) {
        // SoftHSM 2.6 reports a GCM tag mismatch as CKR_GENERAL_ERROR.
        Status s = Fail("C_Decrypt", rv, &key);
        return DataLoss(s.message() + " (AES-GCM record does not authenticate)");
      }
      return Fail("C_Decrypt", rv, &key);
    }
    out.Truncate(n);
    return out;
  });
}

Result<Bytes> Session::Sign(const KeyRef& key, ByteView data) {
  return Measured(token_, HsmOp::kSign, [&]() -> Result<Bytes> {
    OTD_RETURN_IF_ERROR(Usable());
    OTD_ASSIGN_OR_RETURN(uint64_t h, Resolve(key));
    CK_FUNCTION_LIST* f = token_->fn();
    CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
    CK_RV rv = f->C_SignInit(handle_, &mech, h);
    if (rv != CKR_OK) {
      return Fail("C_SignInit", rv, &key);
    }
    Bytes mac(kHmacSize);
    CK_ULONG n = mac.size();
    rv = f->C_Sign(handle_, In(data), data.size(), mac.data(), &n);
    if (rv != CKR_OK) {
      return Fail("C_Sign", rv, &key);
    }
    if (n != kHmacSize) {
      return Internal("C_Sign (HMAC-SHA256) returned " + std::to_string(n) + " bytes");
    }
    return mac;
  });
}

Result<bool> Session::Verify(const KeyRef& key, ByteView data, ByteView mac) {
  return Measured(token_, HsmOp::kVerify, [&]() -> Result<bool> {
    OTD_RETURN_IF_ERROR(Usable());
    OTD_ASSIGN_OR_RETURN(uint64_t h, Resolve(key));
    if (mac.size() != kHmacSize) {
      return false;
    }
    CK_FUNCTION_LIST* f = token_->fn();
    CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
    CK_RV rv = f->C_VerifyInit(handle_, &mech, h);
    if (rv != CKR_OK) {
      return Fail("C_VerifyInit", rv, &key);
    }
    rv = f->C_Verify(handle_, In(data), data.size(), const_cast<CK_BYTE_PTR>(mac.data()),
                     mac.size());
    if (rv == CKR_OK) {
      return true;
    }
    if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE) {
      return false;
    }
    return Fail("C_Verify", rv, &key);
  });
}

Result<Bytes> Session::WrapWith(const KeyRef& kek, uint64_t kek_object, uint64_t object) {
  CK_FUNCTION_LIST* f = token_->fn();
  CK_MECHANISM mech{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  Bytes out(kHmacImportMax + 16);  // RFC 5649: key length rounded up to 8, plus 8
  CK_ULONG n = out.size();
  CK_RV rv = f->C_WrapKey(handle_, &mech, kek_object, object, out.data(), &n);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    out.resize(n);
    rv = f->C_WrapKey(handle_, &mech, kek_object, object, out.data(), &n);
  }
  if (rv != CKR_OK) {
    return Fail("C_WrapKey", rv, &kek);
  }
  out.resize(n);
  return out;
}

Result<Bytes> Session::GenerateWrapped(const KeyRef& kek, KeyType type) {
  return Measured(token_, HsmOp::kGenerateWrapped, [&]() -> Result<Bytes> {
    OTD_RETURN_IF_ERROR(Usable());
    OTD_ASSIGN_OR_RETURN(uint64_t kek_h, Resolve(kek));
    CK_FUNCTION_LIST* f = token_->fn();
    Template t;
    t.Class(CKO_SECRET_KEY);
    t.KeyType(CkKeyType(type));
    t.ValueLen(kKeySize);
    t.Bool(CKA_TOKEN, false);
    t.Bool(CKA_PRIVATE, true);
    t.Bool(CKA_SENSITIVE, true);
    t.Bool(CKA_EXTRACTABLE, true);  // only so that the KEK can wrap it; destroyed right after
    t.Usage(std::nullopt);
    CK_MECHANISM mech{KeyGenMechanism(type), nullptr, 0};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = f->C_GenerateKey(handle_, &mech, t.data(), t.size(), &h);
    if (rv != CKR_OK) {
      return Fail("C_GenerateKey", rv);
    }
    ScopedObject temp(f, handle_, h);
    return WrapWith(kek, kek_h, temp.get());
  });
}

Result<Bytes> Session::ImportWrapped(const KeyRef& kek, KeyType type, const SecretBytes& value) {
  return Measured(token_, HsmOp::kImportWrapped, [&]() -> Result<Bytes> {
    OTD_RETURN_IF_ERROR(Usable());
    if (type == KeyType::kAes256 && value.size() != kKeySize) {
      return InvalidArgument("an AES-256 key is 32 bytes");
    }
    if (type == KeyType::kHmacSha256 &&
        (value.size() < kHmacImportMin || value.size() > kHmacImportMax)) {
      return InvalidArgument("an HMAC-SHA256 key is 16..128 bytes");
    }
    OTD_ASSIGN_OR_RETURN(uint64_t kek_h, Resolve(kek));
    CK_FUNCTION_LIST* f = token_->fn();
    Template t;
    t.Class(CKO_SECRET_KEY);
    t.KeyType(CkKeyType(type));
    t.Bytes(CKA_VALUE, value.Reveal(SecretAccess::Grant()));
    t.Bool(CKA_TOKEN, false);
    t.Bool(CKA_PRIVATE, true);
    t.Bool(CKA_SENSITIVE, true);
    t.Bool(CKA_EXTRACTABLE, true);  // only so that the KEK can wrap it; destroyed right after
    t.Usage(std::nullopt);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = f->C_CreateObject(handle_, t.data(), t.size(), &h);
    if (rv != CKR_OK) {
      return Fail("C_CreateObject", rv);
    }
    ScopedObject temp(f, handle_, h);
    return WrapWith(kek, kek_h, temp.get());
  });
}

Result<uint64_t> Session::UnwrapObject(const KeyRef& kek, ByteView wrapped, KeyType type,
                                       std::optional<KeyUsage> usage) {
  if (wrapped.empty()) {
    return DataLoss("empty wrapped key");
  }
  OTD_ASSIGN_OR_RETURN(uint64_t kek_h, Resolve(kek));
  CK_FUNCTION_LIST* f = token_->fn();
  Template t;
  t.Class(CKO_SECRET_KEY);
  t.KeyType(CkKeyType(type));
  t.Bool(CKA_TOKEN, false);
  t.Bool(CKA_PRIVATE, true);
  t.Bool(CKA_SENSITIVE, true);
  // A key unwrapped for use is never extractable; one unwrapped only to be re-wrapped under
  // another KEK (no usage) must be, for C_WrapKey, and is destroyed right after.
  t.Bool(CKA_EXTRACTABLE, !usage.has_value());
  t.Usage(usage);
  CK_MECHANISM mech{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = f->C_UnwrapKey(handle_, &mech, kek_h, const_cast<CK_BYTE_PTR>(wrapped.data()),
                            wrapped.size(), t.data(), t.size(), &h);
  if (rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED) {
    // SoftHSM 2.6 reports an RFC 5649 integrity check failure (wrong KEK, corrupted blob) as
    // CKR_GENERAL_ERROR.
    Status s = Fail("C_UnwrapKey", rv, &kek);
    return DataLoss(s.message() + " (wrapped key does not authenticate under this KEK)");
  }
  if (rv != CKR_OK) {
    return Fail("C_UnwrapKey", rv, &kek);
  }
  return uint64_t{h};
}

Result<SessionKey> Session::Unwrap(const KeyRef& kek, ByteView wrapped, KeyType type,
                                   KeyUsage usage) {
  return Measured(token_, HsmOp::kUnwrap, [&]() -> Result<SessionKey> {
    OTD_RETURN_IF_ERROR(Usable());
    OTD_RETURN_IF_ERROR(CheckTypeAndUsage(type, usage));
    OTD_ASSIGN_OR_RETURN(uint64_t h, UnwrapObject(kek, wrapped, type, usage));
    token_->SessionKeyCreated(handle_);
    return SessionKey(token_, handle_, generation_, h);
  });
}

Result<Bytes> Session::Rewrap(const KeyRef& from_kek, const KeyRef& to_kek, ByteView wrapped,
                              KeyType type) {
  return Measured(token_, HsmOp::kRewrap, [&]() -> Result<Bytes> {
    OTD_RETURN_IF_ERROR(Usable());
    OTD_ASSIGN_OR_RETURN(uint64_t to_h, Resolve(to_kek));
    OTD_ASSIGN_OR_RETURN(uint64_t h, UnwrapObject(from_kek, wrapped, type, std::nullopt));
    ScopedObject temp(token_->fn(), handle_, h);
    return WrapWith(to_kek, to_h, temp.get());
  });
}

Result<KeyRef> Session::UnwrapCached(const KeyRef& kek, ByteView wrapped, KeyType type,
                                     KeyUsage usage) {
  OTD_RETURN_IF_ERROR(Usable());
  if (token_->unwrap_cache_size() == 0) {
    return FailedPrecondition("the unwrap cache is disabled (unwrap_cache_per_session = 0)");
  }
  std::string key = kek.label();
  key += '\0';
  key += static_cast<char>(type);
  key += static_cast<char>(usage);
  key.append(reinterpret_cast<const char*>(wrapped.data()), wrapped.size());
  std::optional<CK_OBJECT_HANDLE> stale;
  auto hit = token_->UnwrapCacheGet(handle_, key, &stale);
  if (stale) {
    token_->fn()->C_DestroyObject(handle_, *stale);
  }
  const TokenMetrics* m = token_->metrics();
  if (hit) {
    if (m != nullptr) {
      m->cache_hits->Inc();
    }
    return KeyRef("", *hit);
  }
  if (m != nullptr) {
    m->cache_misses->Inc();
  }
  OTD_ASSIGN_OR_RETURN(SessionKey fresh, Unwrap(kek, wrapped, type, usage));
  // The cache owns the object from here on (SessionKey released without destroying it).
  const CK_OBJECT_HANDLE object = fresh.object_;
  fresh.Release();
  for (CK_OBJECT_HANDLE old : token_->UnwrapCachePut(handle_, key, object)) {
    token_->fn()->C_DestroyObject(handle_, old);
  }
  return KeyRef("", object);
}

Status Session::Random(std::span<uint8_t> out) {
  return Measured(token_, HsmOp::kRandom, [&]() -> Status {
    OTD_RETURN_IF_ERROR(Usable());
    if (out.empty()) {
      return Status::Ok();
    }
    CK_RV rv = token_->fn()->C_GenerateRandom(handle_, out.data(), out.size());
    if (rv != CKR_OK) {
      return Fail("C_GenerateRandom", rv);
    }
    return Status::Ok();
  });
}

}  // namespace otd::hsm
