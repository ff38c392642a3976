#pragma once
// Test-only window into a Store: what cannot be observed through the public API.

#include "store/store.h"

namespace otd::store::internal {

struct StoreTestPeer {
  // The environment's flags as reported by mdb_env_get_flags (MDB_* bits from lmdb.h).
  static unsigned EnvFlags(const Store& store);
};

}  // namespace otd::store::internal
