#include "service/vault.h"

namespace otd::service {

Result<std::vector<store::Mutation>> Vault::DeleteAccountKeyMutations(std::string_view account) {
  uint32_t newest = 1;
  OTD_ASSIGN_OR_RETURN(store::Mutation usage, budget_.EraseMutation(account, &newest));
  OTD_ASSIGN_OR_RETURN(std::vector<store::Mutation> out,
                       keys_.EraseDataKeyMutations(account, newest));
  out.push_back(std::move(usage));
  return out;
}

}  // namespace otd::service
