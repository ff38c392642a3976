#pragma once
// The e-mail → account index (table account_emails): written when a registration is confirmed
// (service/accounts.cc), read by the e-mail access-token API (service/access_tokens.cc). One place
// owns its format: store key HMAC(index key, account_emails | "" | lower-cased address), value
// sealed with the system key, holding the account id.

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

// ASCII lower-casing (addresses are compared case-insensitively; hex digests too).
std::string LowerAscii(std::string_view s);

// The insert that maps `email` to `account_id` (kAlreadyExists on commit if the address is taken).
Result<store::Mutation> EmailIndexInsert(Vault& vault, std::string_view email,
                                         std::string_view account_id);
// The account id of `email`, or nullopt when no confirmed account has it.
Result<std::optional<std::string>> AccountIdForEmail(Vault& vault, const store::Store& store,
                                                     std::string_view email);

}  // namespace otd::service
