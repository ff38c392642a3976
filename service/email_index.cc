#include "service/email_index.h"

#include <openssl/crypto.h>

#include <algorithm>

#include "service/fields.h"
#include "service/tables.h"

namespace otd::service {

namespace {

constexpr std::string_view kAccountEmails = tables::kAccountEmails;
constexpr std::string_view kRecordId = "email-index";
constexpr uint8_t kTagAccountId = 10;

// The index entry of an address under any live index-key version (or the key a new one gets).
Result<Located> FindEntry(Vault& vault, std::string_view email) {
  std::string lower = LowerAscii(email);
  auto found = vault.keys().Find(kAccountEmails, "", lower);
  OPENSSL_cleanse(lower.data(), lower.size());
  return found;
}

}  // namespace

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  });
  return out;
}

Result<store::Mutation> EmailIndexInsert(Vault& vault, std::string_view email,
                                         std::string_view account_id) {
  // One account per address across key rotations: an entry under an older index key counts.
  OTD_ASSIGN_OR_RETURN(Located found, FindEntry(vault, email));
  if (found.value) {
    return AlreadyExists("an account already exists for this e-mail address");
  }
  Bytes key = std::move(found.key);
  SecretBytes plain = FieldWriter().Add(kTagAccountId, account_id).Finish();
  OTD_ASSIGN_OR_RETURN(
      Bytes sealed,
      vault.sealer().SealSystem(kAccountEmails, kRecordId, plain.Reveal(SecretAccess::Grant())));
  return store::Mutation{.op = store::Op::kInsert,
                         .table = std::string(kAccountEmails),
                         .key = std::move(key),
                         .value = std::move(sealed)};
}

Result<std::optional<std::string>> AccountIdForEmail(Vault& vault, const store::Store& store,
                                                     std::string_view email) {
  (void)store;  // the vault reads the store itself (every live index-key version)
  OTD_ASSIGN_OR_RETURN(Located found, FindEntry(vault, email));
  const std::optional<Bytes>& value = found.value;
  if (!value) {
    return std::optional<std::string>();
  }
  OTD_ASSIGN_OR_RETURN(SecretBytes plain,
                       vault.sealer().OpenSystem(kAccountEmails, kRecordId, *value));
  OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(plain));
  OTD_ASSIGN_OR_RETURN(std::string account_id, r.Text(kTagAccountId));
  return std::optional<std::string>(std::move(account_id));
}

}  // namespace otd::service
