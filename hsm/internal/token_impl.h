#pragma once
// TokenImpl: the PKCS#11 module, the token's slot and login, the session pool and the persistent
// key handle cache. Internal to hsm/ (Session, SessionKey, Token and tests use it).
//
// Generations: every time a session reports that the token or the login is gone (the
// kUnavailable family of CK_RVs), the generation is bumped. That drops the idle pooled sessions
// and the key handle cache; sessions of an older generation still leased are closed when they
// are returned, and the next Acquire() finds the slot again, opens a session and logs in.
// Closing the last open session (which ends the PKCS#11 login) also starts a new generation.

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
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "hsm/hsm.h"
#include "hsm/internal/module.h"
#include "hsm/internal/pkcs11.h"

namespace otd::hsm {

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

  // --- for Session / SessionKey ---
  CK_FUNCTION_LIST* fn() const { return module_->fn(); }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // A lease ends. Broken or stale sessions (or ones with SessionKeys still alive) are closed
  // (unless `handle_dead`), others go back to the pool.
  void Release(CK_SESSION_HANDLE h, uint64_t generation, bool broken, bool handle_dead) noexcept;
  // A session of `generation` saw `rv` (token/login lost): bump the generation once.
  void Invalidate(uint64_t generation, CK_RV rv) noexcept;
  // Persistent key handle cache (valid for one generation).
  std::optional<CK_OBJECT_HANDLE> CachedKey(std::string_view label, uint64_t generation);
  void CacheKey(std::string_view label, CK_OBJECT_HANDLE h, uint64_t generation);
  void EvictKey(std::string_view label);
  // Serialises GenerateKey (check-then-create) within this process.
  std::mutex& generate_mutex() { return generate_mu_; }
  // SessionKey bookkeeping: live session objects per session handle.
  void SessionKeyCreated(CK_SESSION_HANDLE h);
  void DestroySessionKey(CK_SESSION_HANDLE h, uint64_t generation, CK_OBJECT_HANDLE object) noexcept;
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

  // --- for tests (TokenTestPeer) ---
  CK_SLOT_ID slot() const;
  size_t open_sessions() const;
  size_t idle_sessions() const;

 private:
  TokenImpl(TokenConfig config, Logger* log, std::unique_ptr<internal::Pkcs11Module> module)
      : config_(std::move(config)), log_(log), module_(std::move(module)) {}

  // Finds the slot, opens a session, logs in, puts the session into the pool. mu_ held.
  Status ReopenLocked();
  // Checks that the token offers every mechanism we use. mu_ not needed (slot fixed at Open).
  Status CheckMechanisms(CK_SLOT_ID slot) const;
  Result<CK_SLOT_ID> FindSlot(CK_TOKEN_INFO* info) const;
  Status LoginStatus(CK_RV rv) const;
  void CloseIdleLocked() noexcept;
  // After a close: when no session is left, the login is gone; re-open on the next Acquire().
  void LastSessionClosedLocked() noexcept;
  // New generation: drop idle sessions and the key cache, re-open on the next Acquire(). mu_ held.
  void BumpLocked(CK_RV rv) noexcept;
  void Warn(std::string_view event, std::initializer_list<LogField> f) const;

  const TokenConfig config_;
  Logger* const log_;
  std::unique_ptr<internal::Pkcs11Module> module_;  // C_Finalize + dlclose when destroyed

  mutable std::mutex mu_;
  std::condition_variable cv_;
  CK_SLOT_ID slot_ = 0;
  CK_TOKEN_INFO info_{};
  bool need_reopen_ = true;
  std::vector<CK_SESSION_HANDLE> idle_;
  size_t open_ = 0;  // open sessions we own: idle + leased (any generation)
  std::unordered_map<CK_SESSION_HANDLE, int> live_keys_;
  std::atomic<uint64_t> generation_{1};

  std::mutex cache_mu_;
  uint64_t cache_generation_ = 0;
  std::map<std::string, CK_OBJECT_HANDLE, std::less<>> cache_;

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
};

}  // namespace otd::hsm
