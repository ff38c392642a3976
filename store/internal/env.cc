#include "store/internal/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>

#include "common/log.h"
#include "store/internal/ttl.h"

namespace otd::store::internal {

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

}  // namespace

Result<std::unique_ptr<Env>> Env::Open(const LmdbOptions& options, Logger* log) {
  std::unique_ptr<Env> env(new Env(options, log));
  OTD_RETURN_IF_ERROR(env->Init());
  return env;
}

Status Env::Init() {
  if (options_.path.empty()) {
    return InvalidArgument("store path is empty");
  }
  if (options_.map_size_bytes == 0 || options_.max_readers == 0 ||
      options_.max_batch_mutations == 0) {
    return InvalidArgument("store map_size, max_readers and max_batch_mutations must be > 0");
  }
  std::set<std::string_view> seen;
  for (const std::string& t : options_.tables) {
    if (t.empty() || t.size() > kMaxTableNameBytes || t.find('\0') != std::string::npos) {
      return InvalidArgument("store table name must be 1-255 bytes without NUL");
    }
    if (t.rfind("__", 0) == 0) {
      return InvalidArgument("store table names starting with \"__\" are reserved: " + t);
    }
    if (!seen.insert(t).second) {
      return InvalidArgument("store table listed twice: " + t);
    }
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
      return FailedPrecondition("store environment already open in this process: " + options_.path);
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
      (rc = mdb_env_set_maxdbs(env_.get(), static_cast<MDB_dbi>(options_.tables.size() + 2))) !=
          0) {
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
    if ((rc = open_one(std::string(kTtlTable), &ttl_dbi_)) != 0 ||
        (rc = open_one(std::string(kTtlRevTable), &ttl_rev_dbi_)) != 0) {
      return LmdbError(rc, "open TTL tables", map_size_);
    }
    if ((rc = txn.Commit()) != 0) {
      return LmdbError(rc, "commit open-tables transaction", map_size_);
    }
  }

  if (log_ != nullptr) {
    log_->Info("store_opened", {{"path", options_.path},
                                {"map_size", map_size_},
                                {"tables", static_cast<uint64_t>(dbis_.size())},
                                {"max_readers", options_.max_readers}});
  }
  return Status::Ok();
}

Env::~Env() {
  env_.reset();  // closes the dbis and the environment; the writer has stopped
  if (registered_) {
    std::lock_guard lk(Registry().mu);
    Registry().open.erase(*registered_);
  }
}

Result<MDB_dbi> Env::TableDbi(std::string_view table) const {
  auto it = dbis_.find(table);
  if (it == dbis_.end()) {
    return InvalidArgument("unknown store table: " + std::string(table));
  }
  return it->second;
}

std::optional<MDB_dbi> Env::FindDbi(std::string_view table) const {
  auto it = dbis_.find(table);
  if (it == dbis_.end()) {
    return std::nullopt;
  }
  return it->second;
}

Status Env::CheckKey(ByteView key) const {
  if (key.empty()) {
    return InvalidArgument("store key is empty");
  }
  if (key.size() > max_key_) {
    return InvalidArgument("store key longer than " + std::to_string(max_key_) + " bytes");
  }
  return Status::Ok();
}

void Env::MarkPanicked() const {
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

void Env::SetPanicHandler(std::function<void()> fn) {
  std::lock_guard lk(panic_mu_);
  on_panic_ = std::move(fn);
}

Status Env::Fail(int rc, std::string_view what) const {
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

Result<std::optional<Bytes>> Env::Get(std::string_view table, ByteView key) const {
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

Result<std::vector<std::optional<Bytes>>> Env::GetMany(const std::vector<ReadKey>& keys) const {
  if (keys.size() > kMaxGetMany) {
    return InvalidArgument("store: more than " + std::to_string(kMaxGetMany) + " keys in a read");
  }
  std::vector<MDB_dbi> dbis;
  dbis.reserve(keys.size());
  for (const ReadKey& k : keys) {
    OTD_ASSIGN_OR_RETURN(MDB_dbi dbi, TableDbi(k.table));
    OTD_RETURN_IF_ERROR(CheckKey(k.key));
    dbis.push_back(dbi);
  }
  std::vector<std::optional<Bytes>> out(keys.size());
  if (keys.empty()) {
    return out;
  }
  Txn txn;  // one snapshot for every key
  int rc = Txn::Begin(env_.get(), nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return Fail(rc, "begin read transaction");
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    MDB_val k = Val(keys[i].key.data(), keys[i].key.size());
    MDB_val v{};
    rc = mdb_get(txn.get(), dbis[i], &k, &v);
    if (rc == MDB_NOTFOUND) {
      continue;
    }
    if (rc != 0) {
      return Fail(rc, "read");
    }
    ByteView value = View(v);
    out[i] = Bytes(value.begin(), value.end());
  }
  return out;
}

Result<int64_t> Env::ExpiryOf(std::string_view table, ByteView key) const {
  OTD_RETURN_IF_ERROR(TableDbi(table).status());
  OTD_RETURN_IF_ERROR(CheckKey(key));
  if (TtlRevKeySize(table, key.size()) > max_key_) {
    return int64_t{0};  // such a key can never have an expiry
  }
  Txn txn;
  int rc = Txn::Begin(env_.get(), nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return Fail(rc, "begin read transaction");
  }
  Bytes rev = EncodeTtlRevKey(table, key);
  MDB_val k = Val(rev.data(), rev.size());
  MDB_val v{};
  rc = mdb_get(txn.get(), ttl_rev_dbi_, &k, &v);
  if (rc == MDB_NOTFOUND) {
    return int64_t{0};
  }
  if (rc != 0) {
    return Fail(rc, "read TTL index");
  }
  return static_cast<int64_t>(DecodeU64(View(v)).value_or(0));
}

Status Env::ForEach(std::string_view table,
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

Result<Stats> Env::GetStats() const {
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
      ts->bytes =
          static_cast<uint64_t>(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) *
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
  return out;
}

Status Env::Health() const {
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

Status Env::CopyTo(const std::string& dir) const {
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

}  // namespace otd::store::internal
