#pragma once
// Test-only window into an LmdbStore: what cannot be observed through the public API.

#include "store/lmdb_store.h"

namespace otd::store::internal {

struct StoreTestPeer {
  // The environment's flags as reported by mdb_env_get_flags (MDB_* bits from lmdb.h).
  static unsigned EnvFlags(const LmdbStore& store);
};

}  // namespace otd::store::internal
