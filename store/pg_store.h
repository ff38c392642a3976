#pragma once
// PgStore: store::Store (store/store.h) on PostgreSQL (15 or later) through libpq, for several
// active daemons sharing one database (issue 16). Every daemon talks to the writable primary;
// the conninfo may list several hosts with target_session_attrs=read-write.
//
// Schema (store/internal/pg_schema.cc, created and upgraded by PgMigrate(), i.e.
// `opentoken-admin init`): one table otd_records (tbl text, key bytea, value bytea, expires_at
// bigint, primary key (tbl, key)) with a partial index on expires_at where expires_at > 0 (the
// TTL index), the table otd_schema_version, and the PL/pgSQL function otd_apply() that applies a
// group of caller batches. Open() refuses a database whose schema is missing, older or newer
// than this build knows (kFailedPrecondition, naming `opentoken-admin init`).
//
// Writes: one writer thread with its own connection takes every batch queued (up to
// max_batch_mutations) and commits the group in ONE round trip: a libpq pipeline of BEGIN,
// SET LOCAL statement_timeout, SELECT otd_apply(...), SET LOCAL statement_timeout = 0, COMMIT.
// otd_apply() checks and applies each caller batch in turn (later mutations see earlier ones)
// and, when one fails its preconditions, undoes that batch's own writes from an undo list (no
// savepoint, no subtransaction) and returns a status per batch without raising. A deadlock with
// another daemon's group (nothing committed) is retried.
//
// Unknown outcomes: when the connection is lost after the pipeline was sent, or the server
// warns that the wait for a synchronous standby was cancelled (the commit is then local only),
// every batch of the group gets kUnavailable, never Ok. The COMMIT runs with statement_timeout
// 0, so a commit waiting for its synchronous standby is never cancelled by the timeout.
//
// Point reads (Get, GetMany) are coalesced: at most `reads_in_flight` statements run at once, and
// the callers that find them all running leave together in the next one (one statement, one
// snapshot per caller; store/internal/pg_reads.h), which saves the server and the daemon a round
// trip per caller under load and costs nothing when idle.
// Reads use a pool of `pool_size` connections (lazily opened; a connection the server closed is
// noticed before use and reopened; an idempotent read is retried once on a fresh connection).
// ForEach() pages through the table in key order inside one REPEATABLE READ READ ONLY
// transaction (one snapshot) and holds one pooled connection meanwhile. Everything reconnects
// by itself when the database comes back; no reopen is needed. Health() is kUnavailable when no
// writable primary answers.
//
// PurgeExpired() deletes the earliest expired records with FOR UPDATE SKIP LOCKED on a pooled
// connection, so several daemons may purge at once without a leader. GetStats(): entries and
// key+value bytes per table are exact for tables the planner's statistics put under 100000 rows
// (an index range scan each) and estimates (pg_stats share of the table name x reltuples) for
// larger ones, whose exact count would read them whole on every call; ttl_entries is exact
// unless a table is estimated (then the TTL index's reltuples at least); used_bytes is
// pg_total_relation_size(otd_records); map_size and free_bytes are 0 (no fixed capacity).
//
// Connections: pool_size + 1 (the writer). libpq types stay inside store/internal/.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/secret_bytes.h"
#include "store/store.h"

namespace otd {
class Logger;
}  // namespace otd

namespace otd::store {

namespace internal {
class PgPool;
class PgWriter;
class ReadCoalescer;
}  // namespace internal

struct PgOptions {
  std::string conninfo;               // libpq conninfo (keywords or URI); no password in it
  SecretBytes password;               // empty: none (peer/trust auth, or ~/.pgpass)
  size_t pool_size = 8;               // read/purge connections (the writer has its own)
  int statement_timeout_ms = 5000;    // per statement; the COMMIT itself runs without
  int connect_timeout_ms = 5000;      // libpq connect_timeout (rounded up to seconds, min 2 s)
  size_t max_batch_mutations = 4096;  // group-commit cap per transaction
  std::vector<std::string> tables;    // the tables the caller uses
  // Point-read statements running at once (1..pool_size); the reads of callers that find them
  // all running leave together in the next one (store/internal/pg_reads.h).
  size_t reads_in_flight = 2;
};

// kInvalidArgument when `conninfo` does not parse (keywords or URI) or carries a password (the
// password comes from a file or a credential, never from the configuration).
Status PgCheckConninfo(const std::string& conninfo);

// The schema version this build creates and accepts.
inline constexpr int kPgSchemaVersion = 1;

// Creates or upgrades the schema (idempotent; concurrent callers serialise on an advisory lock).
// When `grant_role` is not empty, that role gets only SELECT/INSERT/UPDATE/DELETE on the tables
// and EXECUTE on the function (least privilege for the daemon), and PUBLIC loses EXECUTE.
// Returns the version found before (0: none).
Result<int> PgMigrate(const PgOptions& options, const std::string& grant_role = "");

class PgStore final : public Store {
 public:
  // Connects once (kUnavailable when the database does not answer) and checks the schema.
  static Result<std::unique_ptr<PgStore>> Open(PgOptions options, Logger* log);
  ~PgStore() override;  // drains queued writes, stops the writer, closes the connections

  Result<std::optional<Bytes>> Get(std::string_view table, ByteView key) const override;
  Result<std::vector<std::optional<Bytes>>> GetMany(
      const std::vector<ReadKey>& keys) const override;
  bool PointReadsAreRoundTrips() const override { return true; }
  Result<int64_t> ExpiryOf(std::string_view table, ByteView key) const override;
  Status Apply(std::vector<Mutation> batch) override;
  void ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) override;
  Result<size_t> PurgeExpired(int64_t now, size_t max) override;
  Status ForEach(std::string_view table,
                 const std::function<bool(ByteView key, ByteView value)>& fn) const override;
  Result<Stats> GetStats() const override;
  Status Health() const override;
  // PostgreSQL has no unrecoverable state for the process: the handler is never called.
  void SetPanicHandler(std::function<void()> fn) override;

  // Point-read statements sent so far (Get and GetMany calls are coalesced: tests).
  uint64_t ReadStatementsForTesting() const;
  // Point reads waiting for a statement slot right now (tests).
  size_t ReadsQueuedForTesting() const;

 private:
  PgStore(PgOptions options, std::unique_ptr<internal::PgPool> pool,
          std::unique_ptr<internal::PgWriter> writer);
  Status CheckTable(std::string_view table) const;

  PgOptions options_;
  std::unique_ptr<internal::PgPool> pool_;
  std::unique_ptr<internal::ReadCoalescer> reads_;
  std::unique_ptr<internal::PgWriter> writer_;  // destroyed first
};

}  // namespace otd::store
