#include "store/internal/writer.h"

#include <algorithm>
#include <cassert>
#include <future>
#include <utility>

#include "common/log.h"
#include "common/metrics.h"
#include "store/internal/lmdb_handles.h"
#include "store/internal/mutations.h"
#include "store/internal/ttl.h"

namespace otd::store::internal {

// One queued unit of writer work: an Apply() batch or a PurgeExpired() call.
struct Request {
  enum class Kind { kBatch, kPurge };
  Kind kind = Kind::kBatch;
  std::vector<Mutation> batch;
  std::vector<MDB_dbi> dbis;  // parallel to `batch`
  int64_t purge_now = 0;
  size_t purge_max = 0;
  size_t cost = 1;    // counts against LmdbOptions::max_batch_mutations
  bool skip = false;  // `result` is already final (validation failed, or nothing to do)
  std::function<void(Status, size_t)> done;
  Status result;
  size_t purged = 0;
};

// LmdbOptions::metrics handles, resolved at start.
struct WriterMetrics {
  metrics::Histogram* commit_seconds = nullptr;   // begin .. durable commit of one write txn
  metrics::Histogram* batch_mutations = nullptr;  // records written by one write txn
  metrics::Counter* commits = nullptr;
};

namespace {

Result<std::unique_ptr<WriterMetrics>> MakeWriterMetrics(metrics::Registry& registry) {
  auto m = std::make_unique<WriterMetrics>();
  OTD_ASSIGN_OR_RETURN(
      metrics::HistogramFamily * seconds,
      registry.AddHistogram("opentokend_store_commit_duration_seconds",
                            "Duration of one LMDB write transaction, from begin to durable commit.",
                            {}, metrics::RequestSecondsBuckets()));
  OTD_ASSIGN_OR_RETURN(
      metrics::HistogramFamily * size,
      registry.AddHistogram("opentokend_store_batch_mutations",
                            "Mutations (and purged records) committed by one LMDB write "
                            "transaction (group commit batch size).",
                            {}, metrics::PowersOfTwo(4096)));
  OTD_ASSIGN_OR_RETURN(
      metrics::CounterFamily * commits,
      registry.AddCounter("opentokend_store_commits_total", "LMDB write transactions committed."));
  m->commit_seconds = &seconds->Get();
  m->batch_mutations = &size->Get();
  m->commits = &commits->Get();
  return m;
}

}  // namespace

Writer::Writer(const Env& env) : env_(env) {}

Result<std::unique_ptr<Writer>> Writer::Start(const Env& env) {
  std::unique_ptr<Writer> w(new Writer(env));
  if (env.options().metrics != nullptr) {
    OTD_ASSIGN_OR_RETURN(w->metrics_, MakeWriterMetrics(*env.options().metrics));
  }
  w->thread_ = std::thread([raw = w.get()] { raw->Loop(); });
  return w;
}

Writer::~Writer() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    // Destroying the store from one of its own ApplyAsync callbacks is a caller bug.
    assert(!OnWriterThread());
    thread_.join();
  }
}

// ---------------------------------------------------------------------------------------------
// Callers: validate, enqueue.

Status Writer::Prepare(Request& r) const {
  r.dbis.reserve(r.batch.size());
  for (size_t i = 0; i < r.batch.size(); ++i) {
    const Mutation& m = r.batch[i];
    OTD_ASSIGN_OR_RETURN(MDB_dbi dbi, env_.TableDbi(m.table));
    OTD_RETURN_IF_ERROR(env_.CheckKey(m.key));
    if (m.expires_at < 0) {
      return InvalidArgument("store expires_at is negative");
    }
    if (m.expires_at > 0 && TtlKeySize(m.table, m.key.size()) > env_.max_key()) {
      return InvalidArgument("store key too long for a record with expiry");
    }
    if (m.op == Op::kInsert && m.expect.has_value()) {
      return InvalidArgument("store kInsert cannot carry an expected value");
    }
    if (m.op == Op::kMove) {
      OTD_RETURN_IF_ERROR(env_.CheckKey(m.new_key));
      if (m.new_key == m.key) {
        return InvalidArgument("store kMove to the same key");
      }
    }
    r.dbis.push_back(dbi);
  }
  r.cost = std::max<size_t>(1, r.batch.size());
  return Status::Ok();
}

void Writer::Enqueue(std::unique_ptr<Request> r) {
  {
    std::unique_lock lk(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(r));
      lk.unlock();
      cv_.notify_one();
      return;
    }
  }
  if (r->done) {
    r->done(Unavailable("store is closing"), 0);
  }
}

Status Writer::Apply(std::vector<Mutation> batch) {
  if (OnWriterThread()) {
    return Internal("store Apply called from the store writer thread (would deadlock)");
  }
  if (batch.empty()) {
    return Status::Ok();
  }
  auto r = std::make_unique<Request>();
  r->batch = std::move(batch);
  OTD_RETURN_IF_ERROR(Prepare(*r));
  if (env_.panicked()) {
    return env_.Fail(MDB_PANIC, "apply");
  }
  std::promise<Status> promise;
  std::future<Status> result = promise.get_future();
  r->done = [&promise](Status s, size_t) { promise.set_value(std::move(s)); };
  Enqueue(std::move(r));
  return result.get();
}

void Writer::ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) {
  auto r = std::make_unique<Request>();
  r->batch = std::move(batch);
  if (done) {
    r->done = [done = std::move(done)](Status s, size_t) { done(std::move(s)); };
  }
  if (Status s = Prepare(*r); !s.ok()) {
    r->result = std::move(s);
    r->skip = true;
  } else if (r->batch.empty()) {
    r->skip = true;  // Ok, nothing to write
  }
  Enqueue(std::move(r));
}

Result<size_t> Writer::PurgeExpired(int64_t now, size_t max) {
  if (OnWriterThread()) {
    return Internal("store PurgeExpired called from the store writer thread (would deadlock)");
  }
  if (max == 0 || now <= 0) {
    return size_t{0};
  }
  auto r = std::make_unique<Request>();
  r->kind = Request::Kind::kPurge;
  r->purge_now = now;
  r->purge_max = max;
  r->cost = std::min(max, env_.options().max_batch_mutations);
  std::promise<std::pair<Status, size_t>> promise;
  auto result = promise.get_future();
  r->done = [&promise](Status s, size_t n) { promise.set_value({std::move(s), n}); };
  Enqueue(std::move(r));
  auto [status, count] = result.get();
  if (!status.ok()) {
    return status;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// The writer thread.

void Writer::Loop() {
  for (;;) {
    std::vector<std::unique_ptr<Request>> group;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stopping, and everything queued has been written
      }
      // Take everything queued, up to the mutation cap (always at least one request).
      size_t cost = 0;
      while (!queue_.empty()) {
        size_t c = queue_.front()->cost;
        if (!group.empty() && cost + c > env_.options().max_batch_mutations) {
          break;
        }
        cost += c;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    RunGroup(group);
    for (auto& r : group) {
      if (r->done) {
        r->done(std::move(r->result), r->purged);
      }
    }
  }
}

void Writer::RunGroup(std::vector<std::unique_ptr<Request>>& group) {
  std::vector<Request*> work;
  for (auto& r : group) {
    if (r->skip) {
      continue;
    }
    if (env_.panicked()) {
      r->result = env_.Fail(MDB_PANIC, "write");
      continue;
    }
    work.push_back(r.get());
  }
  if (work.empty()) {
    return;
  }
  // One request: no need for a nested transaction. Otherwise try the group commit, and fall back
  // to one transaction per request when the shared parent transaction became unusable.
  if (work.size() == 1) {
    RunEach(work);
  } else if (auto why = RunNested(work)) {
    if (env_.log() != nullptr) {
      env_.log()->Log(LogLevel::kDebug, "store_group_split",
                      {{"batches", static_cast<uint64_t>(work.size())}, {"reason", *why}});
    }
    RunEach(work);
  }
}

// Returns why, when nothing of the group was committed and every request must be re-run in its
// own transaction (results are then overwritten, so no caller sees a result that depended on an
// aborted sibling); nullopt when every request has its final result.
std::optional<std::string_view> Writer::RunNested(const std::vector<Request*>& work) {
  const auto began = std::chrono::steady_clock::now();
  MDB_env* env = env_.get();
  Txn parent;
  int rc = Txn::Begin(env, nullptr, 0, &parent);
  if (rc != 0) {
    FailAll(work, rc, "begin write transaction");
    return std::nullopt;
  }
  for (Request* r : work) {
    Txn child;
    rc = Txn::Begin(env, parent.get(), 0, &child);
    if (rc == MDB_PANIC) {
      FailAll(work, rc, "begin nested transaction");
      return std::nullopt;
    }
    if (rc != 0) {
      return "begin nested transaction";  // the parent is unusable (MDB_BAD_TXN) or no memory
    }
    int op_rc = 0;
    r->purged = 0;
    r->result = Execute(child.get(), *r, &op_rc);
    if (r->result.ok()) {
      // Merging into the parent; a failure here may mark the parent unusable.
      if ((rc = child.Commit()) != 0) {
        if (rc == MDB_PANIC) {
          FailAll(work, rc, "commit nested transaction");
          return std::nullopt;
        }
        return "commit nested transaction";
      }
      continue;
    }
    child.Abort();  // only this request's changes are dropped
    if (op_rc == MDB_PANIC) {
      FailAll(work, op_rc, "write");
      return std::nullopt;
    }
    if (op_rc != 0) {
      // An LMDB error (e.g. MDB_MAP_FULL) inside the child. Aborting the child restores the
      // parent, but check that LMDB did not flag the parent too before going on.
      Txn probe;
      if (Txn::Begin(env, parent.get(), 0, &probe) != 0) {
        return "parent unusable after a failed batch";
      }
      probe.Abort();
    }
  }
  rc = parent.Commit();
  if (rc == 0) {
    MarkCommitted(work, began);
    return std::nullopt;
  }
  if (IsSpaceError(rc)) {
    // The commit itself needed pages (free list) the map no longer has: nothing was written;
    // each request alone may still fit.
    return "commit out of space";
  }
  FailAll(work, rc, "commit");
  return std::nullopt;
}

void Writer::RunEach(const std::vector<Request*>& work) {
  MDB_env* env = env_.get();
  for (Request* r : work) {
    r->purged = 0;
    if (env_.panicked()) {
      r->result = env_.Fail(MDB_PANIC, "write");
      continue;
    }
    const auto began = std::chrono::steady_clock::now();
    Txn txn;
    int rc = Txn::Begin(env, nullptr, 0, &txn);
    if (rc != 0) {
      r->result = env_.Fail(rc, "begin write transaction");
      continue;
    }
    int op_rc = 0;
    r->result = Execute(txn.get(), *r, &op_rc);
    if (!r->result.ok()) {
      continue;  // txn aborts
    }
    if ((rc = txn.Commit()) != 0) {
      r->result = env_.Fail(rc, "commit");
      r->purged = 0;
      continue;
    }
    MarkCommitted({r}, began);
  }
}

void Writer::MarkCommitted(const std::vector<Request*>& work,
                           std::chrono::steady_clock::time_point began) {
  commits_.fetch_add(1, std::memory_order_relaxed);
  uint64_t n = 0;
  uint64_t mutations = 0;
  for (const Request* r : work) {
    if (r->kind == Request::Kind::kBatch && r->result.ok()) {
      ++n;
      mutations += r->batch.size();
    } else if (r->kind == Request::Kind::kPurge && r->result.ok()) {
      mutations += r->purged;
    }
  }
  batches_.fetch_add(n, std::memory_order_relaxed);
  if (metrics_) {
    metrics_->commits->Inc();
    metrics_->commit_seconds->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    metrics_->batch_mutations->Observe(static_cast<double>(mutations));
  }
}

void Writer::FailAll(const std::vector<Request*>& work, int rc, std::string_view what) {
  Status s = env_.Fail(rc, what);
  for (Request* r : work) {
    r->result = s;
    r->purged = 0;
  }
}

Status Writer::Execute(MDB_txn* txn, Request& r, int* rc) {
  *rc = 0;
  if (r.kind == Request::Kind::kPurge) {
    return internal::PurgeExpired(env_, txn, r.purge_now, r.purge_max, &r.purged, rc);
  }
  for (size_t i = 0; i < r.batch.size(); ++i) {
    OTD_RETURN_IF_ERROR(ApplyMutation(env_, txn, r.batch[i], r.dbis[i], i, rc));
  }
  return Status::Ok();
}

}  // namespace otd::store::internal
