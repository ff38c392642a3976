#include "store/internal/pg_reads.h"

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
  std::future<std::optional<Result<Values>>> answer = me.answer.get_future();
  bool lead_now = false;
  {
    std::lock_guard lock(mu_);
    if (in_flight_ < max_in_flight_) {
      ++in_flight_;  // a free slot: this caller runs at once
      lead_now = true;
    } else {
      queued_.push_back(&me);
    }
  }
  if (!lead_now) {
    std::optional<Result<Values>> got = answer.get();
    if (got) {
      return std::move(*got);
    }
    // nullopt: taken off the queue and handed a slot.
  }
  return Lead(keys);
}

Result<ReadCoalescer::Values> ReadCoalescer::Lead(const std::vector<ReadKey>& mine) {
  // Take the queued callers in order while their keys fit. Their Requests stay alive (and their
  // keys readable) until their promises are set, at the very end.
  std::vector<const std::vector<ReadKey>*> their_keys;
  std::vector<std::promise<std::optional<Result<Values>>>> their_answers;
  size_t key_count = mine.size();
  {
    std::lock_guard lock(mu_);
    while (!queued_.empty() && key_count + queued_.front()->keys->size() <= max_keys_) {
      Request* r = queued_.front();
      queued_.pop_front();
      key_count += r->keys->size();
      their_keys.push_back(r->keys);
      their_answers.push_back(std::move(r->answer));
    }
    ++statements_;
    callers_ += 1 + their_keys.size();
  }

  std::vector<ReadKey> all;
  all.reserve(key_count);
  all.insert(all.end(), mine.begin(), mine.end());
  for (const std::vector<ReadKey>* k : their_keys) {
    all.insert(all.end(), k->begin(), k->end());
  }
  Result<Values> values = run_(all);
  if (values.ok() && values->size() != all.size()) {
    values = Internal("store: a coalesced read returned a wrong number of values");
  }
  // Slices the statement's values: [at, at + n) for one caller.
  auto slice = [&values](size_t at, size_t n) -> Result<Values> {
    if (!values.ok()) {
      return values.status();
    }
    Values out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      out.push_back(std::move((*values)[at + i]));
    }
    return out;
  };
  Result<Values> my_answer = slice(0, mine.size());
  std::vector<Result<Values>> answers;
  answers.reserve(their_keys.size());
  size_t at = mine.size();
  for (const std::vector<ReadKey>* k : their_keys) {
    answers.push_back(slice(at, k->size()));
    at += k->size();
  }

  // The slot goes to the first caller still queued, if any; otherwise it is free again.
  std::optional<std::promise<std::optional<Result<Values>>>> next;
  {
    std::lock_guard lock(mu_);
    if (queued_.empty()) {
      --in_flight_;
    } else {
      next.emplace(std::move(queued_.front()->answer));
      queued_.pop_front();
    }
  }
  for (size_t i = 0; i < answers.size(); ++i) {
    their_answers[i].set_value(std::move(answers[i]));
  }
  if (next) {
    next->set_value(std::nullopt);
  }
  return my_answer;
}

uint64_t ReadCoalescer::statements() const {
  std::lock_guard lock(mu_);
  return statements_;
}

uint64_t ReadCoalescer::callers() const {
  std::lock_guard lock(mu_);
  return callers_;
}

size_t ReadCoalescer::queued() const {
  std::lock_guard lock(mu_);
  return queued_.size();
}

}  // namespace otd::store::internal
