#include "service/access_codes.h"

#include <algorithm>
#include <sstream>

#include "crypto/encoding.h"
#include "crypto/random.h"
#include "service/fields.h"
#include "service/record.h"
#include "service/retry.h"
#include "service/tables.h"

namespace otd::service {

namespace {

using tables::kAccessCodeIndex;
using tables::kAccessCodes;

enum : uint8_t {
  kTagWrappedSecret = 1,
  kTagKekVersion = 2,
  kTagDescription = 3,
  kTagCreatedAt = 4,
  kTagExpiresAt = 5,
  kTagIndex = 6,
};

// Index lines: code \t created \t expires \t base64url(description)
std::string FormatIndex(const std::vector<AccessCodeInfo>& list) {
  std::string out;
  for (const auto& i : list) {
    out += i.code + "\t" + std::to_string(i.created_at) + "\t" + std::to_string(i.expires_at) +
           "\t" + crypto::Base64UrlEncode(AsBytes(i.description)) + "\n";
  }
  return out;
}

Result<std::vector<AccessCodeInfo>> ParseIndex(const std::string& text) {
  std::vector<AccessCodeInfo> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    AccessCodeInfo i;
    std::string created, expires, desc;
    if (!std::getline(f, i.code, '\t') || !std::getline(f, created, '\t') ||
        !std::getline(f, expires, '\t')) {
      return DataLoss("access code index is malformed");
    }
    std::getline(f, desc);
    i.created_at = std::stoll(created);
    i.expires_at = std::stoll(expires);
    if (!desc.empty()) {
      OTD_ASSIGN_OR_RETURN(Bytes d, crypto::Base64UrlDecode(desc));
      i.description.assign(d.begin(), d.end());
    }
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace

Result<std::vector<AccessCodeInfo>> AccessCodes::LoadIndex(std::string_view account_id, Bytes* key,
                                                           std::optional<Bytes>* raw) {
  OTD_ASSIGN_OR_RETURN(Located found,
                       vault_.keys().Find(kAccessCodeIndex, account_id, "", Vault::Ids::kPublic));
  *key = std::move(found.key);
  *raw = std::move(found.value);
  if (!raw->has_value()) {
    return std::vector<AccessCodeInfo>{};
  }
  OTD_ASSIGN_OR_RETURN(SecretBytes plain,
                       vault_.sealer().Open(kAccessCodeIndex, account_id, "index", **raw));
  OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(plain));
  OTD_ASSIGN_OR_RETURN(std::string text, r.Text(kTagIndex));
  return ParseIndex(text);
}

Result<store::Mutation> AccessCodes::IndexMutation(std::string_view account_id, const Bytes& key,
                                                   const std::optional<Bytes>& raw,
                                                   const std::vector<AccessCodeInfo>& list) {
  std::string text = FormatIndex(list);
  SecretBytes plain = FieldWriter().Add(kTagIndex, text).Finish();
  OTD_ASSIGN_OR_RETURN(Bytes sealed, vault_.sealer().Seal(kAccessCodeIndex, account_id, "index",
                                                          plain.Reveal(SecretAccess::Grant())));
  store::Mutation m{.op = raw ? store::Op::kUpdate : store::Op::kInsert,
                    .table = std::string(kAccessCodeIndex),
                    .key = key,
                    .value = std::move(sealed)};
  if (raw) {
    m.expect = *raw;
  }
  return m;
}

Result<Bytes> AccessCodes::SealCode(std::string_view account_id, std::string_view code,
                                    ByteView wrapped_secret, uint32_t kek_version,
                                    std::string_view description, int64_t created_at,
                                    int64_t expires_at) {
  SecretBytes plain = FieldWriter()
                          .Add(kTagWrappedSecret, wrapped_secret)
                          .AddU64(kTagKekVersion, kek_version)
                          .Add(kTagDescription, description)
                          .AddU64(kTagCreatedAt, static_cast<uint64_t>(created_at))
                          .AddU64(kTagExpiresAt, static_cast<uint64_t>(expires_at))
                          .Finish();
  return vault_.sealer().Seal(kAccessCodes, account_id, code, plain.Reveal(SecretAccess::Grant()));
}

void AccessCodes::MoveSecretToCurrentKek(std::string_view account_id, std::string_view code,
                                         const Bytes& record_key, const Bytes& current_record,
                                         const FieldReader& fields) {
  // After a key rotation, a code's secret is re-wrapped under the current KEK the first time it
  // is used (the store never holds the code, so no offline job can). Best effort: a failure or a
  // concurrent change (revocation, another request doing the same) leaves the record as it was,
  // still valid under its old KEK.
  auto moved = [&]() -> Result<Bytes> {
    OTD_ASSIGN_OR_RETURN(KeyVersions v, vault_.keys().CurrentVersions());
    OTD_ASSIGN_OR_RETURN(uint64_t old_kek, fields.U64(kTagKekVersion));
    if (old_kek >= v.kek) {
      return FailedPrecondition("already current");
    }
    OTD_ASSIGN_OR_RETURN(std::string wrapped, fields.Text(kTagWrappedSecret));
    OTD_ASSIGN_OR_RETURN(std::string description, fields.Text(kTagDescription));
    OTD_ASSIGN_OR_RETURN(uint64_t created, fields.U64(kTagCreatedAt));
    OTD_ASSIGN_OR_RETURN(uint64_t expires, fields.U64(kTagExpiresAt));
    Bytes rewrapped;
    {
      OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
      OTD_ASSIGN_OR_RETURN(
          rewrapped,
          FromToken(s.Rewrap(hsm::KeyRef::Persistent(KekLabel(static_cast<uint32_t>(old_kek))),
                             hsm::KeyRef::Persistent(KekLabel(v.kek)), AsBytes(wrapped),
                             hsm::KeyType::kHmacSha256)));
    }
    return SealCode(account_id, code, rewrapped, v.kek, description, static_cast<int64_t>(created),
                    static_cast<int64_t>(expires));
  }();
  if (!moved.ok()) {
    return;
  }
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kUpdate,
                   .table = std::string(kAccessCodes),
                   .key = record_key,
                   .value = std::move(moved).value(),
                   .expect = current_record,
                   .keep_expiry = true});
  store_.ApplyAsync(std::move(batch), [](const Status&) {});
}

Result<NewAccessCode> AccessCodes::Create(std::string_view account_id,
                                          std::string_view description) {
  const int64_t now = clock_.NowSeconds();
  NewAccessCode out;
  OTD_ASSIGN_OR_RETURN(out.code, crypto::RandomUrlSafeString(options_.code_chars));
  OTD_ASSIGN_OR_RETURN(out.secret, crypto::RandomUrlSafeSecret(options_.secret_chars));
  out.expires_at = now + options_.lifetime_seconds;

  OTD_ASSIGN_OR_RETURN(KeyVersions v, vault_.keys().CurrentVersions());
  Bytes wrapped;
  {
    OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
    OTD_ASSIGN_OR_RETURN(wrapped,
                         FromToken(s.ImportWrapped(hsm::KeyRef::Persistent(KekLabel(v.kek)),
                                                   hsm::KeyType::kHmacSha256, out.secret)));
  }
  OTD_ASSIGN_OR_RETURN(Bytes sealed, SealCode(account_id, out.code, wrapped, v.kek, description,
                                              now, out.expires_at));
  OTD_ASSIGN_OR_RETURN(Bytes record_key, vault_.keys().LookupKey(kAccessCodes, account_id, out.code,
                                                                 Vault::Ids::kPublic));

  return RetryOnConflict<Result<NewAccessCode>>(
      "this account's access codes", [&]() -> Attempt<Result<NewAccessCode>> {
        Bytes index_key;
        std::optional<Bytes> index_raw;
        OTD_ASSIGN_OR_RETURN(auto list, LoadIndex(account_id, &index_key, &index_raw));
        std::erase_if(list, [now](const AccessCodeInfo& i) { return i.expires_at <= now; });
        if (list.size() >= options_.max_per_account) {
          // A limit, not an outage: 409 naming it (kResourceExhausted would be a 503).
          return FailedPrecondition("this account has the maximum of " +
                                    std::to_string(options_.max_per_account) +
                                    " access codes; revoke one first");
        }
        list.push_back({out.code, std::string(description), now, out.expires_at});
        OTD_ASSIGN_OR_RETURN(store::Mutation index,
                             IndexMutation(account_id, index_key, index_raw, list));
        std::vector<store::Mutation> batch;
        batch.push_back({.op = store::Op::kInsert,
                         .table = std::string(tables::kAccessCodes),
                         .key = record_key,
                         .value = sealed,
                         .expires_at = out.expires_at});
        batch.push_back(std::move(index));
        Status s = store_.Apply(std::move(batch));
        if (IsLostRace(s)) {
          return kRetry;
        }
        if (!s.ok()) {
          return s;
        }
        log_.Info("access_code_created");
        return std::move(out);
      });
}

Result<std::vector<AccessCodeInfo>> AccessCodes::List(std::string_view account_id) {
  Bytes key;
  std::optional<Bytes> raw;
  OTD_ASSIGN_OR_RETURN(auto list, LoadIndex(account_id, &key, &raw));
  const int64_t now = clock_.NowSeconds();
  std::erase_if(list, [now](const AccessCodeInfo& i) { return i.expires_at <= now; });
  return list;
}

Status AccessCodes::Revoke(std::string_view account_id, std::string_view code) {
  OTD_ASSIGN_OR_RETURN(Located record,
                       vault_.keys().Find(kAccessCodes, account_id, code, Vault::Ids::kPublic));
  const Bytes& record_key = record.key;
  return RetryOnConflict<Status>("this account's access codes", [&]() -> Attempt<Status> {
    Bytes index_key;
    std::optional<Bytes> index_raw;
    OTD_ASSIGN_OR_RETURN(auto list, LoadIndex(account_id, &index_key, &index_raw));
    auto it = std::find_if(list.begin(), list.end(),
                           [&](const AccessCodeInfo& i) { return i.code == code; });
    if (it == list.end()) {
      return NotFound("no such access code");
    }
    list.erase(it);
    OTD_ASSIGN_OR_RETURN(store::Mutation index,
                         IndexMutation(account_id, index_key, index_raw, list));
    std::vector<store::Mutation> batch;
    batch.push_back(
        {.op = store::Op::kErase, .table = std::string(tables::kAccessCodes), .key = record_key});
    batch.push_back(std::move(index));
    Status s = store_.Apply(std::move(batch));
    if (IsLostRace(s)) {
      return kRetry;
    }
    if (s.ok()) {
      log_.Info("access_code_revoked");
    }
    return s;
  });
}

Status AccessCodes::Verify(std::string_view account_id, std::string_view code, ByteView canonical,
                           ByteView signature, const Vault::ReadAhead* ahead) {
  Status unknown = Unauthenticated(std::string(kUnknownAccessCode));
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kAccessCodes, account_id, code,
                                                         Vault::Ids::kPublic, ahead));
  const std::optional<Bytes>& value = found.value;
  if (!value) {
    return unknown;
  }
  auto plain = vault_.sealer().Open(kAccessCodes, account_id, code, *value, ahead);
  if (!plain.ok()) {
    return plain.status().code() == Code::kUnavailable ? plain.status() : unknown;
  }
  OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(*plain));
  OTD_ASSIGN_OR_RETURN(uint64_t expires, r.U64(kTagExpiresAt));
  if (static_cast<int64_t>(expires) <= clock_.NowSeconds()) {
    return Unauthenticated(std::string(kExpiredAccessCode));
  }
  OTD_ASSIGN_OR_RETURN(uint64_t kek_version, r.U64(kTagKekVersion));
  OTD_ASSIGN_OR_RETURN(std::string wrapped, r.Text(kTagWrappedSecret));
  {
    OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
    OTD_ASSIGN_OR_RETURN(hsm::KeyRef key,
                         FromToken(s.UnwrapCached(
                             hsm::KeyRef::Persistent(KekLabel(static_cast<uint32_t>(kek_version))),
                             AsBytes(wrapped), hsm::KeyType::kHmacSha256, hsm::KeyUsage::kSign)));
    OTD_ASSIGN_OR_RETURN(bool ok, FromToken(s.Verify(key, canonical, signature)));
    if (!ok) {
      return Unauthenticated(std::string(kSignatureMismatch));
    }
  }  // the session goes back to the pool before any further token work
  auto current = vault_.keys().CurrentVersions();
  if (current.ok() && kek_version < current->kek) {
    MoveSecretToCurrentKek(account_id, code, found.key, *value, r);
  }
  return Status::Ok();
}

}  // namespace otd::service
