#pragma once
// LmdbStore: the embedded store::Store (store/store.h) on one LMDB environment. One writer thread
// batches concurrent callers into one transaction (group commit, store/internal/writer.h), short
// read transactions serve lookups, and two internal tables hold the TTL index
// (store/internal/ttl.h).
//
// Durability: the environment is opened without MDB_NOSYNC, MDB_NOMETASYNC, MDB_WRITEMAP,
// MDB_MAPASYNC or MDB_NOMEMINIT (checked at open with mdb_env_get_flags). Apply() returns only
// after the transaction holding the batch has committed (fsync'd). MDB_MAP_FULL is
// kResourceExhausted ("store map is full"); MDB_PANIC (a commit's meta page could not be
// written) makes the store refuse every operation, reads included, until it is reopened.
//
// Read transactions are not bound to OS threads (MDB_NOTLS), so a ForEach() callback may call
// Get()/GetStats() on the same store.
//
// Process rules (lmdb.h caveats): one LmdbStore per directory per process (a second Open() of
// the same directory returns kFailedPrecondition); never fork() while a store is open.

#include <memory>
#include <string>
#include <vector>

#include "store/store.h"

namespace otd {
class Logger;
namespace metrics {
class Registry;
}
}  // namespace otd

namespace otd::store {

namespace internal {
class Env;
class Writer;
struct StoreTestPeer;  // store/internal/store_test_peer.h: lets tests inspect the environment
}  // namespace internal

struct LmdbOptions {
  std::string path;                      // directory; created (0700) if missing
  uint64_t map_size_bytes = 1ull << 30;  // LMDB map size
  unsigned max_readers = 256;
  size_t max_batch_mutations = 4096;  // group-commit cap per LMDB transaction
  std::vector<std::string> tables;    // named tables to create/open
  // Optional (null: not measured): write transaction duration and size
  // (opentokend_store_commit_duration_seconds, opentokend_store_batch_mutations,
  // opentokend_store_commits_total). Must outlive the store.
  metrics::Registry* metrics = nullptr;
};

class LmdbStore final : public Store {
 public:
  static Result<std::unique_ptr<LmdbStore>> Open(const LmdbOptions& options, Logger* log);
  ~LmdbStore() override;  // drains queued writes, stops the writer, closes the environment

  Result<std::optional<Bytes>> Get(std::string_view table, ByteView key) const override;
  Result<std::vector<std::optional<Bytes>>> GetMany(
      const std::vector<ReadKey>& keys) const override;
  Result<int64_t> ExpiryOf(std::string_view table, ByteView key) const override;
  Status Apply(std::vector<Mutation> batch) override;
  void ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) override;
  Result<size_t> PurgeExpired(int64_t now, size_t max) override;
  Status ForEach(std::string_view table,
                 const std::function<bool(ByteView key, ByteView value)>& fn) const override;
  Result<Stats> GetStats() const override;
  Status Health() const override;
  void SetPanicHandler(std::function<void()> fn) override;

  // Consistent, compacted hot copy (mdb_env_copy2 with MDB_CP_COMPACT) into an empty directory,
  // fsync'd: `opentoken-admin backup`.
  Status CopyTo(const std::string& dir) const;

 private:
  friend struct internal::StoreTestPeer;
  LmdbStore(std::unique_ptr<internal::Env> env, std::unique_ptr<internal::Writer> writer);
  std::unique_ptr<internal::Env> env_;
  std::unique_ptr<internal::Writer> writer_;  // destroyed first: it uses env_
};

}  // namespace otd::store
