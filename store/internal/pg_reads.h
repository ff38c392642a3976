#pragma once
// ReadCoalescer: the point reads of concurrent callers merged into one statement, the read-side
// twin of the writer's group commit (issue 16). On PostgreSQL each statement costs the server a
// backend wake-up, a Bind/Execute and a reply, and the calling thread a send, a poll and a
// receive; under load most of that is per statement, not per key. So a caller whose read finds
// `max_in_flight` statements already running queues its keys, and the next statement to leave
// carries every queued caller's keys (up to `max_keys`), FIFO. A caller that finds a free slot
// runs at once: nothing waits for a batch to fill, so an idle daemon reads as before.
//
// Consistency: a caller's keys are always in ONE statement (one snapshot under READ COMMITTED),
// and a statement leaves only after every caller in it has called Read(), so a caller sees every
// write acknowledged before its call (read-your-writes holds as for a statement of its own).
//
// Errors: a failed statement fails every caller in it with the same status.
//
// Wake-ups: a queued caller is woken once, outside the lock, when its answer is in, or when it is
// first in the queue as a slot frees (the slot is handed to it and it leads the next statement).
//
// Thread safety: thread safe. `run` is called outside the lock, at most `max_in_flight` at once.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "store/store.h"

namespace otd::store::internal {

class ReadCoalescer {
 public:
  using Values = std::vector<std::optional<Bytes>>;
  // Reads `keys` in one statement: one value (or nullopt) per key, in order.
  using Run = std::function<Result<Values>(const std::vector<ReadKey>& keys)>;

  // max_in_flight >= 1; max_keys >= kMaxGetMany (a caller's keys always fit).
  ReadCoalescer(Run run, size_t max_in_flight, size_t max_keys);

  // `keys`: at most kMaxGetMany (checked by the caller); empty returns at once.
  Result<Values> Read(const std::vector<ReadKey>& keys);

  // Statements run and callers served so far (tests; callers / statements = the mean batch).
  uint64_t statements() const;
  uint64_t callers() const;
  // Callers waiting in the queue right now (tests: to know a batch is complete before it leaves).
  size_t queued() const;

 private:
  // A queued caller. Its promise is set exactly once, outside the lock, by whoever took it from
  // the queue: with its answer (a leader ran its keys), or with nullopt (it is to lead the next
  // statement: a slot was handed to it).
  struct Request {
    const std::vector<ReadKey>* keys;
    std::promise<std::optional<Result<Values>>> answer;
  };
  // Runs `mine` and the queued callers that fit in one statement, in the slot the caller holds;
  // returns `mine`'s values. Called without the lock.
  Result<Values> Lead(const std::vector<ReadKey>& mine);

  const Run run_;
  const size_t max_in_flight_;
  const size_t max_keys_;
  mutable std::mutex mu_;
  std::deque<Request*> queued_;  // guarded by mu_: not yet taken, FIFO
  size_t in_flight_ = 0;         // guarded by mu_
  uint64_t statements_ = 0;      // guarded by mu_
  uint64_t callers_ = 0;         // guarded by mu_
};

}  // namespace otd::store::internal
