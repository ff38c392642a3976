#pragma once
// Applying one store::Mutation inside an LMDB write transaction: its precondition, the write,
// and the TTL bookkeeping (store/internal/ttl.h). Private to store/; called by the writer only.

#include <lmdb.h>

#include <cstddef>

#include "store/internal/env.h"
#include "store/store.h"

namespace otd::store::internal {

// Returns the semantic result (kAlreadyExists, kFailedPrecondition, kInvalidArgument: the caller
// aborts only this batch) or, for an LMDB failure, sets *rc to the LMDB code (the caller must
// then abort the transaction) and returns env.Fail(...). `index` is the mutation's position in
// its batch, for messages.
Status ApplyMutation(const Env& env, MDB_txn* txn, const Mutation& m, MDB_dbi dbi, size_t index,
                     int* rc);

}  // namespace otd::store::internal
