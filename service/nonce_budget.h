#pragma once
// NonceBudget: how many AES-GCM encryptions each data key has done (DESIGN §4, rule 15).
//
// AES-GCM with random 96-bit nonces is safe for about 2^32 encryptions per key (NIST SP 800-38D
// §8.3). Every owner's usage counter (table `key_usage`, `[data key version u32][reserved u64]`,
// keyed by an index HMAC) is advanced in leases of `lease` encryptions, each committed before a
// record sealed with one of its encryptions is stored, so a crash only wastes the rest of a lease
// and the count never under-reports. When a lease would take the reserved total past
// `rollover_after`, the owner gets data key version N+1 in the same commit (old records keep
// opening with theirs).
//
// No worker waits for the disk for a lease (issue 15): a lease is committed asynchronously
// (Store::ApplyAsync). An encryption taken from a lease whose commit is still under way comes
// with a LeaseGate; the record sealed with it may only be written once the gate opens (Sealer,
// Tokens::Commit chain the write behind it; a blocking caller waits). The next lease is started
// when half of the current one is used, so in the steady state the gate is already open. Only a
// rollover (once per 2^31 encryptions of an owner) commits synchronously: the new data key must
// be in the store before anything is sealed with it.
//
// Thread safety: thread safe. LeaseGate callbacks run on the store's writer thread: they must
// not wait for another gate or call Store::Apply.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "service/key_hierarchy.h"
#include "store/store.h"

namespace otd::service {

struct NonceBudgetOptions {
  uint64_t rollover_after = uint64_t{1} << 31;  // half the 2^32 bound: margin for lost leases
  uint64_t lease = 4096;
};

// The outcome of a lease's commit, for the records sealed with its encryptions.
class LeaseGate {
 public:
  // Runs `fn` with the outcome: at once when it is known, else on the thread that learns it (the
  // store's writer).
  void Then(std::function<void(Status)> fn);
  // Blocks until the outcome is known and the callbacks given to Then() before it have run.
  // Never call it on the store's writer thread.
  Status Wait();
  // Called once, by the budget.
  void Settle(const Status& outcome);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Status> outcome_;                     // guarded by mu_
  bool settled_ = false;                              // callbacks done; guarded by mu_
  std::vector<std::function<void(Status)>> waiting_;  // guarded by mu_
};

// One encryption reserved for an owner.
struct Reservation {
  uint32_t version = 1;             // the data key version to seal with
  std::shared_ptr<LeaseGate> gate;  // set: its lease is not durable yet (see above)
};

class NonceBudget {
 public:
  NonceBudget(KeyHierarchy& keys, store::Store& store, Logger& log, NonceBudgetOptions options)
      : keys_(keys), store_(store), log_(log), options_(options) {}
  NonceBudget(const NonceBudget&) = delete;
  NonceBudget& operator=(const NonceBudget&) = delete;
  // Waits for the lease commits still in flight: their completions (on the store's writer) use
  // this object. Never destroy it on the store's writer thread.
  ~NonceBudget();

  // Reserves one encryption under `owner`'s current data key. kNotFound when the owner has no
  // data key; kUnavailable when the counter cannot be advanced (store, token, contention).
  Result<Reservation> Reserve(std::string_view owner);
  // The data key version new records of `owner` are sealed with (tests, status).
  Result<uint32_t> CurrentVersion(std::string_view owner);
  // The mutation erasing `owner`'s usage counter, and the newest data key version it names (1
  // when there is none); forgets what this process reserved for the owner (crypto-shredding).
  Result<store::Mutation> EraseMutation(std::string_view owner, uint32_t* newest);

  const NonceBudgetOptions& options() const { return options_; }

 private:
  // A lease being committed: enough to try again on fresh data when it lost a race.
  struct Plan;
  struct Usage {
    uint32_t version = 0;  // data key version of `durable` (0: no lease yet)
    uint64_t durable = 0;  // encryptions left under durable leases
    uint64_t pending = 0;  // encryptions left under the lease being committed
    uint32_t pending_version = 0;
    std::shared_ptr<LeaseGate> gate;  // the lease being committed, or null
    bool preparing = false;           // a thread is reading the counter to start a lease
  };
  // Reads the counter and starts the next lease (asynchronously; a rollover synchronously, and
  // only with `roll`: a prefetch leaves the rollover to the moment the key is used up). Clears
  // `preparing`.
  Status StartLease(const std::string& owner, bool roll);
  // The writer's completion of a lease commit; retries a lost race on fresh data.
  void OnCommitted(const std::shared_ptr<Plan>& plan, Status s);
  void Finish(const std::shared_ptr<Plan>& plan, Status s);

  KeyHierarchy& keys_;
  store::Store& store_;
  Logger& log_;
  const NonceBudgetOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;                    // a `preparing` flag was cleared
  std::unordered_map<std::string, Usage> usage_;  // guarded by mu_
  size_t commits_in_flight_ = 0;                  // lease commits not yet finished; guarded by mu_
};

}  // namespace otd::service
