#pragma once
// Move-only owners for LMDB handles (house style rule 6) and the one place where LMDB return
// codes become Status values. Private to store/.

#include <lmdb.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace otd::store::internal {

// MDB_env: mdb_env_close also after a failed mdb_env_open (lmdb.h requires it).
struct EnvCloser {
  void operator()(MDB_env* e) const noexcept {
    if (e != nullptr) {
      mdb_env_close(e);
    }
  }
};
using EnvPtr = std::unique_ptr<MDB_env, EnvCloser>;

// A transaction that aborts unless Commit() was called. Commit() and Abort() always leave the
// object empty (LMDB frees the handle in both cases, also when the commit fails).
class Txn {
 public:
  // `parent` non-null begins a nested write transaction (the parent may do nothing else until
  // the child ends). Returns the LMDB code; `out` is set only on success.
  static int Begin(MDB_env* env, MDB_txn* parent, unsigned flags, Txn* out);

  Txn() = default;
  Txn(Txn&& o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
  Txn& operator=(Txn&& o) noexcept {
    if (this != &o) {
      Abort();
      txn_ = std::exchange(o.txn_, nullptr);
    }
    return *this;
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() { Abort(); }

  MDB_txn* get() const { return txn_; }
  explicit operator bool() const { return txn_ != nullptr; }
  int Commit();
  void Abort() noexcept;

 private:
  MDB_txn* txn_ = nullptr;
};

// A cursor. Write-transaction cursors must be closed before their transaction ends (LMDB frees
// them at commit/abort), so a Cursor must always live in a scope nested inside its Txn's.
class Cursor {
 public:
  static int Open(MDB_txn* txn, MDB_dbi dbi, Cursor* out);
  Cursor() = default;
  Cursor(Cursor&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Cursor& operator=(Cursor&& o) noexcept {
    if (this != &o) {
      Close();
      c_ = std::exchange(o.c_, nullptr);
    }
    return *this;
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor() { Close(); }

  MDB_cursor* get() const { return c_; }
  void Close() noexcept {
    if (c_ != nullptr) {
      mdb_cursor_close(std::exchange(c_, nullptr));
    }
  }

 private:
  MDB_cursor* c_ = nullptr;
};

// Maps an LMDB return code (non-zero) to a Status. `what` names the operation for operators;
// messages never contain keys or values.
//   MDB_MAP_FULL            -> kResourceExhausted ("store map is full ...")
//   MDB_TXN_FULL            -> kResourceExhausted (transaction too large)
//   MDB_READERS_FULL        -> kResourceExhausted (reader table full)
//   MDB_BAD_VALSIZE         -> kInvalidArgument
//   MDB_PANIC and the rest  -> kUnavailable
Status LmdbError(int rc, std::string_view what, uint64_t map_size);

// True when `rc` means "the map or the transaction ran out of room": the batch can be retried
// alone and may then fit.
inline bool IsSpaceError(int rc) { return rc == MDB_MAP_FULL || rc == MDB_TXN_FULL; }

inline MDB_val Val(const void* data, size_t size) {
  // LMDB's API is not const-correct; it never writes through mv_data of an input MDB_val.
  return MDB_val{size, const_cast<void*>(data)};
}

}  // namespace otd::store::internal
