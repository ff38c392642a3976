#pragma once
// hsm: the only module that talks PKCS#11. Loads any module by path (dlopen), initialises it with
// OS locking, finds the token by label, logs in as the user, and hands out pooled sessions.
//
// Keys never leave the token in clear:
//  * persistent keys (KEK, index key) are created with CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE,
//    !CKA_EXTRACTABLE, !CKA_MODIFIABLE and only the usage flags they need; after creation the
//    attributes CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE are read back and a key where
//    either is false is destroyed and reported as an error;
//  * per-account keys are generated (or imported) as temporary session objects that are
//    sensitive and extractable only so that the KEK can wrap them (CKM_AES_KEY_WRAP_PAD); the
//    temporary object is destroyed right after wrapping. Unwrapped copies are session objects,
//    sensitive and non-extractable, destroyed when their SessionKey owner dies.
//
// Errors: every CK_RV other than CKR_OK becomes a Status whose message names the function and
// the CKR_ constant. Mapping: CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
// CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_ERROR, CKR_USER_NOT_LOGGED_IN ->
// kUnavailable (the session is dropped and the next Acquire() re-opens the token: slot lookup,
// session, login); CKR_ENCRYPTED_DATA_INVALID / _LEN_RANGE, CKR_WRAPPED_KEY_INVALID / _LEN_RANGE,
// CKR_SIGNATURE_INVALID
// -> kDataLoss; CKR_PIN_INCORRECT / CKR_PIN_LEN_RANGE / CKR_PIN_EXPIRED / CKR_PIN_LOCKED ->
// kPermissionDenied; a missing key label -> kNotFound; others -> kInternal.
// SoftHSM 2.6 reports a GCM tag mismatch (C_Decrypt) and an RFC 5649 integrity failure
// (C_UnwrapKey) as CKR_GENERAL_ERROR, so those two calls map CKR_GENERAL_ERROR /
// CKR_FUNCTION_FAILED to kDataLoss as well.
// Other codes: kResourceExhausted when all max_sessions are leased for acquire_timeout_ms;
// kFailedPrecondition from Token::Open when the module is already initialised in this process
// (CKR_CRYPTOKI_ALREADY_INITIALIZED) or the token lacks one of the mechanisms used here;
// kInvalidArgument for bad sizes (IV, imported key) and a key type/usage mismatch.
//
// Module notes: SoftHSM 2.6 refuses CKM_SHA256_HMAC with keys shorter than 32 bytes
// (CKR_KEY_SIZE_RANGE -> kInternal), although ImportWrapped accepts 16..128 bytes.
//
// Thread safety: Token is thread safe. A Session (lease) is used by one thread at a time.
// Lifetimes: SessionKey < Session < Token (each must be destroyed before the next). C_Initialize
// is process global: only one Token per PKCS#11 module may be open at a time (a second Open()
// fails with kFailedPrecondition; a new Token can be opened after the first is destroyed).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd {
class Logger;
namespace metrics {
class Registry;
}
}  // namespace otd

namespace otd::hsm {

struct TokenConfig {
  std::string module_path;  // e.g. /usr/lib/softhsm/libsofthsm2.so
  // Which token: the one whose label (CK_TOKEN_INFO.label, space-padded on the wire) and, when
  // set, serial number (CK_TOKEN_INFO.serialNumber) match. At least one must be set. Several
  // initialised tokens matching is an error (kUnavailable naming their slots and serials), never
  // a guess: keys created in the wrong one would make the vault unreadable. Once found, re-opens
  // (after a token loss) look for the same serial only.
  std::string token_label;
  std::string token_serial;
  SecretBytes pin;          // user PIN
  size_t max_sessions = 8;  // pool size; Acquire() waits when all are leased
  int acquire_timeout_ms = 5000;
  // UnwrapCached(): unwrapped keys kept per pooled session (LRU), and for how long. They stay
  // sensitive, non-extractable session objects in the token; eviction destroys them, closing a
  // session destroys its cache. Bounds the work per request (and, with SoftHSM 2.6.1, whose
  // C_DestroyObject does not free a session object's memory, the daemon's memory growth).
  size_t unwrap_cache_per_session = 64;
  int unwrap_cache_ttl_ms = 300'000;
  // After the token was lost (kUnavailable) and re-opening it fails, C_Finalize + C_Initialize the
  // module (at most once per this many ms, and only while no session is leased) and try again:
  // SoftHSM only sees a token whose files vanished and came back after a re-initialisation.
  // 0: never re-initialise (the daemon then needs a restart to see such a token again).
  int reinitialize_after_ms = 1000;
  // Optional (null: not measured): operation counts and latencies per operation
  // (opentokend_hsm_operations_total{op,result}, opentokend_hsm_operation_duration_seconds{op}),
  // unwrap cache hits/misses and session pool gauges. Must outlive the Token.
  metrics::Registry* metrics = nullptr;
};

enum class KeyType { kAes256, kHmacSha256 };
enum class KeyUsage {
  kWrap,     // CKA_WRAP + CKA_UNWRAP (the KEK)
  kEncrypt,  // CKA_ENCRYPT + CKA_DECRYPT (AES-GCM data keys)
  kSign,     // CKA_SIGN + CKA_VERIFY (HMAC keys)
};

// Attributes read back from a key object (for checks and tests).
struct KeyAttributes {
  bool token = false;
  bool is_private = false;
  bool sensitive = false;
  bool extractable = true;
  bool always_sensitive = false;
  bool never_extractable = false;
  bool modifiable = true;
  // Result of C_GetAttributeValue(CKA_VALUE): true only if the token returned the key bytes
  // (which must never happen for our keys).
  bool value_readable = true;
};

// A reference to a key to use: a persistent key by label, or a session object (SessionKey).
class KeyRef {
 public:
  static KeyRef Persistent(std::string label) { return KeyRef(std::move(label), 0); }
  const std::string& label() const { return label_; }
  uint64_t session_object() const { return object_; }
  bool is_persistent() const { return object_ == 0; }

 private:
  friend class Session;
  friend class SessionKey;
  KeyRef(std::string label, uint64_t object) : label_(std::move(label)), object_(object) {}
  std::string label_;
  uint64_t object_ = 0;
};

class Session;
class TokenImpl;

// RAII owner of an unwrapped session key object; destroys it (C_DestroyObject) on destruction.
// Valid only with the Session that created it, and must not outlive it (the Session returns its
// PKCS#11 session to the pool when it dies; a SessionKey still alive then is reported in the log
// and the session is closed instead of pooled). It does not point at the Session object, so
// moving the Session while keys exist is fine.
class SessionKey {
 public:
  SessionKey(SessionKey&& o) noexcept;
  SessionKey& operator=(SessionKey&& o) noexcept;
  SessionKey(const SessionKey&) = delete;
  SessionKey& operator=(const SessionKey&) = delete;
  ~SessionKey();
  KeyRef ref() const { return KeyRef("", object_); }

 private:
  friend class Session;
  SessionKey(TokenImpl* token, uint64_t session, uint64_t generation, uint64_t object)
      : token_(token), session_(session), generation_(generation), object_(object) {}
  void Reset() noexcept;
  // Gives the object up without destroying it (the session's unwrap cache takes it over).
  void Release() noexcept;
  TokenImpl* token_ = nullptr;  // not owned; the Token outlives every Session and SessionKey
  uint64_t session_ = 0;        // CK_SESSION_HANDLE the object lives in
  uint64_t generation_ = 0;     // token generation of that session
  uint64_t object_ = 0;         // CK_OBJECT_HANDLE
};

// A leased PKCS#11 session. Returned to the pool when destroyed, unless an error marked it broken.
class Session {
 public:
  Session(Session&& o) noexcept;
  Session& operator=(Session&&) = delete;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  // --- persistent keys (found by CKA_LABEL among CKO_SECRET_KEY objects) ---
  Result<bool> HasKey(std::string_view label);
  // Labels of the persistent secret keys whose label starts with `prefix`, sorted.
  Result<std::vector<std::string>> KeyLabels(std::string_view prefix);
  // Creates a persistent key; kAlreadyExists if the label is taken. Verifies CKA_ALWAYS_SENSITIVE
  // and CKA_NEVER_EXTRACTABLE after creation (destroys the key and returns kInternal otherwise).
  Status GenerateKey(std::string_view label, KeyType type, KeyUsage usage);
  Result<KeyAttributes> ReadAttributes(const KeyRef& key);

  // --- AES-256-GCM (CKM_AES_GCM, 96-bit IV, 128-bit tag) ---
  // Returns ciphertext || tag.
  Result<Bytes> EncryptGcm(const KeyRef& key, ByteView iv, ByteView aad, ByteView plaintext);
  // Fails with kDataLoss when the tag does not verify; no partial plaintext is returned.
  Result<SecretBytes> DecryptGcm(const KeyRef& key, ByteView iv, ByteView aad,
                                 ByteView ciphertext_and_tag);

  // --- HMAC-SHA256 (CKM_SHA256_HMAC) ---
  Result<Bytes> Sign(const KeyRef& key, ByteView data);  // 32 bytes
  // True/false for match/mismatch (CKR_SIGNATURE_INVALID and _LEN_RANGE are "false").
  Result<bool> Verify(const KeyRef& key, ByteView data, ByteView mac);

  // --- key wrapping (CKM_AES_KEY_WRAP_PAD, RFC 5649) ---
  // Generates a fresh key of `type` inside the token and returns it wrapped by `kek`.
  Result<Bytes> GenerateWrapped(const KeyRef& kek, KeyType type);
  // Imports `value` as a key of `type` (CKK_AES for kAes256 needs 32 bytes; CKK_GENERIC_SECRET for
  // kHmacSha256 takes 16..128 bytes) and returns it wrapped by `kek`.
  Result<Bytes> ImportWrapped(const KeyRef& kek, KeyType type, const SecretBytes& value);
  // Unwraps into a sensitive, non-extractable session object usable for `usage`.
  Result<SessionKey> Unwrap(const KeyRef& kek, ByteView wrapped, KeyType type, KeyUsage usage);
  // Moves a wrapped key from one KEK to another inside the token (unwrap under `from_kek` into a
  // sensitive session object, wrap under `to_kek`, destroy): the key never leaves the token in
  // clear. kDataLoss when `wrapped` does not authenticate under `from_kek`.
  Result<Bytes> Rewrap(const KeyRef& from_kek, const KeyRef& to_kek, ByteView wrapped,
                       KeyType type);
  // The same, through this pooled session's cache of unwrapped keys (see TokenConfig): a hit
  // costs no PKCS#11 call. The returned reference is valid only while this lease is held.
  Result<KeyRef> UnwrapCached(const KeyRef& kek, ByteView wrapped, KeyType type, KeyUsage usage);

  // --- random (C_GenerateRandom) ---
  Status Random(std::span<uint8_t> out);

 private:
  friend class TokenImpl;
  friend class SessionKey;
  friend class TokenTestPeer;  // hsm/internal/token_test_peer.h (tests only)
  Session(TokenImpl* token, uint64_t handle, uint64_t generation)
      : token_(token), handle_(handle), generation_(generation) {}
  // kUnavailable once the session was dropped (token error) or the token was re-opened since it
  // was leased; kFailedPrecondition for a moved-from Session.
  Status Usable();
  // Turns a failed CK_RV into a Status; token-loss errors mark the session broken and make the
  // token re-open on the next Acquire(). A stale cached handle of a persistent `key` is evicted.
  Status Fail(const char* function, unsigned long rv, const KeyRef* key = nullptr);
  // Object handle for a key reference (persistent keys: cached label lookup).
  Result<uint64_t> Resolve(const KeyRef& key);
  // Uncached C_FindObjects by label; kNotFound when absent.
  Result<uint64_t> FindPersistent(std::string_view label);
  // C_WrapKey(CKM_AES_KEY_WRAP_PAD) of `object` under `kek`.
  Result<Bytes> WrapWith(const KeyRef& kek, uint64_t kek_object, uint64_t object);
  // C_UnwrapKey under `kek`: a sensitive session object usable for `usage`, or (no usage) one that
  // can only be wrapped again. The caller owns the handle.
  Result<uint64_t> UnwrapObject(const KeyRef& kek, ByteView wrapped, KeyType type,
                                std::optional<KeyUsage> usage);
  Result<KeyAttributes> ReadAttributesOf(uint64_t object, const KeyRef* key);

  TokenImpl* token_ = nullptr;  // not owned; the Token outlives every Session
  uint64_t handle_ = 0;         // CK_SESSION_HANDLE
  uint64_t generation_ = 0;     // token generation when leased
  bool broken_ = false;         // do not return to the pool
  bool handle_dead_ = false;    // the module already forgot the handle: do not C_CloseSession it
};

// The token in use, as CK_TOKEN_INFO names it (padding removed), for messages and the store's
// record of the token it belongs to.
struct TokenIdentity {
  std::string module;  // TokenConfig::module_path
  std::string label;
  std::string serial;
  uint64_t slot = 0;
  // label="..." serial="..." module=PATH slot=N
  std::string ToString() const;
};

struct TokenHealth {
  bool ok = false;
  std::string detail;  // safe to show operators
};

class Token {
 public:
  // dlopen(module_path), C_GetFunctionList, C_Initialize(CKF_OS_LOCKING_OK), find the slot whose
  // token label (and serial, when configured) matches, open a session and C_Login(CKU_USER).
  // kUnavailable when the module or token is missing or several tokens match (the message names
  // their slots and serials), kPermissionDenied for a wrong PIN.
  static Result<std::unique_ptr<Token>> Open(TokenConfig config, Logger* log);
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  // Leases a session (opening one if the pool is not full). If the token was lost, re-opens it
  // (slot lookup, session, login) first. kUnavailable when the token is not usable,
  // kResourceExhausted when all max_sessions stay leased for acquire_timeout_ms.
  Result<Session> Acquire();
  // Cheap liveness check (C_GetSessionInfo on a pooled session, re-opening if needed). Waits at
  // most 200 ms for a session; all sessions busy counts as healthy.
  TokenHealth Health();
  // Module and token description for `opentoken-admin status` (manufacturer, model, label, serial),
  // one line: module=PATH library="..." manufacturer="..." model="..." label="..." serial="..."
  // slot=N
  std::string Describe() const;
  // Module, label, serial and slot of the token in use.
  TokenIdentity Identity() const;

 private:
  friend class TokenTestPeer;  // hsm/internal/token_test_peer.h (tests only)
  explicit Token(std::unique_ptr<TokenImpl> impl);
  std::unique_ptr<TokenImpl> impl_;
};

}  // namespace otd::hsm
