#include "store/internal/pg_writer.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <deque>
#include <future>
#include <optional>
#include <utility>

#include "common/log.h"
#include "store/internal/pg_schema.h"

namespace otd::store::internal {

struct PgRequest {
  std::vector<Mutation> batch;
  std::function<void(Status)> done;
  Status result;
  bool skip = false;  // `result` is final already
};

namespace {

// The result is wanted in text form ("{0,5000001}"): PgRunWriteTxn asks for binary, so the
// array is turned into text by the statement itself.
constexpr const char* kApplyTextSql =
    "SELECT (SELECT otd_apply($1::int4[], $2::int4[], $3::text[], $4::bytea[], $5::bytea[], "
    "$6::bytea[], $7::int8[], $8::bytea[], $9::bool[]))::text";
constexpr const char* kApplyStmt = "otd_apply_group";

constexpr int kMaxAttempts = 3;  // deadlocks with another daemon's group are retried

PgOpCode OpCode(Op op) {
  switch (op) {
    case Op::kInsert: return PgOpCode::kInsert;
    case Op::kPut: return PgOpCode::kPut;
    case Op::kUpdate: return PgOpCode::kUpdate;
    case Op::kDelete: return PgOpCode::kDelete;
    case Op::kErase: return PgOpCode::kErase;
    case Op::kMove: return PgOpCode::kMove;
  }
  return PgOpCode::kPut;
}

std::string BigEndian(uint64_t v, int bytes) {
  std::string s;
  for (int i = bytes - 1; i >= 0; --i) {
    s.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
  }
  return s;
}

Status FailureStatus(const Mutation& m, int code) {
  const int kind = code / 1000000;
  const std::string where =
      "store mutation " + std::to_string(code % 1000000) + " (table " + m.table + "): ";
  switch (static_cast<PgFailure>(kind)) {
    case PgFailure::kExists: return AlreadyExists(where + "key already exists");
    case PgFailure::kUpdateMissing: return FailedPrecondition(where + "update of a missing key");
    case PgFailure::kDeleteMissing: return FailedPrecondition(where + "delete of a missing key");
    case PgFailure::kMoveMissing: return FailedPrecondition(where + "move of a missing key");
    case PgFailure::kExpectMismatch:
      return FailedPrecondition(where + "current value does not match the expected value");
    case PgFailure::kMoveTarget: return AlreadyExists(where + "move target already exists");
    case PgFailure::kMoveKeyTooLong:
      return InvalidArgument("store key too long for a record with expiry");
  }
  return Internal("store: unknown otd_apply result " + std::to_string(code));
}

// Parses otd_apply's int4[] in text form: "{0,5000001}".
std::optional<std::vector<int>> ParseCodes(std::string_view text) {
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') {
    return std::nullopt;
  }
  std::vector<int> out;
  std::string cur;
  for (char ch : text.substr(1)) {
    if (ch == ',' || ch == '}') {
      if (cur.empty()) {
        break;
      }
      int v = 0;
      auto [end, ec] = std::from_chars(cur.data(), cur.data() + cur.size(), v);
      if (ec != std::errc() || end != cur.data() + cur.size()) {
        return std::nullopt;
      }
      out.push_back(v);
      cur.clear();
    } else {
      cur.push_back(ch);
    }
  }
  return out;
}

}  // namespace

PgWriter::PgWriter(PgConnSettings settings, std::set<std::string, std::less<>> tables,
                   size_t max_batch_mutations, Logger* log)
    : settings_(std::move(settings)),
      tables_(std::move(tables)),
      max_batch_mutations_(std::max<size_t>(1, max_batch_mutations)),
      log_(log) {
  thread_ = std::thread([this] { Loop(); });
}

PgWriter::~PgWriter() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    assert(!OnWriterThread());
    thread_.join();
  }
}

Status PgWriter::Validate(const std::vector<Mutation>& batch) const {
  auto check_key = [](ByteView key) {
    if (key.empty()) {
      return InvalidArgument("store key is empty");
    }
    if (key.size() > kMaxKeyBytes) {
      return InvalidArgument("store key longer than " + std::to_string(kMaxKeyBytes) + " bytes");
    }
    return Status::Ok();
  };
  for (const Mutation& m : batch) {
    if (!tables_.contains(m.table)) {
      return InvalidArgument("store: unknown table");
    }
    OTD_RETURN_IF_ERROR(check_key(m.key));
    if (m.expires_at < 0) {
      return InvalidArgument("store expires_at is negative");
    }
    // The same limit as LMDB's TTL index key (8 + 1 + table + key <= 511), so that a vault can
    // move between the backends.
    if (m.expires_at > 0 && 9 + m.table.size() + m.key.size() > kMaxKeyBytes) {
      return InvalidArgument("store key too long for a record with expiry");
    }
    if (m.op == Op::kInsert && m.expect.has_value()) {
      return InvalidArgument("store kInsert cannot carry an expected value");
    }
    if (m.op == Op::kMove) {
      OTD_RETURN_IF_ERROR(check_key(m.new_key));
      if (m.new_key == m.key) {
        return InvalidArgument("store kMove to the same key");
      }
    }
  }
  return Status::Ok();
}

void PgWriter::Enqueue(std::unique_ptr<PgRequest> r) {
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
    r->done(Unavailable("store is closing"));
  }
}

Status PgWriter::Apply(std::vector<Mutation> batch) {
  if (OnWriterThread()) {
    return Internal("store Apply called from the store writer thread (would deadlock)");
  }
  if (batch.empty()) {
    return Status::Ok();
  }
  OTD_RETURN_IF_ERROR(Validate(batch));
  auto r = std::make_unique<PgRequest>();
  r->batch = std::move(batch);
  std::promise<Status> promise;
  std::future<Status> result = promise.get_future();
  r->done = [&promise](Status s) { promise.set_value(std::move(s)); };
  Enqueue(std::move(r));
  return result.get();
}

void PgWriter::ApplyAsync(std::vector<Mutation> batch, std::function<void(Status)> done) {
  auto r = std::make_unique<PgRequest>();
  r->done = std::move(done);
  if (Status s = Validate(batch); !s.ok()) {
    r->result = std::move(s);
    r->skip = true;
  } else if (batch.empty()) {
    r->skip = true;
  }
  r->batch = std::move(batch);
  Enqueue(std::move(r));
}

void PgWriter::Loop() {
  for (;;) {
    std::vector<std::unique_ptr<PgRequest>> group;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;
      }
      size_t cost = 0;
      while (!queue_.empty()) {
        size_t c = std::max<size_t>(1, queue_.front()->batch.size());
        if (!group.empty() && cost + c > max_batch_mutations_) {
          break;
        }
        cost += c;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<PgRequest*> work;
    for (auto& r : group) {
      if (!r->skip) {
        work.push_back(r.get());
      }
    }
    if (!work.empty()) {
      RunGroup(work);
    }
    for (auto& r : group) {
      if (r->done) {
        r->done(std::move(r->result));
      }
    }
  }
}

void PgWriter::RunGroup(const std::vector<PgRequest*>& work) {
  for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
    if (!TryGroup(work) || attempt == kMaxAttempts) {
      return;
    }
    if (log_ != nullptr) {
      log_->Log(LogLevel::kDebug, "store_group_retry",
                {{"batches", static_cast<uint64_t>(work.size())},
                 {"attempt", static_cast<uint64_t>(attempt)}});
    }
  }
}

bool PgWriter::TryGroup(const std::vector<PgRequest*>& work) {
  auto fail_all = [&](const Status& s) {
    for (PgRequest* r : work) {
      r->result = s;
    }
  };
  if (!PgStillUsable(conn_.get())) {
    conn_.reset();
    auto c = PgConnect(settings_);
    if (!c.ok()) {
      fail_all(c.status());
      return false;
    }
    conn_ = std::move(c).value();
    PgWatchNotices(conn_.get(), &syncrep_cancelled_);
    // Prepared once per connection (so again after every reconnect): parsed and planned once.
    if (Status st =
            PgPrepare(conn_.get(), {{kApplyStmt, kApplyTextSql}}, settings_.client_timeout_ms());
        !st.ok()) {
      conn_.reset();
      fail_all(st);
      return false;
    }
  }
  // Parallel arrays for otd_apply (binary array format; the element views point into the
  // requests and into `scratch`, which outlive the statement).
  std::deque<std::string> scratch;  // push_back keeps earlier elements in place
  std::vector<std::optional<ByteView>> ends, ops, tbls, keys, vals, expects, exps, new_keys, keeps;
  auto keep = [&](std::string s) {
    scratch.push_back(std::move(s));
    return ByteView(reinterpret_cast<const uint8_t*>(scratch.back().data()), scratch.back().size());
  };
  size_t end = 0;
  for (PgRequest* r : work) {
    for (const Mutation& m : r->batch) {
      ops.emplace_back(keep(BigEndian(static_cast<uint32_t>(OpCode(m.op)), 4)));
      tbls.emplace_back(AsBytes(m.table));
      keys.emplace_back(ByteView(m.key));
      vals.emplace_back(ByteView(m.value));
      expects.push_back(m.expect.has_value() ? std::optional<ByteView>(ByteView(*m.expect))
                                             : std::nullopt);
      exps.emplace_back(keep(BigEndian(static_cast<uint64_t>(m.expires_at), 8)));
      new_keys.push_back(m.op == Op::kMove ? std::optional<ByteView>(ByteView(m.new_key))
                                           : std::nullopt);
      static const uint8_t kTrue = 1;
      static const uint8_t kFalse = 0;
      keeps.emplace_back(ByteView(m.keep_expiry ? &kTrue : &kFalse, 1));
    }
    end += r->batch.size();
    ends.emplace_back(keep(BigEndian(static_cast<uint32_t>(end), 4)));
  }
  PgParams params;
  params.Array(23, ends);
  params.Array(23, ops);
  params.Array(25, tbls);
  params.Array(17, keys);
  params.Array(17, vals);
  params.Array(17, expects);
  params.Array(20, exps);
  params.Array(17, new_keys);
  params.Array(16, keeps);

  PgTxnOutcome out = PgRunWriteTxn(conn_.get(), settings_.statement_timeout_ms, kApplyStmt, params,
                                   &syncrep_cancelled_, settings_.client_timeout_ms(),
                                   /*prepared=*/true);
  if (out.kind != PgTxnOutcome::Kind::kCommitted) {
    fail_all(out.error);
    // A deadlock or serialization failure rolled everything back: safe to try again.
    const bool retry = out.kind == PgTxnOutcome::Kind::kNotCommitted &&
                       (out.sqlstate == "40P01" || out.sqlstate == "40001");
    if (!retry) {
      conn_.reset();  // lost, read-only after a failover, or otherwise suspect: reconnect
    }
    return retry;
  }
  commits_.fetch_add(1, std::memory_order_relaxed);
  std::optional<std::vector<int>> codes;
  if (out.result != nullptr && PQntuples(out.result.get()) == 1) {
    codes = ParseCodes(std::string_view(PQgetvalue(out.result.get(), 0, 0),
                                        static_cast<size_t>(PQgetlength(out.result.get(), 0, 0))));
  }
  if (!codes.has_value() || codes->size() != work.size()) {
    // Committed, but which batches? Cannot happen with the function as created; never say Ok.
    fail_all(Internal("store: unexpected otd_apply result"));
    return false;
  }
  uint64_t ok = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    const int code = (*codes)[i];
    if (code == 0) {
      work[i]->result = Status::Ok();
      ++ok;
      continue;
    }
    const size_t index = static_cast<size_t>(code % 1000000);
    const std::vector<Mutation>& b = work[i]->batch;
    work[i]->result = FailureStatus(b[std::min(index, b.size() - 1)], code);
  }
  batches_.fetch_add(ok, std::memory_order_relaxed);
  return false;
}

}  // namespace otd::store::internal
