#include "store/internal/pg_reads.h"

#include <algorithm>
#include <utility>

#include "common/check.h"

namespace otd::store::internal {

ReadCoalescer::ReadCoalescer(Run run, size_t max_in_flight, size_t max_keys)
    : run_(std::move(run)), max_in_flight_(max_in_flight), max_keys_(max_keys) {
  OTD_CHECK(max_in_flight_ >= 1);
  OTD_CHECK(max_keys_ >= kMaxGetMany);
}

Result<ReadCoalescer::Values> ReadCoalescer::Read(const std::vector<ReadKey>& keys) {
  if (keys.empty()) {
    return Values{};
  }
  OTD_CHECK(keys.size() <= kMaxGetMany);
  Request me{.keys = &keys};
  std::unique_lock lock(mu_);
  queued_.push_back(&me);
  while (!me.result) {
    if (!me.taken && in_flight_ < max_in_flight_) {
      Lead(me, lock);
    } else {
      done_.wait(lock);
    }
  }
  return std::move(*me.result);
}

void ReadCoalescer::Lead(Request& me, std::unique_lock<std::mutex>& lock) {
  // Take `me`, then the queued callers in order while their keys fit.
  std::vector<Request*> batch{&me};
  size_t key_count = me.keys->size();
  std::erase(queued_, &me);
  while (!queued_.empty() && key_count + queued_.front()->keys->size() <= max_keys_) {
    key_count += queued_.front()->keys->size();
    batch.push_back(queued_.front());
    queued_.pop_front();
  }
  for (Request* r : batch) {
    r->taken = true;
  }
  ++in_flight_;
  ++statements_;
  callers_ += batch.size();
  lock.unlock();

  std::vector<ReadKey> all;
  all.reserve(key_count);
  for (const Request* r : batch) {
    all.insert(all.end(), r->keys->begin(), r->keys->end());
  }
  Result<Values> values = run_(all);
  if (values.ok() && values->size() != all.size()) {
    values = Internal("store: a coalesced read returned a wrong number of values");
  }
  std::vector<Result<Values>> answers;
  answers.reserve(batch.size());
  size_t at = 0;
  for (const Request* r : batch) {
    if (!values.ok()) {
      answers.emplace_back(values.status());
      continue;
    }
    Values mine;
    mine.reserve(r->keys->size());
    for (size_t i = 0; i < r->keys->size(); ++i) {
      mine.push_back(std::move((*values)[at + i]));
    }
    at += r->keys->size();
    answers.emplace_back(std::move(mine));
  }

  lock.lock();
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->result.emplace(std::move(answers[i]));
  }
  --in_flight_;
  lock.unlock();
  done_.notify_all();
  lock.lock();
}

uint64_t ReadCoalescer::statements() const {
  std::lock_guard lock(mu_);
  return statements_;
}

uint64_t ReadCoalescer::callers() const {
  std::lock_guard lock(mu_);
  return callers_;
}

}  // namespace otd::store::internal
