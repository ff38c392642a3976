#pragma once
// libpq plumbing for PgStore (store/pg_store.h), private to store/: RAII owners for PGconn and
// PGresult, connecting (password passed as a parameter, never through the conninfo string),
// binary parameters, the one place where libpq results become Status values, the pipelined
// write transaction with its unknown-outcome rules, and the connection pool.
//
// Error messages carry the SQLSTATE and the server's primary message only (never DETAIL, which
// may quote key values).

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd::store::internal {

struct PgConnCloser {
  void operator()(PGconn* c) const noexcept {
    if (c != nullptr) {
      PQfinish(c);
    }
  }
};
using PgConnPtr = std::unique_ptr<PGconn, PgConnCloser>;

struct PgResultClearer {
  void operator()(PGresult* r) const noexcept {
    if (r != nullptr) {
      PQclear(r);
    }
  }
};
using PgResultPtr = std::unique_ptr<PGresult, PgResultClearer>;

struct PgConnSettings {
  std::string conninfo;
  std::shared_ptr<const SecretBytes> password;  // may be null or empty
  int statement_timeout_ms = 5000;
  int connect_timeout_ms = 5000;
  // How long the client waits for any answer: statement_timeout_ms + connect_timeout_ms (the
  // server's own timeout fires first while the server works; this catches one that does not).
  int client_timeout_ms() const { return statement_timeout_ms + connect_timeout_ms; }
};

// A connection with statement_timeout set. kUnavailable when the server cannot be reached.
Result<PgConnPtr> PgConnect(const PgConnSettings& s);

// False when the server has closed the connection (restart, failover, terminate) while it was
// idle: checked without a round trip (poll of the socket, then PQconsumeInput).
bool PgStillUsable(PGconn* c);

// Parameters of one statement, all in binary format. The views must outlive the statement.
class PgParams {
 public:
  void Bytea(ByteView b);
  void Text(std::string_view s);
  void Int8(int64_t v);
  // A one-dimensional array in binary array format; nullopt elements are SQL NULL.
  // `elem_oid`: 17 bytea, 25 text, 20 int8, 23 int4, 16 bool.
  void Array(uint32_t elem_oid, const std::vector<std::optional<ByteView>>& elems);
  int size() const { return static_cast<int>(values_.size()); }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  void Add(const void* data, size_t n);
  std::vector<std::unique_ptr<std::string>> owned_;
  std::vector<const char*> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

// Ok for PGRES_COMMAND_OK / PGRES_TUPLES_OK; otherwise kUnavailable naming `what`, the SQLSTATE
// and the server's primary message (or libpq's connection error).
Status PgCheck(PGconn* c, const PGresult* r, std::string_view what);
std::string PgSqlState(const PGresult* r);

// A statement prepared on every connection a PgPool or PgWriter opens (parsed, and with
// `generic_plan` planned, once per connection instead of once per call).
struct PgPrepared {
  const char* name;
  const char* sql;
};

// PQprepare of each statement (one round trip each; at connect time only).
Status PgPrepare(PGconn* c, const std::vector<PgPrepared>& statements, int timeout_ms);

// One statement; binary results when `binary`. With timeout_ms > 0, waits at most that long for
// the answer (a server that stopped answering, e.g. SIGSTOP'd or cut off, does not hold the
// caller forever): then returns null and the connection is left mid-statement (PgCheck reports
// it; the pool discards such a connection).
PgResultPtr PgExec(PGconn* c, const char* sql, const PgParams& params, int timeout_ms,
                   bool binary = true);

// The same for a statement prepared on this connection (PgPrepare), by name.
PgResultPtr PgExecPrepared(PGconn* c, const char* name, const PgParams& params, int timeout_ms,
                           bool binary = true);

// Binary column value helpers.
ByteView PgBytes(const PGresult* r, int row, int col);
int64_t PgInt8(const PGresult* r, int row, int col);

// One write transaction in one round trip: a pipeline of BEGIN, SET LOCAL statement_timeout,
// the statement, SET LOCAL statement_timeout = 0, COMMIT, sync. `sql` is the statement's text,
// or with `prepared` true the name of a statement prepared on this connection (PgPrepare).
struct PgTxnOutcome {
  enum class Kind {
    kCommitted,     // COMMIT answered COMMIT, no warning: `result` holds the statement's result
    kNotCommitted,  // the server refused a statement before COMMIT (nothing was written)
    kUnknown,       // the connection broke after sending, or the sync-standby wait was cancelled
  };
  Kind kind = Kind::kUnknown;
  Status error;          // not ok unless kCommitted
  std::string sqlstate;  // kNotCommitted: the failing statement's SQLSTATE
  PgResultPtr result;
};
// `syncrep_cancelled` is the flag the connection's notice receiver sets (PgWatchNotices); it is
// cleared before the pipeline is sent.
// With timeout_ms > 0, an answer that takes longer makes the outcome kUnknown (the connection must
// then be closed; a COMMIT waiting for its standby is not cancelled, the client stops waiting).
PgTxnOutcome PgRunWriteTxn(PGconn* c, int statement_timeout_ms, const char* sql,
                           const PgParams& params, bool* syncrep_cancelled, int timeout_ms,
                           bool prepared = false);
// Installs a notice receiver that sets *flag when the server warns that the wait for
// synchronous replication was cancelled (the transaction is then committed locally only).
void PgWatchNotices(PGconn* c, bool* flag);

// A fixed number of lazily opened connections. Every connection it opens first runs `setup`
// (when not empty; e.g. session settings) and prepares `prepared`, so a connection reopened
// after a restart or a failover has them again before its first use.
class PgPool {
 public:
  PgPool(PgConnSettings settings, size_t size, std::string setup = "",
         std::vector<PgPrepared> prepared = {});
  ~PgPool();
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  class Lease {
   public:
    Lease(Lease&& o) noexcept;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
    PGconn* get() const;
    // The connection is closed on return (after an error that may have left it unusable).
    void Discard() { discard_ = true; }

   private:
    friend class PgPool;
    Lease(PgPool* pool, size_t slot) : pool_(pool), slot_(slot) {}
    PgPool* pool_;
    size_t slot_;
    bool discard_ = false;
  };

  // A usable connection (reopened if needed). kUnavailable when the server cannot be reached or
  // every connection stays busy for connect_timeout_ms.
  Result<Lease> Acquire();
  const PgConnSettings& settings() const { return settings_; }

 private:
  void Release(size_t slot, bool discard);

  Result<PgConnPtr> Open() const;

  const PgConnSettings settings_;
  const std::string setup_;
  const std::vector<PgPrepared> prepared_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PgConnPtr> conns_;  // slot -> connection (null: not open)
  std::vector<size_t> free_;      // guarded by mu_
};

}  // namespace otd::store::internal
