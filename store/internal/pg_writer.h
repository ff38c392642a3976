#pragma once
// The writer thread of a PgStore (store/pg_store.h): callers enqueue batches, the thread takes
// everything queued (up to max_batch_mutations) and commits the group with one call of
// otd_apply() in one pipelined transaction on its own connection (store/internal/pg_conn.h).
// Private to store/.
//
// Thread safety: Apply and ApplyAsync are thread safe; Apply returns kInternal on the writer
// thread (it would wait for itself).

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/internal/pg_conn.h"
#include "store/store.h"

namespace otd {
class Logger;
}  // namespace otd

namespace otd::store::internal {

struct PgRequest;

class PgWriter {
 public:
  PgWriter(PgConnSettings settings, std::set<std::string, std::less<>> tables,
           size_t max_batch_mutations, Logger* log);
  // Drains everything queued, then stops the thread. Must not run on the writer thread.
  ~PgWriter();
  PgWriter(const PgWriter&) = delete;
  PgWriter& operator=(const PgWriter&) = delete;

  Status Apply(std::vector<Mutation> batch);
  void ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done);
  bool OnWriterThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }
  uint64_t batches() const { return batches_.load(std::memory_order_relaxed); }

  // The caller-side checks (table known, key sizes, option combinations).
  Status Validate(const std::vector<Mutation>& batch) const;

 private:
  void Enqueue(std::unique_ptr<PgRequest> r);
  void Loop();
  void RunGroup(const std::vector<PgRequest*>& work);
  // One attempt; returns true when it may be retried (nothing was committed: deadlock or
  // serialization failure).
  bool TryGroup(const std::vector<PgRequest*>& work);

  const PgConnSettings settings_;
  const std::set<std::string, std::less<>> tables_;
  const size_t max_batch_mutations_;
  Logger* const log_;

  PgConnPtr conn_;                  // writer thread only
  bool syncrep_cancelled_ = false;  // set by conn_'s notice receiver

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<PgRequest>> queue_;  // guarded by mu_
  bool stopping_ = false;                         // guarded by mu_
  std::thread thread_;

  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> batches_{0};
};

}  // namespace otd::store::internal
