#include "store/internal/pg_conn.h"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

namespace otd::store::internal {

namespace {

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xffu));
  }
}

std::string ConnError(PGconn* c) {
  std::string msg = c != nullptr ? PQerrorMessage(c) : "out of memory";
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
    msg.pop_back();
  }
  for (char& ch : msg) {
    if (ch == '\n') {
      ch = ' ';
    }
  }
  return msg;
}

void OnNotice(void* arg, const PGresult* r) {
  if (arg == nullptr) {
    return;  // not watched: dropped (libpq's default would print it to stderr)
  }
  const char* severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char* message = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  const char* detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
  if (severity == nullptr || std::strcmp(severity, "WARNING") != 0) {
    return;
  }
  // "canceling wait for synchronous replication ..." / "canceling the wait for synchronous
  // replication and terminating connection ..." (detail: "The transaction has already committed
  // locally, but might not have been replicated to the standby."). The English text is matched
  // as well as the detail so that a translated server still trips on the SQLSTATE-less warning.
  auto has = [](const char* s, const char* needle) {
    return s != nullptr && std::strstr(s, needle) != nullptr;
  };
  if (has(message, "synchronous replication") || has(detail, "committed locally")) {
    *static_cast<bool*>(arg) = true;
  }
}

using Clock = std::chrono::steady_clock;

// Waits until PQgetResult would not block, up to `deadline` (none when timeout_ms <= 0). False on
// timeout; true also for a broken connection (PQgetResult then reports it).
bool WaitForAnswer(PGconn* c, Clock::time_point deadline, int timeout_ms) {
  for (;;) {
    // A result already in libpq's buffer needs no read: PQconsumeInput would make a recv() that
    // finds nothing (after every result of a pipeline, and after the last one of a statement).
    if (!PQisBusy(c) || PQconsumeInput(c) == 0 || !PQisBusy(c)) {
      return true;
    }
    int wait_ms = -1;
    if (timeout_ms > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return false;
      }
      wait_ms = static_cast<int>(left.count());
    }
    pollfd p{.fd = PQsocket(c), .events = POLLIN, .revents = 0};
    if (p.fd < 0 || (::poll(&p, 1, wait_ms) < 0 && errno != EINTR)) {
      return true;
    }
  }
}

}  // namespace

Result<PgConnPtr> PgConnect(const PgConnSettings& s) {
  const int seconds = std::max(2, (s.connect_timeout_ms + 999) / 1000);
  const std::string timeout = std::to_string(seconds);
  // The password travels as its own parameter (a NUL-terminated secret copy), never inside the
  // conninfo string. dbname is expanded first, so a password= inside it would be overridden.
  SecretBytes password;
  std::vector<const char*> keys = {"dbname", "connect_timeout"};
  std::vector<const char*> values = {s.conninfo.c_str(), timeout.c_str()};
  if (s.password != nullptr && !s.password->empty()) {
    password = SecretBytes(s.password->size() + 1);
    auto out = password.MutableReveal(SecretAccess::Grant());
    auto in = s.password->Reveal(SecretAccess::Grant());
    std::memcpy(out.data(), in.data(), in.size());
    out[in.size()] = 0;
    keys.push_back("password");
    values.push_back(reinterpret_cast<const char*>(out.data()));
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PgConnPtr c(PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1));
  if (c == nullptr || PQstatus(c.get()) != CONNECTION_OK) {
    return Unavailable("store: cannot connect to PostgreSQL: " + ConnError(c.get()));
  }
  PgWatchNotices(c.get(), nullptr);
  const std::string set = "SET statement_timeout = " + std::to_string(s.statement_timeout_ms);
  PgResultPtr r(PQexec(c.get(), set.c_str()));
  OTD_RETURN_IF_ERROR(PgCheck(c.get(), r.get(), "set statement_timeout"));
  return c;
}

bool PgStillUsable(PGconn* c) {
  if (c == nullptr || PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) {
    return false;
  }
  pollfd p{.fd = PQsocket(c), .events = POLLIN, .revents = 0};
  if (p.fd < 0) {
    return false;
  }
  int n = ::poll(&p, 1, 0);
  // Nothing may arrive on an idle connection of ours (no LISTEN): data there is the server's
  // FATAL before it closed the connection (shutdown, terminate, failover) or the close itself.
  // libpq may read the FATAL without seeing the EOF behind it yet and still report
  // CONNECTION_OK, so any data at all means: open a new one.
  return n == 0;
}

void PgParams::Add(const void* data, size_t n) {
  values_.push_back(static_cast<const char*>(data));
  lengths_.push_back(static_cast<int>(n));
  formats_.push_back(1);
}

void PgParams::Bytea(ByteView b) {
  // An empty value must not be a null pointer (that would be SQL NULL).
  static const char kEmpty = 0;
  Add(b.empty() ? &kEmpty : static_cast<const void*>(b.data()), b.size());
}

void PgParams::Text(std::string_view s) {
  owned_.push_back(std::make_unique<std::string>(s));
  Add(owned_.back()->data(), owned_.back()->size());
}

void PgParams::Int8(int64_t v) {
  auto s = std::make_unique<std::string>();
  PutU32(*s, static_cast<uint32_t>(static_cast<uint64_t>(v) >> 32));
  PutU32(*s, static_cast<uint32_t>(static_cast<uint64_t>(v) & 0xffffffffu));
  owned_.push_back(std::move(s));
  Add(owned_.back()->data(), 8);
}

void PgParams::Array(uint32_t elem_oid, const std::vector<std::optional<ByteView>>& elems) {
  auto s = std::make_unique<std::string>();
  bool has_null = false;
  for (const auto& e : elems) {
    has_null = has_null || !e.has_value();
  }
  PutU32(*s, elems.empty() ? 0 : 1);  // dimensions
  PutU32(*s, has_null ? 1 : 0);
  PutU32(*s, elem_oid);
  if (!elems.empty()) {
    PutU32(*s, static_cast<uint32_t>(elems.size()));
    PutU32(*s, 1);  // lower bound
  }
  for (const auto& e : elems) {
    if (!e.has_value()) {
      PutU32(*s, 0xffffffffu);  // -1: NULL
      continue;
    }
    PutU32(*s, static_cast<uint32_t>(e->size()));
    s->append(reinterpret_cast<const char*>(e->data()), e->size());
  }
  owned_.push_back(std::move(s));
  Add(owned_.back()->data(), owned_.back()->size());
}

std::string PgSqlState(const PGresult* r) {
  const char* s = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return s != nullptr ? s : "";
}

Status PgCheck(PGconn* c, const PGresult* r, std::string_view what) {
  if (r == nullptr && PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_ACTIVE) {
    return Unavailable("store: PostgreSQL " + std::string(what) + ": no answer in time");
  }
  if (r != nullptr) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      return Status::Ok();
    }
    const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    std::string state = PgSqlState(r);
    if (primary != nullptr) {
      return Unavailable("store: PostgreSQL " + std::string(what) + " failed (SQLSTATE " + state +
                         "): " + primary);
    }
  }
  return Unavailable("store: PostgreSQL " + std::string(what) + " failed: " + ConnError(c));
}

namespace {

// The last result of the statement just sent (null on timeout or when nothing came).
PgResultPtr AwaitResult(PGconn* c, int timeout_ms) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  PgResultPtr last;
  for (;;) {
    if (!WaitForAnswer(c, deadline, timeout_ms)) {
      return nullptr;  // still busy: PQtransactionStatus is PQTRANS_ACTIVE
    }
    PGresult* r = PQgetResult(c);
    if (r == nullptr) {
      return last;
    }
    last.reset(r);
    if (PQstatus(c) == CONNECTION_BAD) {
      return last;
    }
  }
}

}  // namespace

PgResultPtr PgExec(PGconn* c, const char* sql, const PgParams& params, int timeout_ms,
                   bool binary) {
  if (PQsendQueryParams(c, sql, params.size(), nullptr, params.values(), params.lengths(),
                        params.formats(), binary ? 1 : 0) != 1) {
    return nullptr;
  }
  return AwaitResult(c, timeout_ms);
}

PgResultPtr PgExecPrepared(PGconn* c, const char* name, const PgParams& params, int timeout_ms,
                           bool binary) {
  if (PQsendQueryPrepared(c, name, params.size(), params.values(), params.lengths(),
                          params.formats(), binary ? 1 : 0) != 1) {
    return nullptr;
  }
  return AwaitResult(c, timeout_ms);
}

Status PgPrepare(PGconn* c, const std::vector<PgPrepared>& statements, int timeout_ms) {
  for (const PgPrepared& p : statements) {
    if (PQsendPrepare(c, p.name, p.sql, 0, nullptr) != 1) {
      return PgCheck(c, nullptr, "prepare");
    }
    PgResultPtr r = AwaitResult(c, timeout_ms);
    OTD_RETURN_IF_ERROR(PgCheck(c, r.get(), "prepare"));
  }
  return Status::Ok();
}

ByteView PgBytes(const PGresult* r, int row, int col) {
  return ByteView(reinterpret_cast<const uint8_t*>(PQgetvalue(r, row, col)),
                  static_cast<size_t>(PQgetlength(r, row, col)));
}

int64_t PgInt8(const PGresult* r, int row, int col) {
  const auto* p = reinterpret_cast<const uint8_t*>(PQgetvalue(r, row, col));
  if (PQgetlength(r, row, col) != 8) {
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | p[i];
  }
  return static_cast<int64_t>(v);
}

void PgWatchNotices(PGconn* c, bool* flag) { PQsetNoticeReceiver(c, OnNotice, flag); }

PgTxnOutcome PgRunWriteTxn(PGconn* c, int statement_timeout_ms, const char* sql,
                           const PgParams& params, bool* syncrep_cancelled, int timeout_ms,
                           bool prepared) {
  PgTxnOutcome out;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  bool timed_out = false;
  *syncrep_cancelled = false;
  if (PQenterPipelineMode(c) != 1) {
    out.kind = PgTxnOutcome::Kind::kNotCommitted;
    out.error = Unavailable("store: PostgreSQL pipeline mode: " + ConnError(c));
    return out;
  }
  const std::string set_timeout =
      "SET LOCAL statement_timeout = " + std::to_string(statement_timeout_ms);
  const PgParams none;
  // Statement 2 is the caller's; statement 3 lifts the timeout so that the COMMIT, possibly
  // waiting for a synchronous standby, is never cancelled by it.
  const char* steps[] = {"BEGIN", set_timeout.c_str(), sql, "SET LOCAL statement_timeout = 0",
                         "COMMIT"};
  bool sent = true;
  for (int i = 0; i < 5 && sent; ++i) {
    const PgParams& p = (i == 2) ? params : none;
    if (i == 2 && prepared) {
      sent = PQsendQueryPrepared(c, sql, p.size(), p.values(), p.lengths(), p.formats(), 1) == 1;
      continue;
    }
    sent = PQsendQueryParams(c, steps[i], p.size(), nullptr, p.values(), p.lengths(), p.formats(),
                             1) == 1;
  }
  sent = sent && PQpipelineSync(c) == 1;
  if (!sent) {
    // Nothing may have reached the server, or all of it: the outcome is unknown.
    out.kind = PgTxnOutcome::Kind::kUnknown;
    out.error =
        Unavailable("store: PostgreSQL connection lost while sending a write: " + ConnError(c));
    return out;
  }
  std::optional<Status> failed;  // a statement before COMMIT was refused
  bool committed = false;
  bool lost = false;
  for (int i = 0; i < 5 && !lost; ++i) {
    bool any = false;
    for (;;) {
      if (!WaitForAnswer(c, deadline, timeout_ms)) {
        timed_out = lost = true;
        break;
      }
      PGresult* raw = PQgetResult(c);
      if (raw == nullptr) {
        break;
      }
      any = true;
      PgResultPtr r(raw);
      ExecStatusType st = PQresultStatus(r.get());
      if (st == PGRES_PIPELINE_ABORTED) {
        continue;
      }
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        if (PQstatus(c) == CONNECTION_BAD) {
          lost = true;
          break;
        }
        if (i < 4 && !failed.has_value()) {
          failed = PgCheck(c, r.get(), i == 2 ? "write" : steps[i]);
          out.sqlstate = PgSqlState(r.get());
        }
        continue;
      }
      if (i == 2) {
        out.result = std::move(r);
      } else if (i == 4) {
        committed = std::strcmp(PQcmdStatus(r.get()), "COMMIT") == 0;
      }
    }
    if (!any || PQstatus(c) == CONNECTION_BAD) {
      lost = true;
    }
  }
  if (!lost) {
    // The sync marker ends the pipeline.
    if (!WaitForAnswer(c, deadline, timeout_ms)) {
      timed_out = lost = true;
    }
  }
  if (!lost) {
    PgResultPtr sync(PQgetResult(c));
    if (sync == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
      lost = PQstatus(c) == CONNECTION_BAD;
    }
    PQexitPipelineMode(c);
  }
  if (lost || *syncrep_cancelled) {
    out.kind = PgTxnOutcome::Kind::kUnknown;
    out.result.reset();
    if (*syncrep_cancelled) {
      out.error = Unavailable(
          "store: the wait for the synchronous standby was cancelled; the write is committed on "
          "the primary only (outcome unknown)");
    } else if (timed_out) {
      out.error =
          Unavailable("store: PostgreSQL did not answer a commit in time (outcome unknown)");
    } else {
      out.error = Unavailable(
          "store: PostgreSQL connection lost during a commit (outcome unknown): " + ConnError(c));
    }
    return out;
  }
  if (failed.has_value()) {
    out.kind = PgTxnOutcome::Kind::kNotCommitted;
    out.result.reset();
    out.error = std::move(*failed);
    return out;
  }
  if (!committed) {
    out.kind = PgTxnOutcome::Kind::kNotCommitted;
    out.result.reset();
    out.error = Unavailable("store: PostgreSQL rolled the write transaction back");
    return out;
  }
  out.kind = PgTxnOutcome::Kind::kCommitted;
  out.error = Status::Ok();
  return out;
}

// ---------------------------------------------------------------------------------------------
// PgPool

PgPool::PgPool(PgConnSettings settings, size_t size, std::string setup,
               std::vector<PgPrepared> prepared)
    : settings_(std::move(settings)), setup_(std::move(setup)), prepared_(std::move(prepared)) {
  conns_.resize(std::max<size_t>(1, size));
  for (size_t i = conns_.size(); i > 0; --i) {
    free_.push_back(i - 1);
  }
}

PgPool::~PgPool() = default;

PgPool::Lease::Lease(Lease&& o) noexcept
    : pool_(std::exchange(o.pool_, nullptr)), slot_(o.slot_), discard_(o.discard_) {}

PgPool::Lease::~Lease() {
  if (pool_ != nullptr) {
    pool_->Release(slot_, discard_);
  }
}

PGconn* PgPool::Lease::get() const { return pool_->conns_[slot_].get(); }

Result<PgPool::Lease> PgPool::Acquire() {
  size_t slot = 0;
  {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::milliseconds(settings_.connect_timeout_ms),
                      [this] { return !free_.empty(); })) {
      return Unavailable("store: every PostgreSQL connection of the pool is busy");
    }
    slot = free_.back();
    free_.pop_back();
  }
  Lease lease(this, slot);
  PgConnPtr& c = conns_[slot];  // this slot is ours until released
  if (!PgStillUsable(c.get())) {
    c.reset();
    OTD_ASSIGN_OR_RETURN(c, Open());
  }
  return lease;
}

Result<PgConnPtr> PgPool::Open() const {
  OTD_ASSIGN_OR_RETURN(PgConnPtr c, PgConnect(settings_));
  if (!setup_.empty()) {
    PgResultPtr r = PgExec(c.get(), setup_.c_str(), PgParams(), settings_.client_timeout_ms(),
                           /*binary=*/false);
    OTD_RETURN_IF_ERROR(PgCheck(c.get(), r.get(), "session setup"));
  }
  OTD_RETURN_IF_ERROR(PgPrepare(c.get(), prepared_, settings_.client_timeout_ms()));
  return c;
}

void PgPool::Release(size_t slot, bool discard) {
  PgConnPtr& c = conns_[slot];
  if (discard || (c != nullptr && (PQstatus(c.get()) != CONNECTION_OK ||
                                   PQtransactionStatus(c.get()) != PQTRANS_IDLE))) {
    c.reset();
  }
  {
    std::lock_guard lk(mu_);
    free_.push_back(slot);
  }
  cv_.notify_one();
}

}  // namespace otd::store::internal
