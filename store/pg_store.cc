#include "store/pg_store.h"

#include <algorithm>
#include <set>
#include <utility>

#include "common/check.h"
#include "store/internal/pg_conn.h"
#include "store/internal/pg_reads.h"
#include "store/internal/pg_schema.h"
#include "store/internal/pg_writer.h"

namespace otd::store {

namespace {

using internal::PgBytes;
using internal::PgCheck;
using internal::PgConnSettings;
using internal::PgExec;
using internal::PgInt8;
using internal::PgParams;
using internal::PgPool;
using internal::PgResultPtr;

constexpr int kForEachPage = 512;  // rows fetched per round trip by ForEach()

// The point reads, prepared on every pooled connection (store/internal/pg_conn.h): parsed and
// planned once per connection, not per call. The pool's sessions use generic plans
// (plan_cache_mode = force_generic_plan): these statements are index lookups whatever the
// parameters, and GetMany's custom plan would be costed on the number of keys and so always win
// over the generic one (re-planned on every call). Every statement run on a pooled connection
// must therefore have a good generic plan (no OR on a parameter that only constant folding
// would remove).
constexpr const char* kGetManyStmt = "otd_get_many";
constexpr const char* kExpiryStmt = "otd_expiry";
const std::vector<internal::PgPrepared>& PooledStatements() {
  static const std::vector<internal::PgPrepared> kAll = {
      // Every point read (Get, GetMany, coalesced): one row per key in order, value NULL when
      // absent (the column is NOT NULL): one statement, so one snapshot (READ COMMITTED takes it
      // per statement) and one round trip; the subquery is a primary-key index lookup per key.
      {kGetManyStmt,
       "SELECT (SELECT r.value FROM otd_records r WHERE r.tbl = q.tbl AND r.key = q.key) "
       "FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS q(tbl, key, i) ORDER BY q.i"},
      {kExpiryStmt, "SELECT expires_at FROM otd_records WHERE tbl = $1::text AND key = $2::bytea"},
  };
  return kAll;
}
constexpr const char* kPoolSetup = "SET plan_cache_mode = force_generic_plan";
// GetStats(): tables the planner estimates at this many rows or more are not counted exactly.
constexpr uint64_t kExactBelow = 100000;

PgConnSettings SettingsOf(const PgOptions& o) {
  PgConnSettings s;
  s.conninfo = o.conninfo;
  s.password = std::make_shared<const SecretBytes>(o.password.Clone());
  s.statement_timeout_ms = o.statement_timeout_ms;
  s.connect_timeout_ms = o.connect_timeout_ms;
  return s;
}

// timeout_ms 0: wait as long as it takes (schema changes).
Status Exec(PGconn* c, const char* sql, std::string_view what, int timeout_ms) {
  PgResultPtr r = PgExec(c, sql, PgParams(), timeout_ms, /*binary=*/false);
  return PgCheck(c, r.get(), what);
}

// Runs `fn(conn)` on a pooled connection; a failure that broke the connection is retried once on
// a fresh one (only for reads: they are idempotent).
template <class Fn>
auto WithConnection(PgPool& pool, Fn fn) -> decltype(fn(static_cast<PGconn*>(nullptr))) {
  for (int attempt = 0;; ++attempt) {
    auto lease = pool.Acquire();
    if (!lease.ok()) {
      return lease.status();
    }
    auto result = fn(lease->get());
    if (result.ok()) {
      return result;
    }
    const bool broken = PQstatus(lease->get()) != CONNECTION_OK;
    lease->Discard();
    if (!broken || attempt == 1) {
      return result;
    }
  }
}

Result<int> SchemaVersion(PGconn* c, int timeout_ms) {
  PgResultPtr r = PgExec(c, "SELECT to_regclass('otd_schema_version') IS NOT NULL", PgParams(),
                         timeout_ms, /*binary=*/false);
  OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "schema check"));
  if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "t") {
    return 0;
  }
  r = PgExec(c, "SELECT coalesce(max(version), 0) FROM otd_schema_version", PgParams(), timeout_ms,
             /*binary=*/false);
  OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "schema version"));
  return std::stoi(PQgetvalue(r.get(), 0, 0));
}

// The most keys of one coalesced read statement (store/internal/pg_reads.h).
constexpr size_t kMaxCoalescedKeys = 4 * kMaxGetMany;

// One statement for `keys` (any number, repeats allowed): a value or nullopt per key, in order.
Result<std::vector<std::optional<Bytes>>> ReadKeys(PgPool& pool, const std::vector<ReadKey>& keys) {
  std::vector<std::optional<ByteView>> tbls;
  std::vector<std::optional<ByteView>> ks;
  tbls.reserve(keys.size());
  ks.reserve(keys.size());
  for (const ReadKey& k : keys) {
    tbls.emplace_back(AsBytes(k.table));
    ks.emplace_back(k.key);
  }
  return WithConnection(pool, [&](PGconn* c) -> Result<std::vector<std::optional<Bytes>>> {
    PgParams p;
    p.Array(25, tbls);
    p.Array(17, ks);
    PgResultPtr r = PgExecPrepared(c, kGetManyStmt, p, pool.settings().client_timeout_ms());
    OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "read"));
    if (static_cast<size_t>(PQntuples(r.get())) != keys.size()) {
      return Internal("store: PostgreSQL read returned a wrong number of rows");
    }
    std::vector<std::optional<Bytes>> out(keys.size());
    for (int row = 0; row < PQntuples(r.get()); ++row) {
      if (PQgetisnull(r.get(), row, 0) == 0) {
        ByteView v = PgBytes(r.get(), row, 0);
        out[static_cast<size_t>(row)] = Bytes(v.begin(), v.end());
      }
    }
    return out;
  });
}

}  // namespace

Status PgCheckConninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    // err may quote the string: not repeated (it could hold a password).
    if (err != nullptr) {
      PQfreemem(err);
    }
    return InvalidArgument("is not a valid libpq connection string");
  }
  bool has_password = false;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && o->val[0] != 0) {
      has_password = true;
    }
  }
  PQconninfoFree(opts);
  if (has_password) {
    return InvalidArgument(
        "must not contain a password (use storage.postgresql.password_file or the systemd "
        "credential pgpassword)");
  }
  return Status::Ok();
}

Result<int> PgMigrate(const PgOptions& options, const std::string& grant_role) {
  OTD_ASSIGN_OR_RETURN(internal::PgConnPtr conn, internal::PgConnect(SettingsOf(options)));
  PGconn* c = conn.get();
  // DDL may wait for locks longer than a request would.
  OTD_RETURN_IF_ERROR(Exec(c, "SET statement_timeout = 0", "set statement_timeout", 0));
  OTD_RETURN_IF_ERROR(Exec(c, "BEGIN", "begin", 0));
  // Serialises concurrent `init` runs (the key is arbitrary but fixed: "otdschm").
  OTD_RETURN_IF_ERROR(Exec(c, "SELECT pg_advisory_xact_lock(7310522212205421)", "lock", 0));
  OTD_RETURN_IF_ERROR(
      Exec(c,
           "CREATE TABLE IF NOT EXISTS otd_schema_version ("
           "version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
           "create otd_schema_version", 0));
  OTD_ASSIGN_OR_RETURN(int before, SchemaVersion(c, 0));
  if (before > kPgSchemaVersion) {
    return FailedPrecondition("store: the PostgreSQL schema is version " + std::to_string(before) +
                              ", newer than this build knows (" + std::to_string(kPgSchemaVersion) +
                              ")");
  }
  for (const internal::PgMigration& m : internal::PgMigrations()) {
    if (m.version <= before) {
      continue;
    }
    for (const std::string& sql : m.statements) {
      OTD_RETURN_IF_ERROR(Exec(c, sql.c_str(), "migration " + std::to_string(m.version), 0));
    }
    const std::string mark =
        "INSERT INTO otd_schema_version (version) VALUES (" + std::to_string(m.version) + ")";
    OTD_RETURN_IF_ERROR(Exec(c, mark.c_str(), "migration mark", 0));
  }
  if (!grant_role.empty()) {
    char* quoted = PQescapeIdentifier(c, grant_role.data(), grant_role.size());
    if (quoted == nullptr) {
      return InvalidArgument("store: invalid role name");
    }
    const std::string role = quoted;
    PQfreemem(quoted);
    const std::string grants[] = {
        "GRANT SELECT, INSERT, UPDATE, DELETE ON otd_records TO " + role,
        "GRANT SELECT ON otd_schema_version TO " + role,
        "REVOKE ALL ON FUNCTION otd_apply(int4[], int4[], text[], bytea[], bytea[], bytea[], "
        "int8[], bytea[], bool[]) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION otd_apply(int4[], int4[], text[], bytea[], bytea[], bytea[], "
        "int8[], bytea[], bool[]) TO " +
            role,
    };
    for (const std::string& g : grants) {
      OTD_RETURN_IF_ERROR(Exec(c, g.c_str(), "grant", 0));
    }
  }
  OTD_RETURN_IF_ERROR(Exec(c, "COMMIT", "commit", 0));
  return before;
}

Result<std::unique_ptr<PgStore>> PgStore::Open(PgOptions options, Logger* log) {
  if (options.statement_timeout_ms < 0 || options.connect_timeout_ms <= 0 ||
      options.pool_size == 0) {
    return InvalidArgument("store: invalid PostgreSQL options");
  }
  PgConnSettings settings = SettingsOf(options);
  auto pool = std::make_unique<PgPool>(settings, options.pool_size, kPoolSetup, PooledStatements());
  {
    // A connection of its own: the pool's prepare statements that need the schema.
    OTD_ASSIGN_OR_RETURN(internal::PgConnPtr conn, internal::PgConnect(settings));
    OTD_ASSIGN_OR_RETURN(int version, SchemaVersion(conn.get(), settings.client_timeout_ms()));
    if (version == 0) {
      return FailedPrecondition(
          "store: the PostgreSQL database has no opentokend schema: run `opentoken-admin init`");
    }
    if (version > kPgSchemaVersion) {
      return FailedPrecondition("store: the PostgreSQL schema is version " +
                                std::to_string(version) + ", newer than this build knows (" +
                                std::to_string(kPgSchemaVersion) + "): upgrade opentokend");
    }
    if (version < kPgSchemaVersion) {
      return FailedPrecondition("store: the PostgreSQL schema is version " +
                                std::to_string(version) +
                                ", older than this build needs: run `opentoken-admin init`");
    }
  }
  std::set<std::string, std::less<>> tables(options.tables.begin(), options.tables.end());
  auto writer = std::make_unique<internal::PgWriter>(std::move(settings), std::move(tables),
                                                     options.max_batch_mutations, log);
  return std::unique_ptr<PgStore>(
      new PgStore(std::move(options), std::move(pool), std::move(writer)));
}

PgStore::PgStore(PgOptions options, std::unique_ptr<internal::PgPool> pool,
                 std::unique_ptr<internal::PgWriter> writer)
    : options_(std::move(options)),
      pool_(std::move(pool)),
      reads_(std::make_unique<internal::ReadCoalescer>(
          [pool = pool_.get()](const std::vector<ReadKey>& keys) { return ReadKeys(*pool, keys); },
          std::clamp<size_t>(options_.reads_in_flight, 1, options_.pool_size), kMaxCoalescedKeys)),
      writer_(std::move(writer)) {}

PgStore::~PgStore() = default;

Status PgStore::CheckTable(std::string_view table) const {
  for (const std::string& t : options_.tables) {
    if (t == table) {
      return Status::Ok();
    }
  }
  return InvalidArgument("store: unknown table");
}

namespace {

Status CheckKey(ByteView key) {
  if (key.empty()) {
    return InvalidArgument("store key is empty");
  }
  if (key.size() > kMaxKeyBytes) {
    return InvalidArgument("store key longer than " + std::to_string(kMaxKeyBytes) + " bytes");
  }
  return Status::Ok();
}

}  // namespace

Result<std::optional<Bytes>> PgStore::Get(std::string_view table, ByteView key) const {
  OTD_RETURN_IF_ERROR(CheckTable(table));
  OTD_RETURN_IF_ERROR(CheckKey(key));
  OTD_ASSIGN_OR_RETURN(auto values, reads_->Read({{.table = table, .key = key}}));
  return std::move(values.at(0));
}

Result<std::vector<std::optional<Bytes>>> PgStore::GetMany(const std::vector<ReadKey>& keys) const {
  if (keys.size() > kMaxGetMany) {
    return InvalidArgument("store: more than " + std::to_string(kMaxGetMany) + " keys in a read");
  }
  for (const ReadKey& k : keys) {
    OTD_RETURN_IF_ERROR(CheckTable(k.table));
    OTD_RETURN_IF_ERROR(CheckKey(k.key));
  }
  return reads_->Read(keys);
}

uint64_t PgStore::ReadStatementsForTesting() const { return reads_->statements(); }

size_t PgStore::ReadsQueuedForTesting() const { return reads_->queued(); }

Result<int64_t> PgStore::ExpiryOf(std::string_view table, ByteView key) const {
  OTD_RETURN_IF_ERROR(CheckTable(table));
  OTD_RETURN_IF_ERROR(CheckKey(key));
  return WithConnection(*pool_, [&](PGconn* c) -> Result<int64_t> {
    PgParams p;
    p.Text(table);
    p.Bytea(key);
    PgResultPtr r = PgExecPrepared(c, kExpiryStmt, p, pool_->settings().client_timeout_ms());
    OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "read"));
    if (PQntuples(r.get()) == 0) {
      return int64_t{0};
    }
    return PgInt8(r.get(), 0, 0);
  });
}

Status PgStore::Apply(std::vector<Mutation> batch) { return writer_->Apply(std::move(batch)); }

void PgStore::ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) {
  writer_->ApplyAsync(std::move(batch), std::move(done));
}

Result<size_t> PgStore::PurgeExpired(int64_t now, size_t max) {
  if (writer_->OnWriterThread()) {
    return Internal("store PurgeExpired called from the store writer thread (would deadlock)");
  }
  if (max == 0 || now <= 0) {
    return size_t{0};
  }
  OTD_ASSIGN_OR_RETURN(PgPool::Lease lease, pool_->Acquire());
  // The earliest expired records that no other purger has locked (SKIP LOCKED): several daemons
  // may purge at once, each takes different rows, and a record being rewritten is left alone.
  PgParams p;
  p.Int8(now);
  p.Int8(static_cast<int64_t>(max));
  bool cancelled = false;
  internal::PgWatchNotices(lease.get(), &cancelled);
  internal::PgTxnOutcome out = internal::PgRunWriteTxn(
      lease.get(), options_.statement_timeout_ms,
      "WITH doomed AS (SELECT tbl, key FROM otd_records WHERE expires_at > 0 AND expires_at <= "
      "$1::int8 ORDER BY expires_at LIMIT $2::int8 FOR UPDATE SKIP LOCKED) "
      "DELETE FROM otd_records r USING doomed d WHERE r.tbl = d.tbl AND r.key = d.key",
      p, &cancelled, pool_->settings().client_timeout_ms());
  internal::PgWatchNotices(lease.get(), nullptr);
  if (out.kind != internal::PgTxnOutcome::Kind::kCommitted) {
    lease.Discard();
    return out.error;
  }
  const char* n = PQcmdTuples(out.result.get());
  return static_cast<size_t>(std::stoull(n[0] != 0 ? n : "0"));
}

Status PgStore::ForEach(std::string_view table,
                        const std::function<bool(ByteView key, ByteView value)>& fn) const {
  OTD_RETURN_IF_ERROR(CheckTable(table));
  OTD_ASSIGN_OR_RETURN(PgPool::Lease lease, pool_->Acquire());
  PGconn* c = lease.get();
  const int timeout = pool_->settings().client_timeout_ms();
  Status st = Exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "begin snapshot", timeout);
  // Keyset pagination inside one snapshot: every page sees the same state of the table.
  Bytes last;
  bool first = true;
  bool stop = false;
  while (st.ok() && !stop) {
    PgParams p;
    p.Text(table);
    if (!first) {
      p.Bytea(last);
    }
    // Two statements rather than one with "($3 = 1 OR key > $2)": the pool's generic plans
    // would keep that OR as a filter, and every page would scan from the table's first key.
    static const std::string kFirst =
        "SELECT key, value FROM otd_records WHERE tbl = $1::text "
        "ORDER BY key LIMIT " +
        std::to_string(kForEachPage);
    static const std::string kNext =
        "SELECT key, value FROM otd_records WHERE tbl = $1::text "
        "AND key > $2::bytea ORDER BY key LIMIT " +
        std::to_string(kForEachPage);
    PgResultPtr r = PgExec(c, first ? kFirst.c_str() : kNext.c_str(), p, timeout);
    st = PgCheck(c, r.get(), "scan");
    if (!st.ok()) {
      break;
    }
    const int rows = PQntuples(r.get());
    for (int i = 0; i < rows && !stop; ++i) {
      stop = !fn(PgBytes(r.get(), i, 0), PgBytes(r.get(), i, 1));
    }
    if (rows < kForEachPage) {
      break;
    }
    ByteView k = PgBytes(r.get(), rows - 1, 0);
    last.assign(k.begin(), k.end());
    first = false;
  }
  Status end = Exec(c, st.ok() ? "COMMIT" : "ROLLBACK", "end snapshot", timeout);
  if (!end.ok()) {
    lease.Discard();
  }
  return st.ok() ? end : st;
}

Result<Stats> PgStore::GetStats() const {
  Stats stats;
  for (const std::string& t : options_.tables) {
    stats.tables[t] = TableStats{};
  }
  Status st = WithConnection(*pool_, [&](PGconn* c) -> Status {
    const int timeout = pool_->settings().client_timeout_ms();
    // 1. The planner's statistics (after ANALYZE; none before): rows and bytes per table, from
    //    the share of each table name among the rows. Tables estimated at kExactBelow rows or
    //    more keep these estimates: counting them exactly would read the whole table on every
    //    call (the registration cap calls this per registration).
    PgResultPtr r =
        PgExec(c,
               "SELECT u.tbl, (u.freq * greatest(c.reltuples, 0))::int8, "
               "(u.freq * pg_total_relation_size(c.oid))::int8 "
               "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               "JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname "
               "AND s.attname = 'tbl', "
               "unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS u(tbl, freq) "
               "WHERE c.oid = 'otd_records'::regclass",
               PgParams(), timeout, /*binary=*/false);
    OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "stats"));
    std::set<std::string> estimated;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      const uint64_t rows = std::stoull(PQgetvalue(r.get(), i, 1));
      auto it = stats.tables.find(PQgetvalue(r.get(), i, 0));
      if (it != stats.tables.end() && rows >= kExactBelow) {
        it->second.entries = rows;
        it->second.bytes = std::stoull(PQgetvalue(r.get(), i, 2));
        estimated.insert(it->first);
      }
    }
    // 2. Exact counts for the others (an index range scan each).
    std::vector<std::optional<ByteView>> exact;
    for (const auto& [name, ts] : stats.tables) {
      if (!estimated.contains(name)) {
        exact.emplace_back(AsBytes(name));
      }
    }
    PgParams p;
    p.Array(25, exact);
    // An index range scan per table (LATERAL), also as the pool's generic plan.
    r = PgExec(c,
               "SELECT t.tbl, s.n, s.b, s.ttl FROM unnest($1::text[]) AS t(tbl) CROSS JOIN "
               "LATERAL (SELECT count(*) AS n, "
               "coalesce(sum(octet_length(r.key) + octet_length(r.value)), 0) AS b, "
               "count(*) FILTER (WHERE r.expires_at > 0) AS ttl FROM otd_records r "
               "WHERE r.tbl = t.tbl) s",
               p, timeout, /*binary=*/false);
    OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "stats"));
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      TableStats& ts = stats.tables[PQgetvalue(r.get(), i, 0)];
      ts.entries = std::stoull(PQgetvalue(r.get(), i, 1));
      ts.bytes = std::stoull(PQgetvalue(r.get(), i, 2));
      stats.ttl_entries += std::stoull(PQgetvalue(r.get(), i, 3));
    }
    // 3. The relation's size; with estimated tables, the TTL index's estimated size instead of
    //    exact TTL counts.
    r = PgExec(c,
               "SELECT pg_total_relation_size('otd_records'), "
               "greatest((SELECT reltuples FROM pg_class WHERE oid = "
               "'otd_records_expiry'::regclass), 0)::int8",
               PgParams(), timeout, /*binary=*/false);
    OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "stats"));
    stats.used_bytes = std::stoull(PQgetvalue(r.get(), 0, 0));
    if (!estimated.empty()) {
      stats.ttl_entries =
          std::max<uint64_t>(stats.ttl_entries, std::stoull(PQgetvalue(r.get(), 0, 1)));
    }
    return Status::Ok();
  });
  OTD_RETURN_IF_ERROR(st);
  stats.commits = writer_->commits();
  stats.batches = writer_->batches();
  return stats;
}

Status PgStore::Health() const {
  return WithConnection(*pool_, [&](PGconn* c) -> Status {
    PgResultPtr r = PgExec(c, "SELECT pg_is_in_recovery()", PgParams(),
                           pool_->settings().client_timeout_ms(), /*binary=*/false);
    OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "health check"));
    if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "f") {
      return Unavailable("store: the PostgreSQL server is a standby (not writable)");
    }
    return Status::Ok();
  });
}

void PgStore::SetPanicHandler(std::function<void()> /*fn*/) {}

}  // namespace otd::store
