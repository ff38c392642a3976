#pragma once
// PgStore's schema (store/pg_store.h): versioned migrations, applied in order by PgMigrate()
// inside one transaction under an advisory lock, and the check Open() makes. Private to store/.
//
// otd_apply(ends, ops, tbls, keys, vals, expects, exps, new_keys, keeps) applies a group of
// caller batches: batch b holds the mutations ends[b-1]+1 .. ends[b] (1-based, arrays parallel).
// It returns one int per batch: 0 (applied) or kind * 1000000 + the failing mutation's index in
// its batch, the batch's own writes then undone. Kinds are PgFailure below.

#include <string>
#include <vector>

#include "common/status.h"

namespace otd::store::internal {

enum class PgOpCode : int {
  kInsert = 0,
  kPut = 1,
  kUpdate = 2,
  kDelete = 3,
  kErase = 4,
  kMove = 5
};

enum class PgFailure : int {
  kExists = 1,          // kInsert on an existing key
  kUpdateMissing = 2,   // kUpdate of a missing key
  kDeleteMissing = 3,   // kDelete of a missing key
  kMoveMissing = 4,     // kMove of a missing key
  kExpectMismatch = 5,  // `expect` did not match (or the key is missing)
  kMoveTarget = 6,      // kMove onto an existing key
  kMoveKeyTooLong = 7,  // kMove of a record with expiry to a key too long for it
};

struct PgMigration {
  int version;
  std::vector<std::string> statements;
};

// Every migration, in version order; the last one's version is kPgSchemaVersion.
const std::vector<PgMigration>& PgMigrations();

}  // namespace otd::store::internal
