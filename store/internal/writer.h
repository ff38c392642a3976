#pragma once
// The single writer thread of an LmdbStore: callers enqueue batches (Apply blocks on the result,
// ApplyAsync returns at once) and the writer commits everything queued in one LMDB transaction,
// each batch in its own nested transaction so that a failed precondition aborts only that batch
// (group commit). When the shared transaction itself fails for lack of room, every batch is
// retried alone. Private to store/.
//
// Thread safety: Apply, ApplyAsync and PurgeExpired are thread safe; Apply and PurgeExpired
// return kInternal on the writer thread (they would wait for themselves).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "store/internal/env.h"
#include "store/store.h"

namespace otd::store::internal {

struct Request;
struct WriterMetrics;

class Writer {
 public:
  // Starts the thread. `env` must outlive the writer.
  static Result<std::unique_ptr<Writer>> Start(const Env& env);
  // Drains everything queued, then stops the thread. Must not run on the writer thread.
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  Status Apply(std::vector<Mutation> batch);
  void ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done);
  Result<size_t> PurgeExpired(int64_t now, size_t max);

  uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }
  uint64_t batches() const { return batches_.load(std::memory_order_relaxed); }

 private:
  explicit Writer(const Env& env);
  // Validation on the caller's thread; the result is final when !ok().
  Status Prepare(Request& r) const;
  bool OnWriterThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  void Enqueue(std::unique_ptr<Request> r);

  void Loop();
  void RunGroup(std::vector<std::unique_ptr<Request>>& group);
  std::optional<std::string_view> RunNested(const std::vector<Request*>& work);
  void RunEach(const std::vector<Request*>& work);
  // Applies one request inside `txn`. On an LMDB failure sets *rc (the transaction must then be
  // aborted); semantic failures (kAlreadyExists, kFailedPrecondition) leave *rc == 0.
  Status Execute(MDB_txn* txn, Request& r, int* rc);
  void FailAll(const std::vector<Request*>& work, int rc, std::string_view what);
  // Counts one committed write transaction holding `work`, begun at `began`.
  void MarkCommitted(const std::vector<Request*>& work,
                     std::chrono::steady_clock::time_point began);

  const Env& env_;
  std::unique_ptr<WriterMetrics> metrics_;  // null: not measured

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Request>> queue_;  // guarded by mu_
  bool stopping_ = false;                       // guarded by mu_
  std::thread thread_;

  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> batches_{0};
};

}  // namespace otd::store::internal
