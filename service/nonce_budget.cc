#include "service/nonce_budget.h"

#include <tuple>

#include "common/check.h"
#include "service/retry.h"
#include "service/tables.h"

namespace otd::service {

namespace {

constexpr std::string_view kKeyUsageTable = tables::kKeyUsage;
constexpr std::string_view kUsageId = "usage";
constexpr std::string_view kAccountKeysTable = tables::kAccountKeys;

// key_usage value: [data key version u32][encryptions reserved with it u64], big-endian.
Bytes EncodeUsage(uint32_t version, uint64_t reserved) {
  Bytes out;
  for (int i = 3; i >= 0; --i) {
    out.push_back(static_cast<uint8_t>(version >> (8 * i)));
  }
  for (int i = 7; i >= 0; --i) {
    out.push_back(static_cast<uint8_t>(reserved >> (8 * i)));
  }
  return out;
}

Result<std::pair<uint32_t, uint64_t>> DecodeUsage(ByteView b) {
  if (b.size() != 12) {
    return DataLoss("key usage record has the wrong length");
  }
  uint32_t version = 0;
  uint64_t reserved = 0;
  for (size_t i = 0; i < 4; ++i) {
    version = (version << 8) | b[i];
  }
  for (size_t i = 4; i < 12; ++i) {
    reserved = (reserved << 8) | b[i];
  }
  if (version == 0) {
    return DataLoss("key usage record names data key version 0");
  }
  return std::make_pair(version, reserved);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LeaseGate

void LeaseGate::Then(std::function<void(Status)> fn) {
  std::unique_lock lock(mu_);
  if (!outcome_) {
    waiting_.push_back(std::move(fn));
    return;
  }
  Status s = *outcome_;
  lock.unlock();
  fn(std::move(s));
}

Status LeaseGate::Wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return settled_; });
  return *outcome_;
}

void LeaseGate::Settle(const Status& outcome) {
  std::vector<std::function<void(Status)>> waiting;
  {
    std::lock_guard lock(mu_);
    OTD_CHECK(!outcome_.has_value());
    outcome_ = outcome;
    waiting.swap(waiting_);
  }
  for (auto& fn : waiting) {
    fn(outcome);
  }
  {
    std::lock_guard lock(mu_);
    settled_ = true;
  }
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// NonceBudget

struct NonceBudget::Plan {
  std::string owner;
  Bytes key;                    // the usage record's store key
  std::optional<Bytes> expect;  // its value as read; nullopt: the owner's first lease (insert)
  uint32_t version = 1;
  uint64_t end = 0;        // the reserved total after this lease
  int64_t expires_at = 0;  // the counter lives (and expires) with the owner's data key
  std::shared_ptr<LeaseGate> gate;
  int attempts = 1;

  store::Mutation Mutation() const {
    store::Mutation m{.op = expect ? store::Op::kUpdate : store::Op::kInsert,
                      .table = std::string(kKeyUsageTable),
                      .key = key,
                      .value = EncodeUsage(version, end),
                      .expires_at = expires_at};
    if (expect) {
      m.expect = *expect;
      m.keep_expiry = true;
    }
    return m;
  }
};

Result<Reservation> NonceBudget::Reserve(std::string_view owner_view) {
  const std::string owner(owner_view);
  for (int attempt = 0; attempt < kMaxCommitAttempts; ++attempt) {
    Reservation r;
    std::shared_ptr<LeaseGate> used_up;
    bool start = false;
    bool prefetch = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !usage_[owner].preparing; });
      Usage& u = usage_[owner];
      if (u.durable > 0) {
        --u.durable;
        r.version = u.version;
        // Half of the lease is used: the next one is committed while the rest is used.
        prefetch = u.durable <= options_.lease / 2 && !u.gate;
      } else if (u.gate && u.pending > 0) {
        --u.pending;
        r.version = u.pending_version;
        r.gate = u.gate;
      } else if (u.gate) {
        used_up = u.gate;  // the lease being committed is used up too (a burst): wait for it
      } else {
        start = true;
      }
      u.preparing = start || prefetch;
    }
    if (prefetch) {
      if (Status s = StartLease(owner, /*roll=*/false); !s.ok()) {
        log_.Warn("key_usage_lease_failed", {{"reason", s.message()}});  // retried next time
      }
      return r;
    }
    if (!start && !used_up) {
      return r;
    }
    if (used_up) {
      (void)used_up->Wait();  // settled: the next round finds a durable lease or starts one
      continue;
    }
    if (Status s = StartLease(owner, /*roll=*/true); !s.ok() && !IsLostRace(s)) {
      return s;
    }
  }
  return Unavailable("too much contention on a data key's usage counter");
}

Status NonceBudget::StartLease(const std::string& owner, bool roll) {
  auto done_preparing = [this, &owner](Status s) {
    {
      std::lock_guard lock(mu_);
      usage_[owner].preparing = false;
    }
    cv_.notify_all();
    return s;
  };
  auto plan = std::make_shared<Plan>();
  plan->owner = owner;
  uint64_t reserved = 0;
  {
    auto rec = keys_.Find(kKeyUsageTable, owner, kUsageId, KeyHierarchy::Ids::kPublic);
    if (!rec.ok()) {
      return done_preparing(rec.status());
    }
    plan->key = std::move(rec->key);
    if (rec->value) {
      auto u = DecodeUsage(*rec->value);
      auto expires = store_.ExpiryOf(kKeyUsageTable, plan->key);
      if (!u.ok() || !expires.ok()) {
        return done_preparing(!u.ok() ? u.status() : expires.status());
      }
      std::tie(plan->version, reserved) = *u;
      plan->expires_at = *expires;
      plan->expect = std::move(rec->value);
    } else {
      auto key = keys_.Find(kAccountKeysTable, owner, DataKeyId(1), KeyHierarchy::Ids::kPublic);
      if (!key.ok()) {
        return done_preparing(key.status());
      }
      if (!key->value) {
        return done_preparing(NotFound("account has no data key"));
      }
      auto expires = store_.ExpiryOf(kAccountKeysTable, key->key);
      if (!expires.ok()) {
        return done_preparing(expires.status());
      }
      plan->expires_at = *expires;
    }
  }
  plan->end = reserved + options_.lease;
  if (plan->end > options_.rollover_after) {
    if (!roll) {
      return done_preparing(Status::Ok());  // a prefetch: the key rolls over when it is used up
    }
    // The nonce budget of this key is (nearly) used up: a new data key version takes over, in
    // the same commit, synchronously (nothing may be sealed with a key not yet in the store).
    ++plan->version;
    plan->end = options_.lease;
    auto key = keys_.NewDataKeyMutation(owner, plan->version, plan->expires_at);
    if (!key.ok()) {
      return done_preparing(key.status());
    }
    std::vector<store::Mutation> batch;
    batch.push_back(std::move(key).value());
    batch.push_back(plan->Mutation());
    Status s = store_.Apply(std::move(batch));
    if (s.ok()) {
      std::lock_guard lock(mu_);
      Usage& u = usage_[owner];
      u.version = plan->version;
      u.durable = options_.lease;
      log_.Info("data_key_rolled_over",
                {{"data_key_version", static_cast<int64_t>(plan->version)}});
    }
    return done_preparing(s);
  }
  plan->gate = std::make_shared<LeaseGate>();
  {
    std::lock_guard lock(mu_);
    Usage& u = usage_[owner];
    u.gate = plan->gate;
    u.pending = options_.lease;
    u.pending_version = plan->version;
    u.preparing = false;
    ++commits_in_flight_;
  }
  cv_.notify_all();
  store_.ApplyAsync({plan->Mutation()},
                    [this, plan](Status s) { OnCommitted(plan, std::move(s)); });
  return Status::Ok();
}

NonceBudget::~NonceBudget() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return commits_in_flight_ == 0; });
}

void NonceBudget::OnCommitted(const std::shared_ptr<Plan>& plan, Status s) {
  if (IsLostRace(s) && plan->attempts < kMaxCommitAttempts) {
    // Another process (or a shredding) changed the counter since it was read. Read it again
    // (a store read is allowed on the writer thread; no token call is needed) and try once more,
    // unless the data key version moved on or a rollover would be needed.
    auto current = store_.Get(kKeyUsageTable, plan->key);
    if (current.ok() && current->has_value()) {
      auto u = DecodeUsage(**current);
      if (u.ok() && u->first == plan->version &&
          u->second + options_.lease <= options_.rollover_after) {
        plan->expect = std::move(**current);
        plan->end = u->second + options_.lease;
        ++plan->attempts;
        store_.ApplyAsync({plan->Mutation()},
                          [this, plan](Status again) { OnCommitted(plan, std::move(again)); });
        return;
      }
    }
  }
  Finish(plan, std::move(s));
}

void NonceBudget::Finish(const std::shared_ptr<Plan>& plan, Status s) {
  {
    std::lock_guard lock(mu_);
    auto it = usage_.find(plan->owner);
    if (it != usage_.end() && it->second.gate == plan->gate) {
      Usage& u = it->second;
      if (s.ok()) {
        if (u.version != plan->version) {
          u.version = plan->version;
          u.durable = 0;
        }
        u.durable += u.pending;
      }
      u.pending = 0;
      u.gate.reset();
    }
  }
  cv_.notify_all();
  if (!s.ok()) {
    log_.Warn("key_usage_lease_failed", {{"reason", s.message()}});
    if (IsLostRace(s)) {
      s = Unavailable("a data key's usage counter kept changing; try again");
    }
  }
  plan->gate->Settle(s);
  // Notified under the lock: once the destructor sees 0 it destroys cv_ (TSan: a notify after
  // the unlock raced with that).
  std::lock_guard lock(mu_);
  --commits_in_flight_;
  cv_.notify_all();
}

Result<uint32_t> NonceBudget::CurrentVersion(std::string_view owner) {
  OTD_ASSIGN_OR_RETURN(Located rec,
                       keys_.Find(kKeyUsageTable, owner, kUsageId, KeyHierarchy::Ids::kPublic));
  if (!rec.value) {
    return 1u;
  }
  OTD_ASSIGN_OR_RETURN(auto u, DecodeUsage(*rec.value));
  return u.first;
}

Result<store::Mutation> NonceBudget::EraseMutation(std::string_view owner, uint32_t* newest) {
  OTD_ASSIGN_OR_RETURN(Located usage,
                       keys_.Find(kKeyUsageTable, owner, kUsageId, KeyHierarchy::Ids::kPublic));
  *newest = 1;
  if (usage.value) {
    OTD_ASSIGN_OR_RETURN(auto u, DecodeUsage(*usage.value));
    *newest = u.first;
  }
  {
    std::lock_guard lock(mu_);
    if (auto it = usage_.find(std::string(owner)); it != usage_.end() && !it->second.preparing) {
      usage_.erase(it);
    }
  }
  return store::Mutation{
      .op = store::Op::kErase, .table = std::string(kKeyUsageTable), .key = std::move(usage.key)};
}

}  // namespace otd::service
