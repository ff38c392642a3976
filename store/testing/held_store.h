#pragma once
// HeldStore: a store::Store decorator for tests. Everything goes to the wrapped store, except that
// while Hold() is on, ApplyAsync batches are queued (the caller returns at once, `done` is not
// called) until Release() hands them on in order, or Fail(status) answers them all with that
// status without writing anything. So a test can see what a caller does while its write is "in
// flight", and what it does when the write fails. Thread safe.

#include <deque>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "store/store.h"

namespace otd::store::testing {

class HeldStore final : public Store {
 public:
  // `round_trips`: what PointReadsAreRoundTrips() answers (a test can make an embedded store
  // look like a server's, e.g. to exercise the read-ahead of signed requests on LMDB).
  explicit HeldStore(Store& inner, bool round_trips = false)
      : inner_(inner), round_trips_(round_trips) {}

  bool PointReadsAreRoundTrips() const override { return round_trips_; }

  void Hold() {
    std::lock_guard lock(mu_);
    holding_ = true;
  }
  size_t Held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  // Stops holding and applies the held batches, oldest first.
  void Release() {
    for (auto& [batch, done] : Take()) {
      inner_.ApplyAsync(std::move(batch), std::move(done));
    }
  }
  // Stops holding and answers every held batch with `s` (nothing is written).
  void Fail(const Status& s) {
    for (auto& [batch, done] : Take()) {
      if (done) {
        done(s);
      }
    }
  }

  Result<std::optional<Bytes>> Get(std::string_view table, ByteView key) const override {
    return inner_.Get(table, key);
  }
  Result<std::vector<std::optional<Bytes>>> GetMany(
      const std::vector<ReadKey>& keys) const override {
    return inner_.GetMany(keys);
  }
  Result<int64_t> ExpiryOf(std::string_view table, ByteView key) const override {
    return inner_.ExpiryOf(table, key);
  }
  Status Apply(std::vector<Mutation> batch) override { return inner_.Apply(std::move(batch)); }
  void ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) override {
    {
      std::lock_guard lock(mu_);
      if (holding_) {
        held_.emplace_back(std::move(batch), std::move(done));
        return;
      }
    }
    inner_.ApplyAsync(std::move(batch), std::move(done));
  }
  Result<size_t> PurgeExpired(int64_t now, size_t max) override {
    return inner_.PurgeExpired(now, max);
  }
  Status ForEach(std::string_view table,
                 const std::function<bool(ByteView, ByteView)>& fn) const override {
    return inner_.ForEach(table, fn);
  }
  Result<Stats> GetStats() const override { return inner_.GetStats(); }
  Status Health() const override { return inner_.Health(); }
  void SetPanicHandler(std::function<void()> fn) override { inner_.SetPanicHandler(std::move(fn)); }

 private:
  using Queued = std::pair<std::vector<Mutation>, std::function<void(Status)>>;
  std::deque<Queued> Take() {
    std::lock_guard lock(mu_);
    holding_ = false;
    return std::exchange(held_, {});
  }
  Store& inner_;
  const bool round_trips_;
  std::mutex mu_;
  bool holding_ = false;
  std::deque<Queued> held_;
};

}  // namespace otd::store::testing
