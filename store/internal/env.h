#pragma once
// The LMDB environment of an LmdbStore: opening and checking it, its tables, the reads (short
// read-only transactions, values copied out), statistics, hot copies, and the one place where
// LMDB failures are logged and MDB_PANIC is noticed. Private to store/.
//
// Thread safety: every method is thread safe; the table map is immutable after Open().

#include <lmdb.h>

#include <sys/types.h>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "store/internal/lmdb_handles.h"
#include "store/lmdb_store.h"

namespace otd::store::internal {

class Env {
 public:
  // Validates the options, creates the directory (0700), opens the environment without unsafe
  // durability flags, and creates/opens the tables and the two TTL tables.
  static Result<std::unique_ptr<Env>> Open(const LmdbOptions& options, Logger* log);
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  MDB_env* get() const { return env_.get(); }
  const LmdbOptions& options() const { return options_; }
  Logger* log() const { return log_; }
  MDB_dbi ttl_dbi() const { return ttl_dbi_; }
  MDB_dbi ttl_rev_dbi() const { return ttl_rev_dbi_; }
  size_t max_key() const { return max_key_; }
  // kInvalidArgument for a table not configured.
  Result<MDB_dbi> TableDbi(std::string_view table) const;
  // The dbi of a configured table, or nullopt (the purge meets TTL entries of old tables).
  std::optional<MDB_dbi> FindDbi(std::string_view table) const;
  // kInvalidArgument for an empty key or one longer than the environment allows.
  Status CheckKey(ByteView key) const;

  Result<std::optional<Bytes>> Get(std::string_view table, ByteView key) const;
  Result<std::vector<std::optional<Bytes>>> GetMany(const std::vector<ReadKey>& keys) const;
  Result<int64_t> ExpiryOf(std::string_view table, ByteView key) const;
  Status ForEach(std::string_view table, const std::function<bool(ByteView, ByteView)>& fn) const;
  // Table entries and sizes, map use; `commits`/`batches` are the writer's and left 0 here.
  Result<Stats> GetStats() const;
  Status Health() const;
  Status CopyTo(const std::string& dir) const;

  // An LMDB failure as a Status (LmdbError), logged (rate-limited: map full, the file system's
  // errno with the free space), and MDB_PANIC noticed (also when LMDB only flags it for the next
  // transaction after an I/O error).
  Status Fail(int rc, std::string_view what) const;
  bool panicked() const { return panicked_.load(); }
  void SetPanicHandler(std::function<void()> fn);

 private:
  Env(LmdbOptions options, Logger* log) : options_(std::move(options)), log_(log) {}
  Status Init();
  void MarkPanicked() const;

  const LmdbOptions options_;
  Logger* const log_;
  EnvPtr env_;
  std::map<std::string, MDB_dbi, std::less<>> dbis_;  // user tables; immutable after Init()
  MDB_dbi ttl_dbi_ = 0;
  MDB_dbi ttl_rev_dbi_ = 0;
  size_t max_key_ = 0;
  uint64_t map_size_ = 0;
  std::optional<std::pair<dev_t, ino_t>> registered_;

  mutable std::atomic<bool> panicked_{false};
  mutable std::mutex panic_mu_;
  std::function<void()> on_panic_;  // guarded by panic_mu_
  mutable std::atomic<int64_t> last_map_full_log_{-1000};
  mutable std::atomic<int64_t> last_io_error_log_{-1000};
};

// MDB_val as a view (valid only inside its transaction).
inline ByteView View(const MDB_val& v) {
  return {static_cast<const uint8_t*>(v.mv_data), v.mv_size};
}

}  // namespace otd::store::internal
