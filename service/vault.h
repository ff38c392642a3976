#pragma once
// Vault: the key hierarchy (service/key_hierarchy.h), the nonce budget (service/nonce_budget.h)
// and the sealer (service/sealer.h) of one token and one store, built together: the services take
// a Vault& and use the part they need (vault.keys().Find(...), vault.sealer().Seal(...)).
//
// Thread safety: thread safe; the parts are.

#include <string_view>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "hsm/hsm.h"
#include "service/key_hierarchy.h"
#include "service/nonce_budget.h"
#include "service/sealer.h"
#include "service/tables.h"
#include "store/store.h"

namespace otd::service {

class Vault {
 public:
  using Ids = KeyHierarchy::Ids;
  using ReadAhead = KeyHierarchy::ReadAhead;

  Vault(hsm::Token& token, store::Store& store, Logger& log, NonceBudgetOptions budget = {})
      : keys_(token, store, log),
        budget_(keys_, store, log, budget),
        sealer_(token, keys_, budget_) {}
  Vault(const Vault&) = delete;
  Vault& operator=(const Vault&) = delete;

  KeyHierarchy& keys() { return keys_; }
  NonceBudget& budget() { return budget_; }
  Sealer& sealer() { return sealer_; }

  // The mutations that destroy an owner's data keys (every version) and their usage counter:
  // every record sealed with them becomes unreadable for good (crypto-shredding).
  Result<std::vector<store::Mutation>> DeleteAccountKeyMutations(std::string_view account);

 private:
  KeyHierarchy keys_;
  NonceBudget budget_;  // uses keys_
  Sealer sealer_;       // uses keys_ and budget_
};

}  // namespace otd::service
