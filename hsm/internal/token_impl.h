#pragma once
// TokenImpl: the PKCS#11 module, the token's slot and login, the session pool and the persistent
// key handle cache. Internal to hsm/ (Session, SessionKey, Token and tests use it).
//
// Generations: every time a session reports that the token or the login is gone (the
// kUnavailable family of CK_RVs), the generation is bumped. That drops the idle pooled sessions
// and the key handle cache; sessions of an older generation still leased are closed when they
// are returned, and the next Acquire() finds the slot again, opens a session and logs in.
// Closing the last open session (which ends the PKCS#11 login) also starts a new generation.

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"
#include "hsm/hsm.h"
#include "hsm/internal/module.h"
#include "hsm/internal/pkcs11.h"

namespace otd::hsm {

// Operations measured when TokenConfig::metrics is set (the `op` label).
enum class HsmOp : uint8_t {
  kLogin,            // C_Login when the token is (re)opened
  kOpenSession,      // C_OpenSession
  kFindKey,          // Session::HasKey
  kGenerateKey,      // Session::GenerateKey (persistent key)
  kReadAttributes,   // Session::ReadAttributes
  kEncrypt,          // Session::EncryptGcm
  kDecrypt,          // Session::DecryptGcm
  kSign,             // Session::Sign
  kVerify,           // Session::Verify (a mismatch is a successful operation)
  kGenerateWrapped,  // Session::GenerateWrapped
  kImportWrapped,    // Session::ImportWrapped
  kUnwrap,           // Session::Unwrap (also a miss of UnwrapCached)
  kRewrap,           // Session::Rewrap
  kRandom,           // Session::Random
  kCount,
};
const char* HsmOpName(HsmOp op);

// Metric handles, resolved once when the token is opened (nothing is looked up per operation).
struct TokenMetrics {
  static constexpr size_t kOps = static_cast<size_t>(HsmOp::kCount);
  std::array<metrics::Counter*, kOps> ok{};
  std::array<metrics::Counter*, kOps> error{};
  std::array<metrics::Histogram*, kOps> seconds{};
  metrics::Counter* cache_hits = nullptr;
  metrics::Counter* cache_misses = nullptr;
  metrics::CollectorHandle pool;  // session pool gauges, read at scrape time

  void Record(HsmOp op, bool success, std::chrono::steady_clock::duration d) const {
    const auto i = static_cast<size_t>(op);
    (success ? ok[i] : error[i])->Inc();
    seconds[i]->Observe(std::chrono::duration<double>(d).count());
  }
};

class TokenImpl {
 public:
  static Result<std::unique_ptr<TokenImpl>> Open(TokenConfig config, Logger* log);
  ~TokenImpl();
  TokenImpl(const TokenImpl&) = delete;
  TokenImpl& operator=(const TokenImpl&) = delete;

  Result<Session> Acquire();
  Result<Session> AcquireFor(std::chrono::milliseconds timeout);
  TokenHealth Health();
  std::string Describe() const;
  TokenIdentity Identity() const;

  // --- for Session / SessionKey ---
  CK_FUNCTION_LIST* fn() const { return module_->fn(); }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // A lease ends. Broken or stale sessions (or ones with SessionKeys still alive) are closed
  // (unless `handle_dead`), others go back to the pool.
  void Release(CK_SESSION_HANDLE h, uint64_t generation, bool broken, bool handle_dead) noexcept;
  // A session of `generation` saw `rv` (token/login lost): bump the generation once.
  void Invalidate(uint64_t generation, CK_RV rv) noexcept;
  // A persistent key this Token has found before is gone (C_FindObjects finds nothing). Our keys
  // are never deleted while the daemon runs, so the token's storage vanished (SoftHSM: its files;
  // the module keeps the token invalid until re-initialised): bump the generation and re-initialise
  // the module before the next lease (TokenConfig::reinitialize_after_ms).
  void KeyVanished(uint64_t generation, std::string_view label) noexcept;
  // Whether `label` was found by this Token since the module was last (re)initialised.
  bool KeySeen(std::string_view label);
  // Persistent key handle cache (valid for one generation).
  std::optional<CK_OBJECT_HANDLE> CachedKey(std::string_view label, uint64_t generation);
  void CacheKey(std::string_view label, CK_OBJECT_HANDLE h, uint64_t generation);
  void EvictKey(std::string_view label);
  // Serialises GenerateKey (check-then-create) within this process.
  std::mutex& generate_mutex() { return generate_mu_; }
  // SessionKey bookkeeping: live session objects per session handle.
  void SessionKeyCreated(CK_SESSION_HANDLE h);
  void DestroySessionKey(CK_SESSION_HANDLE h, uint64_t generation,
                         CK_OBJECT_HANDLE object) noexcept;
  // The SessionKey's object was handed to the unwrap cache: stop counting it as live.
  void ForgetSessionKey(CK_SESSION_HANDLE h) noexcept;
  Logger* log() const { return log_; }
  // Per-session cache of unwrapped keys. Get: the object for `key` if cached and fresh (a stale
  // entry is removed and returned in *stale for the caller to destroy). Put: caches `object`;
  // returns evicted objects, which the caller destroys in the same session.
  std::optional<CK_OBJECT_HANDLE> UnwrapCacheGet(CK_SESSION_HANDLE h, const std::string& key,
                                                 std::optional<CK_OBJECT_HANDLE>* stale);
  std::vector<CK_OBJECT_HANDLE> UnwrapCachePut(CK_SESSION_HANDLE h, const std::string& key,
                                               CK_OBJECT_HANDLE object);
  size_t unwrap_cache_size() const { return config_.unwrap_cache_per_session; }
  // Null when the token is not measured.
  const TokenMetrics* metrics() const { return metrics_.get(); }

  // --- for tests (TokenTestPeer) ---
  CK_SLOT_ID slot() const;
  size_t open_sessions() const;
  size_t idle_sessions() const;

 private:
  TokenImpl(TokenConfig config, Logger* log, std::unique_ptr<internal::Pkcs11Module> module)
      : config_(std::move(config)), log_(log), module_(std::move(module)) {}

  // Finds the slot, opens a session, logs in, puts the session into the pool. mu_ held.
  Status ReopenLocked();
  // ReopenLocked(); when that fails with kUnavailable and no session is open, re-initialises the
  // module (TokenConfig::reinitialize_after_ms) and tries once more. mu_ held.
  Status ReopenOrReinitialiseLocked();
  // Checks that the token offers every mechanism we use. mu_ not needed (slot fixed at Open).
  Status CheckMechanisms(CK_SLOT_ID slot) const;
  // The one initialised token matching the label and `serial` (either may be empty, not both).
  // kUnavailable naming the tokens present when none matches, and the matching slots and
  // serials when several do. mu_ held.
  Result<CK_SLOT_ID> FindSlot(const std::string& serial, CK_TOKEN_INFO* info) const;
  Status LoginStatus(CK_RV rv) const;
  void CloseIdleLocked() noexcept;
  // After a close: when no session is left, the login is gone; re-open on the next Acquire().
  void LastSessionClosedLocked() noexcept;
  // New generation: drop idle sessions and the key cache, re-open on the next Acquire(). mu_ held.
  void BumpLocked(CK_RV rv) noexcept;
  // generation + 1, re-open before the next lease, key handle cache emptied. mu_ held.
  void NewGenerationLocked() noexcept;
  void Warn(std::string_view event, std::initializer_list<LogField> f) const;
  // Registers the metric families and the pool collector (TokenConfig::metrics).
  Status SetUpMetrics(metrics::Registry& registry);
  void Record(HsmOp op, bool success, std::chrono::steady_clock::time_point start) const {
    if (metrics_ != nullptr) {
      metrics_->Record(op, success, std::chrono::steady_clock::now() - start);
    }
  }

  const TokenConfig config_;
  Logger* const log_;
  std::unique_ptr<internal::Pkcs11Module> module_;  // C_Finalize + dlclose when destroyed

  mutable std::mutex mu_;
  std::condition_variable cv_;
  CK_SLOT_ID slot_ = 0;
  CK_TOKEN_INFO info_{};
  // mu_: the serial of the token found by the first open. Re-opens look for this token only, so
  // a token created meanwhile with the same label can never take its place.
  std::string pinned_serial_;
  bool need_reopen_ = true;
  std::vector<CK_SESSION_HANDLE> idle_;
  size_t open_ = 0;  // open sessions we own: idle + leased (any generation)
  std::unordered_map<CK_SESSION_HANDLE, int> live_keys_;
  std::atomic<uint64_t> generation_{1};
  std::optional<std::chrono::steady_clock::time_point> last_reinit_;  // mu_
  bool reinit_failing_ = false;  // mu_: a failure was logged; log the next success
  bool need_reinit_ = false;     // mu_: re-initialise the module before the next re-open
  int reopen_failures_ = 0;      // mu_: consecutive failed re-opens
  // mu_: set when the token refused the PIN while re-opening: no login is tried again (a token
  // may lock the PIN after a few failures); every Acquire() fails with this until a restart.
  std::optional<std::string> login_refused_;

  std::mutex cache_mu_;
  uint64_t cache_generation_ = 0;
  std::map<std::string, CK_OBJECT_HANDLE, std::less<>> cache_;
  std::set<std::string, std::less<>> seen_;  // labels found (any generation); cache_mu_

  std::mutex generate_mu_;

  struct CachedObject {
    std::string key;
    CK_OBJECT_HANDLE object;
    std::chrono::steady_clock::time_point created;
  };
  struct UnwrapCache {
    std::list<CachedObject> lru;  // most recent first
    std::unordered_map<std::string, std::list<CachedObject>::iterator> index;
  };
  // A closed session's objects are gone with it: forget its cache. Lock order: mu_, unwrap_mu_.
  void DropUnwrapCache(CK_SESSION_HANDLE h) noexcept;
  std::mutex unwrap_mu_;
  std::unordered_map<CK_SESSION_HANDLE, UnwrapCache> unwrap_caches_;

  // Last member: destroyed first, so the pool collector is unregistered (waiting for a scrape
  // that runs it) while mu_ still exists.
  std::unique_ptr<TokenMetrics> metrics_;
};

// Runs `body` (returning Status or Result<T>) and, when `token` is measured, records its duration
// and outcome under `op`.
template <class F>
auto Measured(const TokenImpl* token, HsmOp op, F&& body) -> decltype(body()) {
  const TokenMetrics* m = token != nullptr ? token->metrics() : nullptr;
  if (m == nullptr) {
    return body();
  }
  const auto start = std::chrono::steady_clock::now();
  auto result = body();
  m->Record(op, result.ok(), std::chrono::steady_clock::now() - start);
  return result;
}

}  // namespace otd::hsm
