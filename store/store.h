#pragma once
// store: the interface every storage backend implements (DESIGN §7). Named tables of opaque byte
// values (the service layer only ever stores versioned, sealed records keyed by keyed hashes:
// DESIGN §4), atomic batches with preconditions, durable acknowledgements, asynchronous commits,
// scans, and a TTL index for records that expire. The services depend on this header only; the
// embedded backend is store/lmdb_store.h. store/store_contract_test.h is the test suite every
// implementation must pass.
//
// Contract:
//  * Atomicity: each Apply()/ApplyAsync() batch is all-or-nothing, and its preconditions
//    (`expect`, kInsert on an absent key, kUpdate/kDelete/kMove on a present one) are checked
//    inside the same transaction. Batches committed together (group commit) are isolated: a
//    failed precondition in one does not affect the others, and each caller learns its own
//    result.
//  * Durability: a batch is acknowledged (Apply returns Ok, ApplyAsync's `done(Ok)`) only once it
//    is durable; a failure leaves nothing of the batch behind. When the outcome cannot be known
//    (the connection to a database dropped during the commit) the answer is kUnavailable, never
//    Ok.
//  * Reads return copies, never views into the backend's memory. ForEach() sees one consistent
//    snapshot of the table while writes go on.
//  * TTL: a record written with expires_at > 0 is deleted by PurgeExpired() once expires_at <=
//    now (readers check expiries inside the records as well, so nothing depends on the purge
//    running on time). Rewriting the record replaces its expiry (0 removes it), unless
//    `keep_expiry`.
//
// Errors: kAlreadyExists (kInsert on an existing key), kFailedPrecondition (an `expect` did not
// match, or kDelete/kUpdate/kMove of a missing key), kResourceExhausted (the backend is full: the
// batch is rolled back and the store stays usable), kInvalidArgument (unknown table, empty or
// oversized key), kUnavailable (I/O errors, the backend is not reachable or not usable).
//
// Thread safety: every method is thread safe. ApplyAsync() callbacks run on a backend thread:
// they may call ApplyAsync() and the read methods, but Apply()/PurgeExpired() there return
// kInternal (they would wait for the thread they run on), and the store must not be destroyed
// from them.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace otd::store {

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

// The longest key every backend accepts (LMDB's default maximum key size).
inline constexpr size_t kMaxKeyBytes = 511;

struct Mutation {
  Op op = Op::kPut;
  std::string table;
  Bytes key;                    // 1..511 bytes; with expires_at > 0, table + key <= 502 bytes
  Bytes value;                  // ignored for kDelete/kErase
  std::optional<Bytes> expect;  // if set, the current value must equal it (compare-and-swap);
                                // a missing key never matches; not allowed with kInsert
  int64_t expires_at = 0;       // > 0: Unix seconds after which PurgeExpired() may delete it;
                                // 0: no expiry (any earlier TTL entry for the key is removed)
  Bytes new_key;                // kMove only: the key the record moves to (same rules as key)
  bool keep_expiry = false;     // kUpdate/kPut: leave the record's TTL entry as it is
                                // (expires_at is ignored then)
};

// One key of a GetMany() (views: the caller keeps them alive during the call).
struct ReadKey {
  std::string_view table;
  ByteView key;
};

// The most keys one GetMany() takes.
inline constexpr size_t kMaxGetMany = 64;

struct TableStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;  // storage used by the table (LMDB: pages * page size)
};

struct Stats {
  std::map<std::string, TableStats> tables;
  uint64_t map_size = 0;    // capacity, where the backend has one (LMDB map size); 0: none
  uint64_t used_bytes = 0;  // LMDB: last page number * page size (a high-water mark: LMDB never
                            // gives pages back, it reuses freed ones)
  uint64_t free_bytes = 0;  // LMDB: pages on the free list * page size (reusable, some only once
                            // older readers finish); in use = used_bytes - free_bytes
  uint64_t commits = 0;     // write transactions committed since open
  uint64_t batches = 0;     // Apply() batches committed since open
  uint64_t ttl_entries = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Returns a copy of the value, or nullopt when absent.
  virtual Result<std::optional<Bytes>> Get(std::string_view table, ByteView key) const = 0;
  // Reads several records at once: from one consistent snapshot, and in one round trip where the
  // backend is a server (PostgreSQL). One entry per key, in the order given (nullopt when
  // absent; a key may repeat). Any unknown table or bad key, or more than kMaxGetMany keys, fails
  // the whole call with kInvalidArgument.
  virtual Result<std::vector<std::optional<Bytes>>> GetMany(
      const std::vector<ReadKey>& keys) const = 0;
  // True when every point read is a round trip to a server (PostgreSQL), so that reading a
  // request's records together with GetMany pays; false for an embedded store (LMDB), whose point
  // reads cost a fraction of a microsecond.
  virtual bool PointReadsAreRoundTrips() const { return false; }
  // The record's expires_at (Unix seconds), or 0 when it has none or does not exist.
  virtual Result<int64_t> ExpiryOf(std::string_view table, ByteView key) const = 0;

  // Applies the batch atomically and durably (blocks until it is durable).
  virtual Status Apply(std::vector<Mutation> batch) = 0;
  // Same, but returns at once and calls `done` (on a backend thread) with the result.
  virtual void ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) = 0;

  // Deletes up to `max` records whose expires_at <= now (and their TTL entries). Returns the
  // count. Safe to run from several processes sharing one database.
  virtual Result<size_t> PurgeExpired(int64_t now, size_t max) = 0;

  // Visits every (key, value) of a table in key order inside one consistent snapshot; stop by
  // returning false. The views are valid only during the callback.
  virtual Status ForEach(std::string_view table,
                         const std::function<bool(ByteView key, ByteView value)>& fn) const = 0;

  virtual Result<Stats> GetStats() const = 0;
  // kOk when the backend is usable (reachable, writable, not panicked).
  virtual Status Health() const = 0;
  // `fn` is called once, on the thread that found out, when the store becomes unusable for good
  // (LMDB: MDB_PANIC) and the process should restart. Set it before serving; it must not call
  // into the store.
  virtual void SetPanicHandler(std::function<void()> fn) = 0;
};

}  // namespace otd::store
