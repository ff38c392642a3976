#include "store/internal/lmdb_handles.h"

#include <cerrno>
#include <string>

namespace otd::store::internal {

int Txn::Begin(MDB_env* env, MDB_txn* parent, unsigned flags, Txn* out) {
  MDB_txn* t = nullptr;
  int rc = mdb_txn_begin(env, parent, flags, &t);
  if (rc == MDB_SUCCESS) {
    *out = Txn();
    out->txn_ = t;
  }
  return rc;
}

int Txn::Commit() {
  if (txn_ == nullptr) {
    return EINVAL;
  }
  // mdb_txn_commit frees the handle whether or not it succeeds.
  return mdb_txn_commit(std::exchange(txn_, nullptr));
}

void Txn::Abort() noexcept {
  if (txn_ != nullptr) {
    mdb_txn_abort(std::exchange(txn_, nullptr));
  }
}

int Cursor::Open(MDB_txn* txn, MDB_dbi dbi, Cursor* out) {
  MDB_cursor* c = nullptr;
  int rc = mdb_cursor_open(txn, dbi, &c);
  if (rc == MDB_SUCCESS) {
    *out = Cursor();
    out->c_ = c;
  }
  return rc;
}

Status LmdbError(int rc, std::string_view what, uint64_t map_size) {
  std::string where(what);
  switch (rc) {
    case MDB_MAP_FULL:
      return ResourceExhausted("store map is full (map_size " + std::to_string(map_size) +
                               " bytes) during " + where + "; raise the map size");
    case MDB_TXN_FULL:
      return ResourceExhausted("store transaction too large during " + where + "; split the batch");
    case MDB_READERS_FULL: return ResourceExhausted("store reader table is full during " + where);
    case MDB_BAD_VALSIZE:
      return InvalidArgument("store key or value size not supported during " + where);
    case MDB_PANIC:
      return Unavailable("store environment panicked (fatal I/O error) during " + where +
                         "; restart required");
    default: return Unavailable("store " + where + " failed: " + mdb_strerror(rc));
  }
}

}  // namespace otd::store::internal
