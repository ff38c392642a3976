#include "service/shared_limits.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "service/key_hierarchy.h"
#include "service/retry.h"
#include "service/tables.h"

namespace otd::service {

namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kRecordBytes = 1 + 4 + 8 + 8;

void PutBig(Bytes& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
}

std::minstd_rand& Rng() {
  thread_local std::minstd_rand rng(std::random_device{}());
  return rng;
}

uint64_t GetBig(ByteView in, size_t at, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) {
    v = (v << 8) | in[at + i];
  }
  return v;
}

}  // namespace

SharedLimits::SharedLimits(store::Store& store, Hasher hasher)
    : store_(store), hasher_(std::move(hasher)) {}

SharedLimits::Hasher SharedLimits::KeyedHashes(KeyHierarchy& keys) {
  return [&keys](std::string_view limiter, std::string_view key) {
    return keys.StableKeyedHash(tables::kLimits, limiter, key);
  };
}

Bytes SharedLimits::Encode(const LimitEntry& e) {
  Bytes out;
  out.reserve(kRecordBytes);
  out.push_back(kVersion);
  PutBig(out, e.failures, 4);
  PutBig(out, static_cast<uint64_t>(e.last_failure), 8);
  PutBig(out, static_cast<uint64_t>(e.blocked_until), 8);
  return out;
}

std::optional<LimitEntry> SharedLimits::Decode(ByteView raw) {
  if (raw.size() != kRecordBytes || raw[0] != kVersion) {
    return std::nullopt;
  }
  return LimitEntry{.failures = static_cast<uint32_t>(GetBig(raw, 1, 4)),
                    .last_failure = static_cast<int64_t>(GetBig(raw, 5, 8)),
                    .blocked_until = static_cast<int64_t>(GetBig(raw, 13, 8))};
}

Result<Bytes> SharedLimits::StoreKey(std::string_view limiter, std::string_view key) {
  std::string id(limiter);
  id.push_back('\0');
  id.append(key);
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(id); it != cache_.end()) {
      return it->second;
    }
  }
  OTD_ASSIGN_OR_RETURN(Bytes hashed, hasher_(limiter, key));
  std::lock_guard lock(mu_);
  if (cache_.size() >= kMaxCachedKeys) {
    cache_.clear();
  }
  cache_.emplace(std::move(id), hashed);
  return hashed;
}

Result<std::optional<LimitEntry>> SharedLimits::Read(std::string_view limiter,
                                                     std::string_view key) {
  OTD_ASSIGN_OR_RETURN(Bytes k, StoreKey(limiter, key));
  OTD_ASSIGN_OR_RETURN(std::optional<Bytes> raw, store_.Get(tables::kLimits, k));
  if (!raw) {
    return std::optional<LimitEntry>();
  }
  return Decode(*raw);  // an unreadable record counts as none (it is rewritten on the next step)
}

Status SharedLimits::Update(std::string_view limiter, std::string_view key, const Updater& update) {
  OTD_ASSIGN_OR_RETURN(Bytes k, StoreKey(limiter, key));
  int lost = 0;
  return RetryOnConflict<Status>("a rate limit", [&]() -> Attempt<Status> {
    auto raw = store_.Get(tables::kLimits, k);
    if (!raw.ok()) {
      return raw.status();
    }
    LimitEntry e;
    if (*raw) {
      e = Decode(**raw).value_or(LimitEntry{});
    }
    int64_t forget = update(e);
    store::Mutation m{.op = *raw ? store::Op::kUpdate : store::Op::kInsert,
                      .table = std::string(tables::kLimits),
                      .key = k,
                      .value = Encode(e),
                      .expires_at = forget};
    if (*raw) {
      m.expect = **raw;
    }
    std::vector<store::Mutation> batch;
    batch.push_back(std::move(m));
    Status s = store_.Apply(std::move(batch));
    if (IsLostRace(s)) {
      // Steps on one key from several nodes at once (a brute force spread over nodes) would
      // otherwise lose in lockstep: back off a random 0..2^lost ms (at most 32 ms).
      ++lost;
      std::this_thread::sleep_for(std::chrono::microseconds(
          std::uniform_int_distribution<int>(0, 1000 << std::min(lost, 5))(Rng())));
      return kRetry;
    }
    return s;
  });
}

void SharedLimits::UpdateAsync(std::string_view limiter, std::string_view key, Updater update) {
  auto k = StoreKey(limiter, key);
  if (!k.ok()) {
    return;
  }
  AsyncAttempt(store_, *k, std::nullopt, LimitEntry{}, std::make_shared<Updater>(std::move(update)),
               0);
}

void SharedLimits::AsyncAttempt(store::Store& store, const Bytes& store_key,
                                std::optional<Bytes> expect, LimitEntry base,
                                const std::shared_ptr<Updater>& update, int attempt) {
  int64_t forget = (*update)(base);
  store::Mutation m{.op = expect ? store::Op::kUpdate : store::Op::kInsert,
                    .table = std::string(tables::kLimits),
                    .key = store_key,
                    .value = Encode(base),
                    .expires_at = forget};
  m.expect = std::move(expect);
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(m));
  store.ApplyAsync(std::move(batch), [&store, store_key, update, attempt](const Status& s) {
    if (!IsLostRace(s) || attempt + 1 >= kMaxCommitAttempts) {
      return;
    }
    auto raw = store.Get(tables::kLimits, store_key);
    if (!raw.ok()) {
      return;
    }
    LimitEntry e;
    std::optional<Bytes> seen;
    if (*raw) {
      e = Decode(**raw).value_or(LimitEntry{});
      seen = std::move(**raw);
    }
    AsyncAttempt(store, store_key, std::move(seen), e, update, attempt + 1);
  });
}

Status SharedLimits::Erase(std::string_view limiter, std::string_view key) {
  OTD_ASSIGN_OR_RETURN(Bytes k, StoreKey(limiter, key));
  OTD_ASSIGN_OR_RETURN(std::optional<Bytes> raw, store_.Get(tables::kLimits, k));
  if (!raw) {
    return Status::Ok();
  }
  std::vector<store::Mutation> batch;
  batch.push_back(store::Mutation{
      .op = store::Op::kErase, .table = std::string(tables::kLimits), .key = std::move(k)});
  return store_.Apply(std::move(batch));
}

}  // namespace otd::service
