#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "common/log.h"
#include "common/metrics.h"
#include "store/internal/lmdb_handles.h"
#include "store/internal/store_test_peer.h"
#include "store/internal/ttl_keys.h"

namespace otd::store {

using internal::Cursor;
using internal::EnvPtr;
using internal::IsSpaceError;
using internal::LmdbError;
using internal::Txn;
using internal::Val;

namespace {

// B.3: none of these may be set on the vault's environment.
constexpr unsigned kUnsafeEnvFlags =
    MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP | MDB_MAPASYNC | MDB_NOMEMINIT | MDB_NOLOCK;

// MDB_NOTLS: read transactions are not bound to the OS thread's reader slot. Needed because
// (a) ForEach() callbacks may call Get()/GetStats()/CopyTo() on the same thread while ForEach's
// read transaction is open (without NOTLS the second begin fails with MDB_BAD_RSLOT), and (b)
// callers run on an Asio thread pool. The cost is one reader-table mutex round trip per read
// transaction. Writes are serialised by our single writer thread, as NOTLS requires.
constexpr unsigned kEnvFlags = MDB_NOTLS;

// LMDB caveat (lmdb.h): never open the same environment twice in one process; closing the second
// handle drops the first one's fcntl locks. Keyed by the directory's (device, inode). This is
// process-wide state forced on us by the C library, so it lives here and nowhere else.
struct OpenEnvRegistry {
  std::mutex mu;
  std::set<std::pair<dev_t, ino_t>> open;
};
OpenEnvRegistry& Registry() {
  static OpenEnvRegistry r;
  return r;
}

std::string Errno(int e) { return std::strerror(e); }

// False at most once per 10 s for each `last`: a failing store under load would otherwise flood
// the journal with one line per request.
bool RateLimited(std::atomic<int64_t>& last) {
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t prev = last.load(std::memory_order_relaxed);
  return now - prev < 10 || !last.compare_exchange_strong(prev, now);
}

ByteView View(const MDB_val& v) { return {static_cast<const uint8_t*>(v.mv_data), v.mv_size}; }

bool Equal(const MDB_val& v, const Bytes& b) {
  return v.mv_size == b.size() && (b.empty() || std::memcmp(v.mv_data, b.data(), b.size()) == 0);
}

// Creates `path` and any missing parents with mode 0700 (an existing directory is left as is).
Status EnsureDirectory(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return InvalidArgument("store path exists and is not a directory: " + path);
    }
    return Status::Ok();
  }
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') {
      continue;
    }
    std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return Unavailable("cannot create store directory " + prefix + ": " + Errno(errno));
    }
  }
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Unavailable("store directory " + path + " is not usable");
  }
  return Status::Ok();
}

Status FsyncPath(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return Unavailable("cannot open " + path + " for fsync: " + Errno(errno));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return Unavailable("fsync " + path + " failed: " + Errno(err));
  }
  return Status::Ok();
}

// One queued unit of writer work: an Apply() batch or a PurgeExpired() call.
struct Request {
  enum class Kind { kBatch, kPurge };
  Kind kind = Kind::kBatch;
  std::vector<Mutation> batch;
  std::vector<MDB_dbi> dbis;  // parallel to `batch`
  int64_t purge_now = 0;
  size_t purge_max = 0;
  size_t cost = 1;      // counts against Options::max_batch_mutations
  bool skip = false;    // `result` is already final (validation failed, or nothing to do)
  std::function<void(Status, size_t)> done;
  Status result;
  size_t purged = 0;
};

// Options::metrics handles, resolved at open.
struct StoreMetrics {
  metrics::Histogram* commit_seconds = nullptr;   // begin .. durable commit of one write txn
  metrics::Histogram* batch_mutations = nullptr;  // records written by one write txn
  metrics::Counter* commits = nullptr;
};

Result<StoreMetrics> MakeStoreMetrics(metrics::Registry& registry) {
  StoreMetrics m;
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
  OTD_ASSIGN_OR_RETURN(metrics::CounterFamily * commits,
                       registry.AddCounter("opentokend_store_commits_total",
                                           "LMDB write transactions committed."));
  m.commit_seconds = &seconds->Get();
  m.batch_mutations = &size->Get();
  m.commits = &commits->Get();
  return m;
}

}  // namespace

class Store::Impl {
 public:
  Impl(Options options, Logger* log) : options_(std::move(options)), log_(log) {}
  ~Impl();

  Status Init();

  Result<std::optional<Bytes>> Get(std::string_view table, ByteView key) const;
  Result<int64_t> ExpiryOf(std::string_view table, ByteView key) const;
  Status Apply(std::vector<Mutation> batch);
  void ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done);
  Result<size_t> PurgeExpired(int64_t now, size_t max);
  Status ForEach(std::string_view table,
                 const std::function<bool(ByteView, ByteView)>& fn) const;
  Result<Stats> GetStats() const;
  Status Health() const;
  Status CopyTo(const std::string& dir) const;
  void SetPanicHandler(std::function<void()> fn);
  MDB_env* env() const { return env_.get(); }

 private:
  // Validation done on the caller's thread; the result is final when !ok().
  Status Prepare(Request& r) const;
  Result<MDB_dbi> TableDbi(std::string_view table) const;
  Status CheckKey(ByteView key) const;
  bool OnWriterThread() const { return std::this_thread::get_id() == writer_.get_id(); }
  void Enqueue(std::unique_ptr<Request> r);

  void WriterLoop();
  void RunGroup(std::vector<std::unique_ptr<Request>>& group);
  std::optional<std::string_view> RunNested(const std::vector<Request*>& work);
  void RunEach(const std::vector<Request*>& work);
  // Applies one request inside `txn`. On an LMDB failure sets *rc (the transaction must then be
  // aborted); semantic failures (kAlreadyExists, kFailedPrecondition) leave *rc == 0.
  Status Execute(MDB_txn* txn, Request& r, int* rc);
  Status ApplyMutation(MDB_txn* txn, const Mutation& m, MDB_dbi dbi, size_t index, int* rc);
  Status UpdateTtl(MDB_txn* txn, const Mutation& m, bool removed, int* rc);
  Status MoveRecord(MDB_txn* txn, const Mutation& m, MDB_dbi dbi, MDB_val current, int* rc);
  Status Purge(MDB_txn* txn, int64_t now, size_t max, size_t* purged, int* rc);
  // LmdbError plus MDB_PANIC bookkeeping.
  Status Fail(int rc, std::string_view what) const;
  void MarkPanicked() const;
  void FailAll(const std::vector<Request*>& work, int rc, std::string_view what);
  // Counts one committed write transaction holding `work`, begun at `began`.
  void MarkCommitted(const std::vector<Request*>& work,
                     std::chrono::steady_clock::time_point began);

  const Options options_;
  Logger* const log_;
  EnvPtr env_;
  std::map<std::string, MDB_dbi, std::less<>> dbis_;  // user tables; immutable after Init()
  MDB_dbi ttl_dbi_ = 0;
  MDB_dbi ttl_rev_dbi_ = 0;
  size_t max_key_ = 0;
  uint64_t map_size_ = 0;
  std::optional<std::pair<dev_t, ino_t>> registered_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Request>> queue_;  // guarded by mu_
  bool stopping_ = false;                       // guarded by mu_
  std::thread writer_;

  mutable std::atomic<bool> panicked_{false};
  mutable std::mutex panic_mu_;
  std::function<void()> on_panic_;  // guarded by panic_mu_
  mutable std::atomic<int64_t> last_map_full_log_{-1000};
  mutable std::atomic<int64_t> last_io_error_log_{-1000};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> batches_{0};
  std::optional<StoreMetrics> metrics_;  // immutable after Init()
};

// ---------------------------------------------------------------------------------------------
// Open / close

Status Store::Impl::Init() {
  if (options_.path.empty()) {
    return InvalidArgument("store path is empty");
  }
  if (options_.map_size_bytes == 0 || options_.max_readers == 0 ||
      options_.max_batch_mutations == 0) {
    return InvalidArgument("store map_size, max_readers and max_batch_mutations must be > 0");
  }
  std::set<std::string_view> seen;
  for (const std::string& t : options_.tables) {
    if (t.empty() || t.size() > internal::kMaxTableNameBytes ||
        t.find('\0') != std::string::npos) {
      return InvalidArgument("store table name must be 1-255 bytes without NUL");
    }
    if (t.rfind("__", 0) == 0) {
      return InvalidArgument("store table names starting with \"__\" are reserved: " + t);
    }
    if (!seen.insert(t).second) {
      return InvalidArgument("store table listed twice: " + t);
    }
  }
  if (options_.metrics != nullptr) {
    OTD_ASSIGN_OR_RETURN(metrics_, MakeStoreMetrics(*options_.metrics));
  }

  OTD_RETURN_IF_ERROR(EnsureDirectory(options_.path));
  struct stat st {};
  if (::stat(options_.path.c_str(), &st) != 0) {
    return Unavailable("cannot stat store directory: " + Errno(errno));
  }
  if ((st.st_mode & 077) != 0 && log_ != nullptr) {
    log_->Warn("store_directory_permissive",
               {{"path", options_.path}, {"mode", static_cast<unsigned>(st.st_mode & 0777)}});
  }
  {
    std::lock_guard lk(Registry().mu);
    if (!Registry().open.insert({st.st_dev, st.st_ino}).second) {
      return FailedPrecondition("store environment already open in this process: " +
                                options_.path);
    }
    registered_ = std::make_pair(st.st_dev, st.st_ino);
  }

  MDB_env* raw = nullptr;
  int rc = mdb_env_create(&raw);
  if (rc != 0) {
    return LmdbError(rc, "env create", options_.map_size_bytes);
  }
  env_.reset(raw);
  if ((rc = mdb_env_set_mapsize(env_.get(), options_.map_size_bytes)) != 0 ||
      (rc = mdb_env_set_maxreaders(env_.get(), options_.max_readers)) != 0 ||
      (rc = mdb_env_set_maxdbs(env_.get(),
                               static_cast<MDB_dbi>(options_.tables.size() + 2))) != 0) {
    return LmdbError(rc, "env configure", options_.map_size_bytes);
  }
  if ((rc = mdb_env_open(env_.get(), options_.path.c_str(), kEnvFlags, 0600)) != 0) {
    return LmdbError(rc, "env open " + options_.path, options_.map_size_bytes);
  }

  unsigned flags = 0;
  if ((rc = mdb_env_get_flags(env_.get(), &flags)) != 0) {
    return LmdbError(rc, "env get flags", options_.map_size_bytes);
  }
  if ((flags & kUnsafeEnvFlags) != 0) {
    return Internal("store environment has unsafe durability flags set");
  }

  int dead = 0;
  if ((rc = mdb_reader_check(env_.get(), &dead)) != 0) {
    return LmdbError(rc, "reader check", options_.map_size_bytes);
  }
  if (dead > 0 && log_ != nullptr) {
    log_->Warn("store_stale_readers_cleared", {{"count", dead}});
  }

  max_key_ = static_cast<size_t>(mdb_env_get_maxkeysize(env_.get()));
  MDB_envinfo info{};
  mdb_env_info(env_.get(), &info);
  map_size_ = info.me_mapsize;

  {
    Txn txn;
    if ((rc = Txn::Begin(env_.get(), nullptr, 0, &txn)) != 0) {
      return LmdbError(rc, "begin open-tables transaction", map_size_);
    }
    auto open_one = [&](const std::string& name, MDB_dbi* dbi) {
      return mdb_dbi_open(txn.get(), name.c_str(), MDB_CREATE, dbi);
    };
    for (const std::string& t : options_.tables) {
      MDB_dbi dbi = 0;
      if ((rc = open_one(t, &dbi)) != 0) {
        return LmdbError(rc, "open table " + t, map_size_);
      }
      dbis_.emplace(t, dbi);
    }
    if ((rc = open_one(std::string(internal::kTtlTable), &ttl_dbi_)) != 0 ||
        (rc = open_one(std::string(internal::kTtlRevTable), &ttl_rev_dbi_)) != 0) {
      return LmdbError(rc, "open TTL tables", map_size_);
    }
    if ((rc = txn.Commit()) != 0) {
      return LmdbError(rc, "commit open-tables transaction", map_size_);
    }
  }

  writer_ = std::thread([this] { WriterLoop(); });
  if (log_ != nullptr) {
    log_->Info("store_opened", {{"path", options_.path},
                                {"map_size", map_size_},
                                {"tables", static_cast<uint64_t>(dbis_.size())},
                                {"max_readers", options_.max_readers}});
  }
  return Status::Ok();
}

Store::Impl::~Impl() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) {
    // Destroying the store from one of its own ApplyAsync callbacks is a caller bug.
    assert(!OnWriterThread());
    writer_.join();
  }
  env_.reset();  // closes the dbis and the environment; all transactions have ended
  if (registered_) {
    std::lock_guard lk(Registry().mu);
    Registry().open.erase(*registered_);
  }
}

// ---------------------------------------------------------------------------------------------
// Validation

Result<MDB_dbi> Store::Impl::TableDbi(std::string_view table) const {
  auto it = dbis_.find(table);
  if (it == dbis_.end()) {
    return InvalidArgument("unknown store table: " + std::string(table));
  }
  return it->second;
}

Status Store::Impl::CheckKey(ByteView key) const {
  if (key.empty()) {
    return InvalidArgument("store key is empty");
  }
  if (key.size() > max_key_) {
    return InvalidArgument("store key longer than " + std::to_string(max_key_) + " bytes");
  }
  return Status::Ok();
}

Status Store::Impl::Prepare(Request& r) const {
  r.dbis.reserve(r.batch.size());
  for (size_t i = 0; i < r.batch.size(); ++i) {
    const Mutation& m = r.batch[i];
    OTD_ASSIGN_OR_RETURN(MDB_dbi dbi, TableDbi(m.table));
    OTD_RETURN_IF_ERROR(CheckKey(m.key));
    if (m.expires_at < 0) {
      return InvalidArgument("store expires_at is negative");
    }
    if (m.expires_at > 0 && internal::TtlKeySize(m.table, m.key.size()) > max_key_) {
      return InvalidArgument("store key too long for a record with expiry");
    }
    if (m.op == Op::kInsert && m.expect.has_value()) {
      return InvalidArgument("store kInsert cannot carry an expected value");
    }
    if (m.op == Op::kMove) {
      OTD_RETURN_IF_ERROR(CheckKey(m.new_key));
      if (m.new_key == m.key) {
        return InvalidArgument("store kMove to the same key");
      }
    }
    r.dbis.push_back(dbi);
  }
  r.cost = std::max<size_t>(1, r.batch.size());
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Writes: callers enqueue, the writer thread groups.

void Store::Impl::Enqueue(std::unique_ptr<Request> r) {
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

Status Store::Impl::Apply(std::vector<Mutation> batch) {
  if (OnWriterThread()) {
    return Internal("store Apply called from the store writer thread (would deadlock)");
  }
  if (batch.empty()) {
    return Status::Ok();
  }
  auto r = std::make_unique<Request>();
  r->batch = std::move(batch);
  OTD_RETURN_IF_ERROR(Prepare(*r));
  if (panicked_.load()) {
    return Fail(MDB_PANIC, "apply");
  }
  std::promise<Status> promise;
  std::future<Status> result = promise.get_future();
  r->done = [&promise](Status s, size_t) { promise.set_value(std::move(s)); };
  Enqueue(std::move(r));
  return result.get();
}

void Store::Impl::ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) {
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

Result<size_t> Store::Impl::PurgeExpired(int64_t now, size_t max) {
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
  r->cost = std::min(max, options_.max_batch_mutations);
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

void Store::Impl::WriterLoop() {
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
        if (!group.empty() && cost + c > options_.max_batch_mutations) {
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

void Store::Impl::RunGroup(std::vector<std::unique_ptr<Request>>& group) {
  std::vector<Request*> work;
  for (auto& r : group) {
    if (r->skip) {
      continue;
    }
    if (panicked_.load()) {
      r->result = Fail(MDB_PANIC, "write");
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
    if (log_ != nullptr) {
      log_->Log(LogLevel::kDebug, "store_group_split",
                {{"batches", static_cast<uint64_t>(work.size())}, {"reason", *why}});
    }
    RunEach(work);
  }
}

// Returns why, when nothing of the group was committed and every request must be re-run in its
// own transaction (results are then overwritten, so no caller sees a result that depended on an
// aborted sibling); nullopt when every request has its final result.
std::optional<std::string_view> Store::Impl::RunNested(const std::vector<Request*>& work) {
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

void Store::Impl::RunEach(const std::vector<Request*>& work) {
  MDB_env* env = env_.get();
  for (Request* r : work) {
    r->purged = 0;
    if (panicked_.load()) {
      r->result = Fail(MDB_PANIC, "write");
      continue;
    }
    const auto began = std::chrono::steady_clock::now();
    Txn txn;
    int rc = Txn::Begin(env, nullptr, 0, &txn);
    if (rc != 0) {
      r->result = Fail(rc, "begin write transaction");
      continue;
    }
    int op_rc = 0;
    r->result = Execute(txn.get(), *r, &op_rc);
    if (!r->result.ok()) {
      continue;  // txn aborts
    }
    if ((rc = txn.Commit()) != 0) {
      r->result = Fail(rc, "commit");
      r->purged = 0;
      continue;
    }
    MarkCommitted({r}, began);
  }
}

void Store::Impl::MarkCommitted(const std::vector<Request*>& work,
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

void Store::Impl::MarkPanicked() const {
  if (panicked_.exchange(true)) {
    return;
  }
  if (log_ != nullptr) {
    log_->Error("store_panic", {{"path", options_.path}});
  }
  std::function<void()> fn;
  {
    std::lock_guard lk(panic_mu_);
    fn = on_panic_;
  }
  if (fn) {
    fn();
  }
}

void Store::Impl::SetPanicHandler(std::function<void()> fn) {
  std::lock_guard lk(panic_mu_);
  on_panic_ = std::move(fn);
}

Status Store::Impl::Fail(int rc, std::string_view what) const {
  if (rc == MDB_MAP_FULL && log_ != nullptr && !RateLimited(last_map_full_log_)) {
    log_->Warn("store_map_full", {{"map_size", map_size_}});
  }
  // LMDB passes the operating system's errno through (its own codes are negative): the file
  // system refused a write or a sync (ENOSPC, EROFS, EPERM, EIO, ...). The client only gets a
  // generic 503; the operator needs the reason, and the free space, here.
  if (rc > 0 && log_ != nullptr && !RateLimited(last_io_error_log_)) {
    struct statvfs vfs {};
    const int64_t free_bytes =
        ::statvfs(options_.path.c_str(), &vfs) == 0
            ? static_cast<int64_t>(static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize)
            : -1;
    log_->Error("store_io_error", {{"path", options_.path},
                                   {"during", what},
                                   {"error", Errno(rc)},
                                   {"free_bytes", free_bytes}});
  }
  if (rc > 0 && !panicked_.load()) {
    // If the I/O error hit a commit's meta page write, LMDB has marked the environment unusable
    // (MDB_FATAL_ERROR) but only tells the next transaction: ask now, so that Health() and the
    // panic handler know at once rather than at the next request.
    Txn probe;
    if (Txn::Begin(env_.get(), nullptr, MDB_RDONLY, &probe) == MDB_PANIC) {
      MarkPanicked();
    }
  }
  if (rc == MDB_PANIC) {
    MarkPanicked();
  }
  return LmdbError(rc, what, map_size_);
}

void Store::Impl::FailAll(const std::vector<Request*>& work, int rc, std::string_view what) {
  Status s = Fail(rc, what);
  for (Request* r : work) {
    r->result = s;
    r->purged = 0;
  }
}

Status Store::Impl::Execute(MDB_txn* txn, Request& r, int* rc) {
  *rc = 0;
  if (r.kind == Request::Kind::kPurge) {
    return Purge(txn, r.purge_now, r.purge_max, &r.purged, rc);
  }
  for (size_t i = 0; i < r.batch.size(); ++i) {
    OTD_RETURN_IF_ERROR(ApplyMutation(txn, r.batch[i], r.dbis[i], i, rc));
  }
  return Status::Ok();
}

Status Store::Impl::ApplyMutation(MDB_txn* txn, const Mutation& m, MDB_dbi dbi, size_t index,
                                  int* rc) {
  auto where = [&](const char* what) {
    return "store mutation " + std::to_string(index) + " (table " + m.table + "): " + what;
  };
  MDB_val key = Val(m.key.data(), m.key.size());
  MDB_val current{};
  int r = mdb_get(txn, dbi, &key, &current);
  if (r != 0 && r != MDB_NOTFOUND) {
    *rc = r;
    return Fail(r, "read");
  }
  const bool exists = (r == 0);
  if (m.expect.has_value() && (!exists || !Equal(current, *m.expect))) {
    return FailedPrecondition(where("current value does not match the expected value"));
  }
  if (m.op == Op::kMove) {
    if (!exists) {
      return FailedPrecondition(where("move of a missing key"));
    }
    return MoveRecord(txn, m, dbi, current, rc);
  }
  bool remove = false;
  switch (m.op) {
    case Op::kMove:
      break;  // handled above
    case Op::kInsert:
      if (exists) {
        return AlreadyExists(where("key already exists"));
      }
      break;
    case Op::kPut:
      break;
    case Op::kUpdate:
      if (!exists) {
        return FailedPrecondition(where("update of a missing key"));
      }
      break;
    case Op::kDelete:
      if (!exists) {
        return FailedPrecondition(where("delete of a missing key"));
      }
      remove = true;
      break;
    case Op::kErase:
      if (!exists) {
        return Status::Ok();
      }
      remove = true;
      break;
  }
  if (remove) {
    r = mdb_del(txn, dbi, &key, nullptr);
  } else {
    MDB_val value = Val(m.value.data(), m.value.size());
    r = mdb_put(txn, dbi, &key, &value, 0);
  }
  if (r != 0) {
    *rc = r;
    return Fail(r, remove ? "delete" : "put");
  }
  if (m.keep_expiry && !remove) {
    return Status::Ok();
  }
  return UpdateTtl(txn, m, remove, rc);
}

Status Store::Impl::MoveRecord(MDB_txn* txn, const Mutation& m, MDB_dbi dbi, MDB_val current,
                               int* rc) {
  // The record's expiry, from the reverse TTL index (0: none).
  int64_t expires_at = 0;
  if (internal::TtlRevKeySize(m.table, m.key.size()) <= max_key_) {
    Bytes rev = internal::EncodeTtlRevKey(m.table, m.key);
    MDB_val rev_key = Val(rev.data(), rev.size());
    MDB_val when{};
    int r = mdb_get(txn, ttl_rev_dbi_, &rev_key, &when);
    if (r != 0 && r != MDB_NOTFOUND) {
      *rc = r;
      return Fail(r, "read TTL index");
    }
    if (r == 0) {
      expires_at = static_cast<int64_t>(internal::DecodeU64(View(when)).value_or(0));
    }
  }
  if (expires_at > 0 && internal::TtlKeySize(m.table, m.new_key.size()) > max_key_) {
    return InvalidArgument("store key too long for a record with expiry");
  }
  // Copy the value first: the view into the map is not valid across the writes below.
  Bytes value(static_cast<const uint8_t*>(current.mv_data),
              static_cast<const uint8_t*>(current.mv_data) + current.mv_size);
  MDB_val to = Val(m.new_key.data(), m.new_key.size());
  MDB_val v = Val(value.data(), value.size());
  int r = mdb_put(txn, dbi, &to, &v, MDB_NOOVERWRITE);
  if (r == MDB_KEYEXIST) {
    return AlreadyExists("store mutation (table " + m.table + "): move target already exists");
  }
  if (r != 0) {
    *rc = r;
    return Fail(r, "put");
  }
  MDB_val from = Val(m.key.data(), m.key.size());
  if ((r = mdb_del(txn, dbi, &from, nullptr)) != 0) {
    *rc = r;
    return Fail(r, "delete");
  }
  Mutation removed{.op = Op::kErase, .table = m.table, .key = m.key};
  OTD_RETURN_IF_ERROR(UpdateTtl(txn, removed, /*removed=*/true, rc));
  Mutation added{.op = Op::kPut, .table = m.table, .key = m.new_key, .expires_at = expires_at};
  return UpdateTtl(txn, added, /*removed=*/false, rc);
}

Status Store::Impl::UpdateTtl(MDB_txn* txn, const Mutation& m, bool removed, int* rc) {
  const uint64_t want = removed ? 0 : static_cast<uint64_t>(m.expires_at);
  if (internal::TtlRevKeySize(m.table, m.key.size()) > max_key_) {
    return Status::Ok();  // such a key can never have had a TTL entry (Prepare checks)
  }
  Bytes rev = internal::EncodeTtlRevKey(m.table, m.key);
  MDB_val rev_key = Val(rev.data(), rev.size());
  MDB_val old_val{};
  int r = mdb_get(txn, ttl_rev_dbi_, &rev_key, &old_val);
  if (r != 0 && r != MDB_NOTFOUND) {
    *rc = r;
    return Fail(r, "read TTL index");
  }
  std::optional<uint64_t> old;
  if (r == 0) {
    old = internal::DecodeU64(View(old_val));
    if (!old) {
      old = 0;  // malformed: drop it below and rewrite
    }
  }
  if (old.has_value() && *old == want) {
    return Status::Ok();
  }
  if (old.has_value()) {
    Bytes ttl = internal::EncodeTtlKey(*old, m.table, m.key);
    MDB_val ttl_key = Val(ttl.data(), ttl.size());
    r = mdb_del(txn, ttl_dbi_, &ttl_key, nullptr);
    if (r != 0 && r != MDB_NOTFOUND) {
      *rc = r;
      return Fail(r, "update TTL index");
    }
    if (want == 0) {
      r = mdb_del(txn, ttl_rev_dbi_, &rev_key, nullptr);
      if (r != 0) {
        *rc = r;
        return Fail(r, "update TTL index");
      }
    }
  }
  if (want == 0) {
    return Status::Ok();
  }
  Bytes ttl = internal::EncodeTtlKey(want, m.table, m.key);
  Bytes when = internal::EncodeU64(want);
  MDB_val ttl_key = Val(ttl.data(), ttl.size());
  MDB_val empty = Val(nullptr, 0);
  MDB_val when_val = Val(when.data(), when.size());
  if ((r = mdb_put(txn, ttl_dbi_, &ttl_key, &empty, 0)) != 0 ||
      (r = mdb_put(txn, ttl_rev_dbi_, &rev_key, &when_val, 0)) != 0) {
    *rc = r;
    return Fail(r, "update TTL index");
  }
  return Status::Ok();
}

Status Store::Impl::Purge(MDB_txn* txn, int64_t now, size_t max, size_t* purged, int* rc) {
  *purged = 0;
  Cursor cursor;
  int r = Cursor::Open(txn, ttl_dbi_, &cursor);
  if (r != 0) {
    *rc = r;
    return Fail(r, "open TTL cursor");
  }
  size_t visited = 0;
  while (visited < max) {
    MDB_val k{};
    MDB_val v{};
    // The first entry is always the next candidate: each visited entry is deleted.
    r = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST);
    if (r == MDB_NOTFOUND) {
      break;
    }
    if (r != 0) {
      *rc = r;
      return Fail(r, "read TTL index");
    }
    auto entry = internal::DecodeTtlKey(View(k));
    if (entry && entry->expires_at > static_cast<uint64_t>(now)) {
      break;
    }
    ++visited;
    // Copy out before deleting: `k` points into the map.
    std::optional<std::pair<std::string, Bytes>> target;
    uint64_t expires_at = 0;
    if (entry) {
      target.emplace(std::string(entry->table), Bytes(entry->key.begin(), entry->key.end()));
      expires_at = entry->expires_at;
    } else if (log_ != nullptr) {
      log_->Warn("store_ttl_entry_malformed");
    }
    if ((r = mdb_cursor_del(cursor.get(), 0)) != 0) {
      *rc = r;
      return Fail(r, "purge TTL entry");
    }
    if (!target) {
      continue;
    }
    Bytes rev = internal::EncodeTtlRevKey(target->first, target->second);
    MDB_val rev_key = Val(rev.data(), rev.size());
    MDB_val rev_val{};
    r = mdb_get(txn, ttl_rev_dbi_, &rev_key, &rev_val);
    if (r == MDB_NOTFOUND) {
      continue;  // stale entry: the record no longer has this expiry
    }
    if (r != 0) {
      *rc = r;
      return Fail(r, "read TTL index");
    }
    if (internal::DecodeU64(View(rev_val)) != expires_at) {
      continue;  // stale entry: the record was given another expiry
    }
    if ((r = mdb_del(txn, ttl_rev_dbi_, &rev_key, nullptr)) != 0) {
      *rc = r;
      return Fail(r, "purge TTL entry");
    }
    auto dbi = dbis_.find(target->first);
    if (dbi == dbis_.end()) {
      continue;  // a table no longer configured; its records stay where they are
    }
    MDB_val key = Val(target->second.data(), target->second.size());
    r = mdb_del(txn, dbi->second, &key, nullptr);
    if (r == 0) {
      ++*purged;
    } else if (r != MDB_NOTFOUND) {
      *rc = r;
      return Fail(r, "purge record");
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Reads: short read-only transactions; everything is copied out before the transaction ends.

Result<std::optional<Bytes>> Store::Impl::Get(std::string_view table, ByteView key) const {
  OTD_ASSIGN_OR_RETURN(MDB_dbi dbi, TableDbi(table));
  OTD_RETURN_IF_ERROR(CheckKey(key));
  Txn txn;
  int rc = Txn::Begin(env_.get(), nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return Fail(rc, "begin read transaction");
  }
  MDB_val k = Val(key.data(), key.size());
  MDB_val v{};
  rc = mdb_get(txn.get(), dbi, &k, &v);
  if (rc == MDB_NOTFOUND) {
    return std::optional<Bytes>();
  }
  if (rc != 0) {
    return Fail(rc, "read");
  }
  ByteView value = View(v);
  return std::optional<Bytes>(Bytes(value.begin(), value.end()));
}

Result<int64_t> Store::Impl::ExpiryOf(std::string_view table, ByteView key) const {
  OTD_RETURN_IF_ERROR(TableDbi(table).status());
  OTD_RETURN_IF_ERROR(CheckKey(key));
  if (internal::TtlRevKeySize(table, key.size()) > max_key_) {
    return int64_t{0};  // such a key can never have an expiry
  }
  Txn txn;
  int rc = Txn::Begin(env_.get(), nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return Fail(rc, "begin read transaction");
  }
  Bytes rev = internal::EncodeTtlRevKey(table, key);
  MDB_val k = Val(rev.data(), rev.size());
  MDB_val v{};
  rc = mdb_get(txn.get(), ttl_rev_dbi_, &k, &v);
  if (rc == MDB_NOTFOUND) {
    return int64_t{0};
  }
  if (rc != 0) {
    return Fail(rc, "read TTL index");
  }
  return static_cast<int64_t>(internal::DecodeU64(View(v)).value_or(0));
}

Status Store::Impl::ForEach(std::string_view table,
                            const std::function<bool(ByteView, ByteView)>& fn) const {
  OTD_ASSIGN_OR_RETURN(MDB_dbi dbi, TableDbi(table));
  Txn txn;
  int rc = Txn::Begin(env_.get(), nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return Fail(rc, "begin read transaction");
  }
  Cursor cursor;  // declared after txn: closed first
  if ((rc = Cursor::Open(txn.get(), dbi, &cursor)) != 0) {
    return Fail(rc, "open cursor");
  }
  MDB_val k{};
  MDB_val v{};
  for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
    if (!fn(View(k), View(v))) {
      return Status::Ok();
    }
  }
  if (rc != MDB_NOTFOUND) {
    return Fail(rc, "iterate");
  }
  return Status::Ok();
}

Result<Stats> Store::Impl::GetStats() const {
  Txn txn;
  int rc = Txn::Begin(env_.get(), nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return Fail(rc, "begin read transaction");
  }
  Stats out;
  auto table_stats = [&](MDB_dbi dbi, TableStats* ts) {
    MDB_stat st{};
    int r = mdb_stat(txn.get(), dbi, &st);
    if (r == 0) {
      ts->entries = st.ms_entries;
      ts->bytes = static_cast<uint64_t>(st.ms_branch_pages + st.ms_leaf_pages +
                                        st.ms_overflow_pages) *
                  st.ms_psize;
    }
    return r;
  };
  for (const auto& [name, dbi] : dbis_) {
    if ((rc = table_stats(dbi, &out.tables[name])) != 0) {
      return Fail(rc, "stat table");
    }
  }
  TableStats ttl;
  if ((rc = table_stats(ttl_dbi_, &ttl)) != 0) {
    return Fail(rc, "stat TTL index");
  }
  out.ttl_entries = ttl.entries;
  MDB_envinfo info{};
  MDB_stat env_stat{};
  if ((rc = mdb_env_info(env_.get(), &info)) != 0 ||
      (rc = mdb_env_stat(env_.get(), &env_stat)) != 0) {
    return Fail(rc, "env info");
  }
  out.map_size = info.me_mapsize;
  out.used_bytes = static_cast<uint64_t>(info.me_last_pgno + 1) * env_stat.ms_psize;
  // The free list is LMDB's table 0: one record per transaction that freed pages, each an array
  // of page numbers whose first element is its length (what `mdb_stat -f` adds up).
  {
    Cursor cursor;  // declared after txn: closed first
    if ((rc = Cursor::Open(txn.get(), 0, &cursor)) != 0) {
      return Fail(rc, "open free list");
    }
    uint64_t free_pages = 0;
    MDB_val k{};
    MDB_val v{};
    for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
      if (v.mv_size >= sizeof(size_t)) {
        size_t n = 0;
        std::memcpy(&n, v.mv_data, sizeof(n));
        free_pages += n;
      }
    }
    if (rc != MDB_NOTFOUND) {
      return Fail(rc, "read free list");
    }
    out.free_bytes = std::min(free_pages * env_stat.ms_psize, out.used_bytes);
  }
  out.commits = commits_.load(std::memory_order_relaxed);
  out.batches = batches_.load(std::memory_order_relaxed);
  return out;
}

Status Store::Impl::Health() const {
  if (panicked_.load()) {
    return Fail(MDB_PANIC, "health check");
  }
  int dead = 0;
  int rc = mdb_reader_check(env_.get(), &dead);
  if (rc != 0) {
    return Fail(rc, "reader check");
  }
  if (dead > 0 && log_ != nullptr) {
    log_->Warn("store_stale_readers_cleared", {{"count", dead}});
  }
  return Status::Ok();
}

Status Store::Impl::CopyTo(const std::string& dir) const {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return InvalidArgument("backup directory cannot be opened: " + dir + ": " + Errno(errno));
  }
  bool empty = true;
  while (const dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  if (!empty) {
    return FailedPrecondition("backup directory is not empty: " + dir);
  }
  int rc = mdb_env_copy2(env_.get(), dir.c_str(), MDB_CP_COMPACT);
  if (rc != 0) {
    return Fail(rc, "copy to " + dir);
  }
  // mdb_env_copy2 writes (O_DIRECT where possible) but does not fsync; make the copy durable.
  OTD_RETURN_IF_ERROR(FsyncPath(dir + "/data.mdb", O_RDONLY));
  return FsyncPath(dir, O_RDONLY | O_DIRECTORY);
}

// ---------------------------------------------------------------------------------------------
// Public wrappers

unsigned internal::StoreTestPeer::EnvFlags(const Store& store) {
  unsigned flags = 0;
  mdb_env_get_flags(store.impl_->env(), &flags);
  return flags;
}

Result<std::unique_ptr<Store>> Store::Open(const Options& options, Logger* log) {
  auto impl = std::make_unique<Impl>(options, log);
  OTD_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::optional<Bytes>> Store::Get(std::string_view table, ByteView key) const {
  return impl_->Get(table, key);
}
Result<int64_t> Store::ExpiryOf(std::string_view table, ByteView key) const {
  return impl_->ExpiryOf(table, key);
}
Status Store::Apply(std::vector<Mutation> batch) { return impl_->Apply(std::move(batch)); }
void Store::ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) {
  impl_->ApplyAsync(std::move(batch), std::move(done));
}
Result<size_t> Store::PurgeExpired(int64_t now, size_t max) {
  return impl_->PurgeExpired(now, max);
}
Status Store::ForEach(std::string_view table,
                      const std::function<bool(ByteView key, ByteView value)>& fn) const {
  return impl_->ForEach(table, fn);
}
Result<Stats> Store::GetStats() const { return impl_->GetStats(); }
Status Store::Health() const { return impl_->Health(); }
Status Store::CopyTo(const std::string& dir) const { return impl_->CopyTo(dir); }
void Store::SetPanicHandler(std::function<void()> fn) { impl_->SetPanicHandler(std::move(fn)); }

}  // namespace otd::store
