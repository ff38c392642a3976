// Token and TokenImpl: module lifetime, slot lookup, login and the session pool.

#include <algorithm>
#include <chrono>
#include <utility>

#include "hsm/hsm.h"
#include "hsm/internal/ck_error.h"
#include "hsm/internal/token_impl.h"

namespace otd::hsm {

using internal::CkrName;
using internal::CkrStatus;
using internal::PaddedField;

namespace {

constexpr size_t kTokenLabelSize = sizeof(CK_TOKEN_INFO{}.label);
constexpr size_t kTokenSerialSize = sizeof(CK_TOKEN_INFO{}.serialNumber);
constexpr CK_FLAGS kSessionFlags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
constexpr int kHealthAcquireTimeoutMs = 200;

struct MechanismName {
  CK_MECHANISM_TYPE mechanism;
  const char* name;
};
constexpr MechanismName kRequiredMechanisms[] = {
    {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN"},
    {CKM_GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN"},
    {CKM_AES_GCM, "CKM_AES_GCM"},
    {CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD"},
    {CKM_SHA256_HMAC, "CKM_SHA256_HMAC"},
};

// Status for a failure while (re)opening the token: PIN problems stay kPermissionDenied,
// everything else means the token is not usable right now.
Status OpenFailure(std::string_view function, CK_RV rv) {
  Status s = CkrStatus(function, rv);
  if (s.code() == Code::kPermissionDenied) {
    return s;
  }
  return Unavailable(s.message());
}

}  // namespace

const char* HsmOpName(HsmOp op) {
  switch (op) {
    case HsmOp::kLogin: return "login";
    case HsmOp::kOpenSession: return "open_session";
    case HsmOp::kFindKey: return "find_key";
    case HsmOp::kGenerateKey: return "generate_key";
    case HsmOp::kReadAttributes: return "read_attributes";
    case HsmOp::kEncrypt: return "encrypt";
    case HsmOp::kDecrypt: return "decrypt";
    case HsmOp::kSign: return "sign";
    case HsmOp::kVerify: return "verify";
    case HsmOp::kGenerateWrapped: return "generate_wrapped";
    case HsmOp::kImportWrapped: return "import_wrapped";
    case HsmOp::kUnwrap: return "unwrap";
    case HsmOp::kRewrap: return "rewrap";
    case HsmOp::kRandom: return "random";
    case HsmOp::kCount: break;
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// TokenImpl

Result<std::unique_ptr<TokenImpl>> TokenImpl::Open(TokenConfig config, Logger* log) {
  if (config.token_label.empty() && config.token_serial.empty()) {
    return InvalidArgument("a token label or a token serial number is required");
  }
  if (config.token_label.size() > kTokenLabelSize) {
    return InvalidArgument("token label must be at most " + std::to_string(kTokenLabelSize) +
                           " bytes");
  }
  if (config.token_serial.size() > kTokenSerialSize) {
    return InvalidArgument("token serial number must be at most " +
                           std::to_string(kTokenSerialSize) + " bytes");
  }
  if (config.max_sessions == 0) {
    return InvalidArgument("max_sessions must be at least 1");
  }
  OTD_ASSIGN_OR_RETURN(auto module, internal::Pkcs11Module::Load(config.module_path));
  std::unique_ptr<TokenImpl> t(new TokenImpl(std::move(config), log, std::move(module)));
  if (t->config_.metrics != nullptr) {
    OTD_RETURN_IF_ERROR(t->SetUpMetrics(*t->config_.metrics));
  }
  {
    std::lock_guard<std::mutex> lk(t->mu_);
    OTD_RETURN_IF_ERROR(t->ReopenLocked());
  }
  OTD_RETURN_IF_ERROR(t->CheckMechanisms(t->slot()));
  if (t->log_ != nullptr) {
    const TokenIdentity id = t->Identity();
    t->log_->Info("hsm_token_opened",
                  {{"module", t->config_.module_path},
                   {"token", id.label},
                   {"serial", id.serial},
                   {"slot", static_cast<uint64_t>(id.slot)},
                   {"max_sessions", static_cast<uint64_t>(t->config_.max_sessions)}});
  }
  return t;
}

TokenImpl::~TokenImpl() {
  std::lock_guard<std::mutex> lk(mu_);
  size_t leased = open_ - idle_.size();
  CloseIdleLocked();
  if (leased != 0) {
    // A Session outlived its Token: a bug in the caller. C_Finalize below closes it anyway.
    Warn("hsm_sessions_outlive_token", {{"leased", static_cast<uint64_t>(leased)}});
  }
  // module_ is destroyed after this body: C_Finalize, dlclose.
}

Status TokenImpl::SetUpMetrics(metrics::Registry& registry) {
  auto m = std::make_unique<TokenMetrics>();
  OTD_ASSIGN_OR_RETURN(
      metrics::CounterFamily * ops,
      registry.AddCounter("opentokend_hsm_operations_total",
                          "PKCS#11 operations by operation and result (ok or error).",
                          {"op", "result"}));
  OTD_ASSIGN_OR_RETURN(metrics::HistogramFamily * seconds,
                       registry.AddHistogram("opentokend_hsm_operation_duration_seconds",
                                             "Duration of PKCS#11 operations in seconds.", {"op"},
                                             metrics::HsmSecondsBuckets()));
  for (size_t i = 0; i < TokenMetrics::kOps; ++i) {
    const char* name = HsmOpName(static_cast<HsmOp>(i));
    m->ok[i] = &ops->With({name, "ok"});
    m->error[i] = &ops->With({name, "error"});
    m->seconds[i] = &seconds->With({name});
  }
  OTD_ASSIGN_OR_RETURN(metrics::CounterFamily * hits,
                       registry.AddCounter("opentokend_hsm_unwrap_cache_hits_total",
                                           "Unwrapped data keys found in a session's cache."));
  OTD_ASSIGN_OR_RETURN(metrics::CounterFamily * misses,
                       registry.AddCounter("opentokend_hsm_unwrap_cache_misses_total",
                                           "Data keys that had to be unwrapped in the token."));
  m->cache_hits = &hits->Get();
  m->cache_misses = &misses->Get();
  OTD_ASSIGN_OR_RETURN(metrics::GaugeFamily * open,
                       registry.AddGauge("opentokend_hsm_sessions_open",
                                         "PKCS#11 sessions open (idle and leased)."));
  OTD_ASSIGN_OR_RETURN(
      metrics::GaugeFamily * in_use,
      registry.AddGauge("opentokend_hsm_sessions_in_use", "PKCS#11 sessions leased to a request."));
  OTD_ASSIGN_OR_RETURN(metrics::GaugeFamily * max,
                       registry.AddGauge("opentokend_hsm_sessions_max",
                                         "PKCS#11 session pool size (hsm.max_sessions)."));
  metrics::Gauge* open_g = &open->Get();
  metrics::Gauge* in_use_g = &in_use->Get();
  max->Get().Set(static_cast<double>(config_.max_sessions));
  m->pool = registry.AddCollector([this, open_g, in_use_g] {
    std::lock_guard<std::mutex> lk(mu_);
    open_g->Set(static_cast<double>(open_));
    in_use_g->Set(static_cast<double>(open_ - idle_.size()));
  });
  metrics_ = std::move(m);
  return Status::Ok();
}

void TokenImpl::Warn(std::string_view event, std::initializer_list<LogField> f) const {
  if (log_ != nullptr) {
    log_->Warn(event, f);
  }
}

Result<CK_SLOT_ID> TokenImpl::FindSlot(const std::string& serial, CK_TOKEN_INFO* info) const {
  CK_FUNCTION_LIST* f = fn();
  std::vector<CK_SLOT_ID> slots;
  for (int attempt = 0; attempt < 4; ++attempt) {
    CK_ULONG n = 0;
    CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &n);
    if (rv != CKR_OK) {
      return OpenFailure("C_GetSlotList", rv);
    }
    slots.resize(n);
    if (n == 0) {
      break;
    }
    rv = f->C_GetSlotList(CK_TRUE, slots.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) {
      continue;  // a token appeared in between
    }
    if (rv != CKR_OK) {
      return OpenFailure("C_GetSlotList", rv);
    }
    slots.resize(n);
    break;
  }
  struct Candidate {
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info;
  };
  std::vector<Candidate> matches;
  std::string present;  // every initialised token, for the message when none matches
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO ti{};
    if (f->C_GetTokenInfo(slot, &ti) != CKR_OK) {
      continue;  // removed in between, or unrecognised
    }
    if ((ti.flags & CKF_TOKEN_INITIALIZED) == 0) {
      continue;
    }
    const std::string label = PaddedField(ti.label, sizeof ti.label);
    const std::string serial_no = PaddedField(ti.serialNumber, sizeof ti.serialNumber);
    present += (present.empty() ? "" : ", ") + std::string("slot ") + std::to_string(slot) +
               " label '" + label + "' serial '" + serial_no + "'";
    if (!config_.token_label.empty() && label != config_.token_label) {
      continue;
    }
    if (!serial.empty() && serial_no != serial) {
      continue;
    }
    matches.push_back({slot, ti});
  }
  std::string wanted;
  if (!config_.token_label.empty()) {
    wanted = "labelled '" + config_.token_label + "'";
  }
  if (!serial.empty()) {
    wanted += (wanted.empty() ? "" : " ") + std::string("with serial '") + serial + "'";
  }
  if (matches.empty()) {
    return Unavailable("no PKCS#11 token " + wanted + " in module " + config_.module_path +
                       " (initialised tokens: " + (present.empty() ? "none" : present) + ")");
  }
  if (matches.size() > 1) {
    // Never guess: keys created in (or read from) the wrong token make the vault unreadable.
    std::string list;
    for (const auto& m : matches) {
      list += (list.empty() ? "" : ", ") + std::string("slot ") + std::to_string(m.slot) +
              " serial '" + PaddedField(m.info.serialNumber, sizeof m.info.serialNumber) + "'";
    }
    return Unavailable(std::to_string(matches.size()) + " PKCS#11 tokens " + wanted +
                       " in module " + config_.module_path + ": " + list +
                       "; set hsm.token_serial to the one that holds the vault's keys (and "
                       "delete the other, e.g. softhsm2-util --delete-token --serial S)");
  }
  *info = matches.front().info;
  return matches.front().slot;
}

Status TokenImpl::ReopenLocked() {
  CK_FUNCTION_LIST* f = fn();
  CK_TOKEN_INFO ti{};
  const std::string& serial = pinned_serial_.empty() ? config_.token_serial : pinned_serial_;
  OTD_ASSIGN_OR_RETURN(CK_SLOT_ID slot, FindSlot(serial, &ti));
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  auto start = std::chrono::steady_clock::now();
  CK_RV rv = f->C_OpenSession(slot, kSessionFlags, nullptr, nullptr, &h);
  Record(HsmOp::kOpenSession, rv == CKR_OK, start);
  if (rv != CKR_OK) {
    return OpenFailure("C_OpenSession", rv);
  }
  auto pin = config_.pin.Reveal(SecretAccess::Grant());
  start = std::chrono::steady_clock::now();
  rv = f->C_Login(h, CKU_USER, const_cast<CK_UTF8CHAR*>(pin.data()), pin.size());
  Record(HsmOp::kLogin, rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN, start);
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    f->C_CloseSession(h);
    return OpenFailure("C_Login", rv);
  }
  slot_ = slot;
  info_ = ti;
  if (pinned_serial_.empty()) {
    pinned_serial_ = PaddedField(ti.serialNumber, sizeof ti.serialNumber);
  }
  idle_.push_back(h);
  ++open_;
  need_reopen_ = false;
  return Status::Ok();
}

Status TokenImpl::ReopenOrReinitialiseLocked() {
  const bool enabled = config_.reinitialize_after_ms > 0;
  if (!need_reinit_ || !enabled) {
    Status s = ReopenLocked();
    if (s.ok()) {
      reopen_failures_ = 0;
      return s;
    }
    // One failed re-open may be a passing error; the second in a row calls for re-initialising.
    if (s.code() != Code::kUnavailable || !enabled || ++reopen_failures_ < 2) {
      return s;
    }
    need_reinit_ = true;
  }
  if (open_ != 0) {
    // A session of the old incarnation is still leased (its thread may be inside the module):
    // C_Finalize now could pull the module out from under it. No new lease until it is back.
    return Unavailable("PKCS#11 token lost; re-initialising the module once " +
                       std::to_string(open_) + " leased session(s) are returned");
  }
  const auto now = std::chrono::steady_clock::now();
  const auto interval = std::chrono::milliseconds(config_.reinitialize_after_ms);
  if (last_reinit_ && now - *last_reinit_ < interval) {
    return Unavailable("PKCS#11 token lost; the module is re-initialised at most every " +
                       std::to_string(config_.reinitialize_after_ms) + " ms");
  }
  last_reinit_ = now;
  // Every handle of the old incarnation dies with it: nothing may use a cached one again. (No
  // session is open, so no SessionKey is alive either.)
  NewGenerationLocked();
  Status r = module_->Reinitialize();
  if (r.ok()) {
    r = ReopenLocked();
  }
  if (!r.ok()) {
    if (!reinit_failing_) {
      Warn("hsm_module_reinitialise_failed",
           {{"token", config_.token_label},
            {"error", r.message()},
            {"retry_ms", static_cast<uint64_t>(config_.reinitialize_after_ms)}});
      reinit_failing_ = true;
    }
    return r.code() == Code::kPermissionDenied ? r : Unavailable(r.message());
  }
  need_reinit_ = false;
  reinit_failing_ = false;
  reopen_failures_ = 0;
  {
    // A key still missing now was deleted for real: from here on it is an ordinary kNotFound.
    std::lock_guard<std::mutex> lk(cache_mu_);
    seen_.clear();
  }
  if (log_ != nullptr) {
    log_->Info("hsm_module_reinitialised",
               {{"token", config_.token_label}, {"slot", static_cast<uint64_t>(slot_)}});
  }
  return Status::Ok();
}

Status TokenImpl::CheckMechanisms(CK_SLOT_ID slot) const {
  for (const MechanismName& m : kRequiredMechanisms) {
    CK_MECHANISM_INFO mi{};
    CK_RV rv = fn()->C_GetMechanismInfo(slot, m.mechanism, &mi);
    if (rv == CKR_MECHANISM_INVALID) {
      return FailedPrecondition("token '" + config_.token_label + "' does not support " + m.name);
    }
    if (rv != CKR_OK) {
      return OpenFailure("C_GetMechanismInfo", rv);
    }
  }
  return Status::Ok();
}

void TokenImpl::CloseIdleLocked() noexcept {
  for (CK_SESSION_HANDLE h : idle_) {
    fn()->C_CloseSession(h);  // may fail when the token is gone; nothing to do then
    live_keys_.erase(h);
    DropUnwrapCache(h);
  }
  open_ -= idle_.size();
  idle_.clear();
  LastSessionClosedLocked();
}

void TokenImpl::LastSessionClosedLocked() noexcept {
  if (open_ != 0 || need_reopen_) {
    return;
  }
  // Closing the last session ends the login (PKCS#11 login state is per application and token)
  // and, with SoftHSM, invalidates the handles of private objects: start a new generation, so
  // that the next Acquire() logs in again and the key handle cache is refilled. Nothing is
  // leased, so nobody loses a session.
  NewGenerationLocked();
}

void TokenImpl::NewGenerationLocked() noexcept {
  generation_.fetch_add(1, std::memory_order_acq_rel);
  need_reopen_ = true;
  std::lock_guard<std::mutex> lk(cache_mu_);  // lock order: mu_, then cache_mu_
  cache_.clear();
}

Result<Session> TokenImpl::Acquire() {
  return AcquireFor(std::chrono::milliseconds(std::max(0, config_.acquire_timeout_ms)));
}

Result<Session> TokenImpl::AcquireFor(std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (login_refused_) {
      return Unavailable(*login_refused_);
    }
    if (need_reopen_) {
      Status s = ReopenOrReinitialiseLocked();
      if (s.code() == Code::kPermissionDenied) {
        // The PIN worked at start and is refused now (changed, expired, locked, or a token that
        // is not the same): retrying with the same PIN only counts down the token's retry
        // counter. Refuse until a restart; 503 to clients (they are not at fault).
        login_refused_ = "the token refused the PIN (" + s.message() +
                         "); no further login is attempted: fix the PIN and restart the daemon";
        if (log_ != nullptr) {
          log_->Error("hsm_login_refused",
                      {{"token", config_.token_label}, {"error", s.message()}});
        }
        return Unavailable(*login_refused_);
      }
      if (!s.ok()) {
        return s;
      }
      if (log_ != nullptr) {
        log_->Info("hsm_token_reopened",
                   {{"token", config_.token_label}, {"slot", static_cast<uint64_t>(slot_)}});
      }
    }
    const uint64_t gen = generation();
    if (!idle_.empty()) {
      CK_SESSION_HANDLE h = idle_.back();
      idle_.pop_back();
      return Session(this, h, gen);
    }
    if (open_ < config_.max_sessions) {
      CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
      const auto start = std::chrono::steady_clock::now();
      CK_RV rv = fn()->C_OpenSession(slot_, kSessionFlags, nullptr, nullptr, &h);
      Record(HsmOp::kOpenSession, rv == CKR_OK, start);
      if (rv != CKR_OK) {
        Status s = OpenFailure("C_OpenSession", rv);
        if (internal::IsTokenLost(rv) || rv == CKR_SLOT_ID_INVALID) {
          BumpLocked(rv);
        }
        return s;
      }
      ++open_;
      return Session(this, h, gen);
    }
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= config_.max_sessions && !need_reopen_) {
      return ResourceExhausted("all " + std::to_string(config_.max_sessions) +
                               " PKCS#11 sessions are in use (waited " +
                               std::to_string(timeout.count()) + " ms)");
    }
  }
}

void TokenImpl::Release(CK_SESSION_HANDLE h, uint64_t gen, bool broken, bool handle_dead) noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  bool keys_alive = false;
  if (auto it = live_keys_.find(h); it != live_keys_.end()) {
    keys_alive = it->second > 0;
    live_keys_.erase(it);
  }
  if (keys_alive) {
    // Caller bug: a SessionKey outlives its Session. Do not hand the session (and the key
    // object in it) to another thread; closing it destroys the object.
    Warn("hsm_session_released_with_live_keys", {});
  }
  if (broken || keys_alive || gen != generation()) {
    if (!handle_dead) {
      fn()->C_CloseSession(h);
    }
    DropUnwrapCache(h);
    --open_;
    LastSessionClosedLocked();
  } else {
    idle_.push_back(h);
  }
  cv_.notify_one();
}

void TokenImpl::DropUnwrapCache(CK_SESSION_HANDLE h) noexcept {
  std::lock_guard<std::mutex> lk(unwrap_mu_);
  unwrap_caches_.erase(h);
}

std::optional<CK_OBJECT_HANDLE> TokenImpl::UnwrapCacheGet(CK_SESSION_HANDLE h,
                                                          const std::string& key,
                                                          std::optional<CK_OBJECT_HANDLE>* stale) {
  std::lock_guard<std::mutex> lk(unwrap_mu_);
  auto c = unwrap_caches_.find(h);
  if (c == unwrap_caches_.end()) {
    return std::nullopt;
  }
  auto it = c->second.index.find(key);
  if (it == c->second.index.end()) {
    return std::nullopt;
  }
  auto entry = it->second;
  if (std::chrono::steady_clock::now() - entry->created >
      std::chrono::milliseconds(config_.unwrap_cache_ttl_ms)) {
    *stale = entry->object;
    c->second.index.erase(it);
    c->second.lru.erase(entry);
    return std::nullopt;
  }
  c->second.lru.splice(c->second.lru.begin(), c->second.lru, entry);
  return entry->object;
}

std::vector<CK_OBJECT_HANDLE> TokenImpl::UnwrapCachePut(CK_SESSION_HANDLE h, const std::string& key,
                                                        CK_OBJECT_HANDLE object) {
  std::lock_guard<std::mutex> lk(unwrap_mu_);
  UnwrapCache& c = unwrap_caches_[h];
  std::vector<CK_OBJECT_HANDLE> evicted;
  if (auto it = c.index.find(key); it != c.index.end()) {
    evicted.push_back(it->second->object);
    c.lru.erase(it->second);
    c.index.erase(it);
  }
  c.lru.push_front({key, object, std::chrono::steady_clock::now()});
  c.index[key] = c.lru.begin();
  while (c.lru.size() > config_.unwrap_cache_per_session) {
    evicted.push_back(c.lru.back().object);
    c.index.erase(c.lru.back().key);
    c.lru.pop_back();
  }
  return evicted;
}

void TokenImpl::Invalidate(uint64_t gen, CK_RV rv) noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  if (gen == generation()) {  // otherwise already handled for this generation
    BumpLocked(rv);
  }
}

void TokenImpl::KeyVanished(uint64_t gen, std::string_view label) noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  if (config_.reinitialize_after_ms > 0) {
    need_reinit_ = true;
  }
  if (gen == generation()) {
    Warn("hsm_key_vanished", {{"token", config_.token_label}, {"label", label}});
    BumpLocked(CKR_TOKEN_NOT_PRESENT);
  }
}

bool TokenImpl::KeySeen(std::string_view label) {
  std::lock_guard<std::mutex> lk(cache_mu_);
  return seen_.find(label) != seen_.end();
}

void TokenImpl::BumpLocked(CK_RV rv) noexcept {
  NewGenerationLocked();
  CloseIdleLocked();  // need_reopen_ already set: no second bump
  cv_.notify_all();
  Warn("hsm_token_lost", {{"token", config_.token_label}, {"error", CkrName(rv)}});
}

std::optional<CK_OBJECT_HANDLE> TokenImpl::CachedKey(std::string_view label, uint64_t gen) {
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (cache_generation_ != gen) {
    return std::nullopt;
  }
  auto it = cache_.find(label);
  if (it == cache_.end()) {
    return std::nullopt;
  }
  return it->second;
}

void TokenImpl::CacheKey(std::string_view label, CK_OBJECT_HANDLE h, uint64_t gen) {
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (gen != generation()) {
    return;  // found through a session of an older generation
  }
  if (cache_generation_ != gen) {
    cache_.clear();
    cache_generation_ = gen;
  }
  cache_.insert_or_assign(std::string(label), h);
  seen_.emplace(label);
}

void TokenImpl::EvictKey(std::string_view label) {
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (auto it = cache_.find(label); it != cache_.end()) {
    cache_.erase(it);
  }
}

void TokenImpl::SessionKeyCreated(CK_SESSION_HANDLE h) {
  std::lock_guard<std::mutex> lk(mu_);
  ++live_keys_[h];
}

void TokenImpl::ForgetSessionKey(CK_SESSION_HANDLE h) noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  if (auto it = live_keys_.find(h); it != live_keys_.end() && --it->second <= 0) {
    live_keys_.erase(it);
  }
}

void TokenImpl::DestroySessionKey(CK_SESSION_HANDLE h, uint64_t gen,
                                  CK_OBJECT_HANDLE object) noexcept {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = live_keys_.find(h); it != live_keys_.end() && --it->second <= 0) {
      live_keys_.erase(it);
    }
  }
  if (gen == generation()) {
    // Errors are ignored: if the session is gone, so is the object.
    fn()->C_DestroyObject(h, object);
  }
}

CK_SLOT_ID TokenImpl::slot() const {
  std::lock_guard<std::mutex> lk(mu_);
  return slot_;
}

size_t TokenImpl::open_sessions() const {
  std::lock_guard<std::mutex> lk(mu_);
  return open_;
}

size_t TokenImpl::idle_sessions() const {
  std::lock_guard<std::mutex> lk(mu_);
  return idle_.size();
}

TokenHealth TokenImpl::Health() {
  std::string last_error;
  // Two attempts: a stale pooled session makes the first fail and the token re-open.
  for (int attempt = 0; attempt < 2; ++attempt) {
    // Do not queue behind busy workers for long: sessions all in use means they are working.
    Result<Session> s = AcquireFor(std::chrono::milliseconds(
        std::clamp(config_.acquire_timeout_ms, 0, kHealthAcquireTimeoutMs)));
    if (!s.ok()) {
      if (s.status().code() == Code::kResourceExhausted) {
        return {true, "token '" + config_.token_label + "': all " +
                          std::to_string(config_.max_sessions) + " sessions busy"};
      }
      return {false, s.status().message()};
    }
    CK_SESSION_INFO si{};
    CK_RV rv = fn()->C_GetSessionInfo(s->handle_, &si);
    if (rv != CKR_OK) {
      last_error = s->Fail("C_GetSessionInfo", rv).message();
      continue;
    }
    if (si.state != CKS_RW_USER_FUNCTIONS) {
      s->broken_ = true;
      Invalidate(s->generation_, CKR_USER_NOT_LOGGED_IN);
      last_error = "PKCS#11 session is not logged in (state " + std::to_string(si.state) + ")";
      continue;
    }
    std::lock_guard<std::mutex> lk(mu_);
    return {true, "token '" + config_.token_label + "' in slot " + std::to_string(slot_) +
                      ": logged in, " + std::to_string(open_) + "/" +
                      std::to_string(config_.max_sessions) + " sessions open"};
  }
  return {false, last_error};
}

std::string TokenImpl::Describe() const {
  std::lock_guard<std::mutex> lk(mu_);
  auto field = [](const CK_UTF8CHAR* p, size_t n) { return "\"" + PaddedField(p, n) + "\""; };
  return "module=" + config_.module_path + " library=\"" + module_->library_info() + "\"" +
         " manufacturer=" + field(info_.manufacturerID, sizeof info_.manufacturerID) +
         " model=" + field(info_.model, sizeof info_.model) +
         " label=" + field(info_.label, sizeof info_.label) +
         " serial=" + field(info_.serialNumber, sizeof info_.serialNumber) +
         " slot=" + std::to_string(slot_);
}

TokenIdentity TokenImpl::Identity() const {
  std::lock_guard<std::mutex> lk(mu_);
  return {config_.module_path, PaddedField(info_.label, sizeof info_.label),
          PaddedField(info_.serialNumber, sizeof info_.serialNumber), slot_};
}

std::string TokenIdentity::ToString() const {
  return "label=\"" + label + "\" serial=\"" + serial + "\" module=" + module +
         " slot=" + std::to_string(slot);
}

// ---------------------------------------------------------------------------------------------
// Token

Token::Token(std::unique_ptr<TokenImpl> impl) : impl_(std::move(impl)) {}
Token::~Token() = default;

Result<std::unique_ptr<Token>> Token::Open(TokenConfig config, Logger* log) {
  OTD_ASSIGN_OR_RETURN(auto impl, TokenImpl::Open(std::move(config), log));
  return std::unique_ptr<Token>(new Token(std::move(impl)));
}

Result<Session> Token::Acquire() { return impl_->Acquire(); }
TokenHealth Token::Health() { return impl_->Health(); }
std::string Token::Describe() const { return impl_->Describe(); }
TokenIdentity Token::Identity() const { return impl_->Identity(); }

}  // namespace otd::hsm
