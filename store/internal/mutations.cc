#include "store/internal/mutations.h"

#include <cstring>
#include <string>

#include "store/internal/lmdb_handles.h"
#include "store/internal/ttl.h"

namespace otd::store::internal {

namespace {

bool Equal(const MDB_val& v, const Bytes& b) {
  return v.mv_size == b.size() && (b.empty() || std::memcmp(v.mv_data, b.data(), b.size()) == 0);
}

// kMove: the value and its expiry go from m.key to m.new_key (which must be free).
Status MoveRecord(const Env& env, MDB_txn* txn, const Mutation& m, MDB_dbi dbi, MDB_val current,
                  int* rc) {
  OTD_ASSIGN_OR_RETURN(int64_t expires_at, ExpiryIn(env, txn, m.table, m.key, rc));
  if (expires_at > 0 && TtlKeySize(m.table, m.new_key.size()) > env.max_key()) {
    return InvalidArgument("store key too long for a record with expiry");
  }
  // Copy the value first: the view into the map is not valid across the writes below.
  Bytes value(static_cast<const uint8_t*>(current.mv_data),
              static_cast<const uint8_t*>(current.mv_data) + current.mv_size);
  MDB_val to = Val(m.new_key.data(), m.new_key.size());
  MDB_val v = Val(value.data(), value.size());
  int r = mdb_put(txn, dbi, &to, &v, MDB_NOOVERWRITE);
  if (r == MDB_KEYEXIST) {
    return AlreadyExists("store mutation (table " + m.table + "): move target already exists");
  }
  if (r != 0) {
    *rc = r;
    return env.Fail(r, "put");
  }
  MDB_val from = Val(m.key.data(), m.key.size());
  if ((r = mdb_del(txn, dbi, &from, nullptr)) != 0) {
    *rc = r;
    return env.Fail(r, "delete");
  }
  Mutation removed{.op = Op::kErase, .table = m.table, .key = m.key};
  OTD_RETURN_IF_ERROR(UpdateTtl(env, txn, removed, /*removed=*/true, rc));
  Mutation added{.op = Op::kPut, .table = m.table, .key = m.new_key, .expires_at = expires_at};
  return UpdateTtl(env, txn, added, /*removed=*/false, rc);
}

}  // namespace

Status ApplyMutation(const Env& env, MDB_txn* txn, const Mutation& m, MDB_dbi dbi, size_t index,
                     int* rc) {
  auto where = [&](const char* what) {
    return "store mutation " + std::to_string(index) + " (table " + m.table + "): " + what;
  };
  MDB_val key = Val(m.key.data(), m.key.size());
  MDB_val current{};
  int r = mdb_get(txn, dbi, &key, &current);
  if (r != 0 && r != MDB_NOTFOUND) {
    *rc = r;
    return env.Fail(r, "read");
  }
  const bool exists = (r == 0);
  if (m.expect.has_value() && (!exists || !Equal(current, *m.expect))) {
    return FailedPrecondition(where("current value does not match the expected value"));
  }
  if (m.op == Op::kMove) {
    if (!exists) {
      return FailedPrecondition(where("move of a missing key"));
    }
    return MoveRecord(env, txn, m, dbi, current, rc);
  }
  bool remove = false;
  switch (m.op) {
    case Op::kMove: break;  // handled above
    case Op::kInsert:
      if (exists) {
        return AlreadyExists(where("key already exists"));
      }
      break;
    case Op::kPut: break;
    case Op::kUpdate:
      if (!exists) {
        return FailedPrecondition(where("update of a missing key"));
      }
      break;
    case Op::kDelete:
      if (!exists) {
        return FailedPrecondition(where("delete of a missing key"));
      }
      remove = true;
      break;
    case Op::kErase:
      if (!exists) {
        return Status::Ok();
      }
      remove = true;
      break;
  }
  if (remove) {
    r = mdb_del(txn, dbi, &key, nullptr);
  } else {
    MDB_val value = Val(m.value.data(), m.value.size());
    r = mdb_put(txn, dbi, &key, &value, 0);
  }
  if (r != 0) {
    *rc = r;
    return env.Fail(r, remove ? "delete" : "put");
  }
  if (m.keep_expiry && !remove) {
    return Status::Ok();
  }
  return UpdateTtl(env, txn, m, remove, rc);
}

}  // namespace otd::store::internal
