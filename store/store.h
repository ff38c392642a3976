#pragma once
// store: the LMDB environment. Named tables of opaque byte values (the service layer only ever
// stores versioned, sealed records: DESIGN §4), durable commits, one writer thread that batches
// concurrent callers into one transaction (group commit), short read transactions for lookups,
// and a TTL index for records that expire.
//
// Durability: the environment is opened without MDB_NOSYNC, MDB_NOMETASYNC, MDB_WRITEMAP,
// MDB_MAPASYNC or MDB_NOMEMINIT (checked at open with mdb_env_get_flags). Apply() returns only
// after the transaction holding the batch has committed (fsync'd).
//
// Atomicity: each Apply() batch is all-or-nothing. Batches grouped into one LMDB transaction are
// isolated from each other: a failed precondition in one batch does not affect the others, and
// each caller learns its own result.
//
// Errors: kAlreadyExists (kInsert on an existing key), kFailedPrecondition (an `expect` did not
// match, or kDelete/kUpdate of a missing key), kResourceExhausted ("store map is full", the batch
// is rolled back and the store stays usable), kInvalidArgument (unknown table, empty/oversized
// key), kUnavailable (I/O errors, the environment is not usable; MDB_PANIC is reported and the
// store refuses further writes).
//
// Thread safety: all methods are thread safe. Values returned are copies (never views into the map).
// Read transactions are not bound to OS threads (MDB_NOTLS), so a ForEach() callback may call
// Get()/GetStats() on the same store. ApplyAsync() callbacks run on the writer thread: they may
// call ApplyAsync() and the read methods, but Apply()/PurgeExpired() there return kInternal
// (they would wait for the thread they run on), and the store must not be destroyed from them.
//
// Process rules (lmdb.h caveats): one Store per directory per process (a second Open() of the
// same directory returns kFailedPrecondition); never fork() while a Store is open.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace otd {
class Logger;
namespace metrics {
class Registry;
}
}  // namespace otd

namespace otd::store {

namespace internal {
struct StoreTestPeer;  // store/internal/store_test_peer.h: lets tests inspect the environment
}

struct Options {
  std::string path;                       // directory; created (0700) if missing
  uint64_t map_size_bytes = 1ull << 30;   // LMDB map size
  unsigned max_readers = 256;
  size_t max_batch_mutations = 4096;      // group-commit cap per LMDB transaction
  std::vector<std::string> tables;        // named tables to create/open
  // Optional (null: not measured): write transaction duration and size
  // (opentokend_store_commit_duration_seconds, opentokend_store_batch_mutations,
  // opentokend_store_commits_total). Must outlive the Store.
  metrics::Registry* metrics = nullptr;
};

enum class Op {
  kInsert,  // put; kAlreadyExists if the key exists
  kPut,     // put, overwrite allowed
  kUpdate,  // put; the key must exist (kFailedPrecondition otherwise)
  kDelete,  // the key must exist (kFailedPrecondition otherwise)
  kErase,   // delete if present; never fails for a missing key
  kMove,    // re-key: the value and its expiry move from `key` to `new_key` (the key must exist,
            // kFailedPrecondition otherwise; kAlreadyExists if `new_key` exists); `value` and
            // `expires_at` are ignored
};

struct Mutation {
  Op op = Op::kPut;
  std::string table;
  Bytes key;                     // 1..511 bytes; with expires_at > 0, table + key <= 502 bytes
  Bytes value;                   // ignored for kDelete/kErase
  std::optional<Bytes> expect;   // if set, the current value must equal it (compare-and-swap);
                                 // a missing key never matches; not allowed with kInsert
  int64_t expires_at = 0;        // > 0: Unix seconds after which PurgeExpired() may delete it;
                                 // 0: no expiry (any earlier TTL entry for the key is removed)
  Bytes new_key;                 // kMove only: the key the record moves to (same rules as key)
  bool keep_expiry = false;      // kUpdate/kPut: leave the record's TTL entry as it is
                                 // (expires_at is ignored then)
};

struct TableStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;  // pages * page size (branch+leaf+overflow)
};

struct Stats {
  std::map<std::string, TableStats> tables;
  uint64_t map_size = 0;
  uint64_t used_bytes = 0;         // last page number * page size (a high-water mark: LMDB
                                   // never gives pages back, it reuses freed ones)
  uint64_t free_bytes = 0;         // pages on LMDB's free list * page size (reusable, some only
                                   // once older readers finish); in use = used_bytes - free_bytes
  uint64_t commits = 0;            // LMDB write transactions committed since open
  uint64_t batches = 0;            // Apply() batches committed since open
  uint64_t ttl_entries = 0;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const Options& options, Logger* log);
  ~Store();  // drains queued writes, stops the writer, closes the environment
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Returns a copy of the value, or nullopt when absent.
  Result<std::optional<Bytes>> Get(std::string_view table, ByteView key) const;
  // The record's expires_at (Unix seconds), or 0 when it has none or does not exist.
  Result<int64_t> ExpiryOf(std::string_view table, ByteView key) const;

  // Applies the batch atomically and durably (blocks until the commit is on disk).
  Status Apply(std::vector<Mutation> batch);
  // Same, but calls `done` (on the writer thread) with the result.
  void ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done);

  // Deletes up to `max` records whose expires_at <= now (and their TTL entries). Returns the count.
  Result<size_t> PurgeExpired(int64_t now, size_t max);

  // Visits every (key, value) of a table in key order inside one read transaction; stop by
  // returning false. The views are valid only during the callback.
  Status ForEach(std::string_view table,
                 const std::function<bool(ByteView key, ByteView value)>& fn) const;

  Result<Stats> GetStats() const;
  // kOk when the environment is usable (not panicked, reader table checked).
  Status Health() const;
  // `fn` is called once, on the thread that found out, when the environment becomes unusable
  // (MDB_PANIC: LMDB could not write a commit's meta page). From then on every operation, reads
  // included, fails until the store is reopened. Set it before serving; it must not call into
  // the store.
  void SetPanicHandler(std::function<void()> fn);
  // Consistent hot copy (mdb_env_copy2 with MDB_CP_COMPACT) into an empty directory.
  Status CopyTo(const std::string& dir) const;

 private:
  class Impl;
  friend struct internal::StoreTestPeer;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace otd::store
