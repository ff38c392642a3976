#include "service/tokens.h"

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/random.h"
#include "service/fields.h"
#include "service/tables.h"

namespace otd::service {

namespace {

constexpr std::string_view kTokens = tables::kTokens;

enum : uint8_t {
  kTagContentType = 1,
  kTagPublic = 2,
  kTagCreatedAt = 3,
  kTagExpiresAt = 4,
  kTagPayload = 5,
};

}  // namespace

Result<PreparedToken> Tokens::Prepare(std::string_view account_id, std::string_view content_type,
                                      ByteView payload, bool is_public, int64_t expires_at,
                                      const Vault::ReadAhead* ahead) {
  const int64_t now = clock_.NowSeconds();
  if (expires_at != 0 && expires_at <= now) {
    return InvalidArgument("expires must be in the future");
  }
  if (options_.max_lifetime_seconds > 0 &&
      (expires_at == 0 || expires_at > now + options_.max_lifetime_seconds)) {
    expires_at = now + options_.max_lifetime_seconds;
  }
  PreparedToken t{.bytes = payload.size(), .is_public = is_public};
  OTD_ASSIGN_OR_RETURN(t.id, crypto::RandomUrlSafeString(options_.id_chars));
  SecretBytes plain = FieldWriter()
                          .Add(kTagContentType, content_type)
                          .AddU64(kTagPublic, is_public ? 1 : 0)
                          .AddU64(kTagCreatedAt, static_cast<uint64_t>(now))
                          .AddU64(kTagExpiresAt, static_cast<uint64_t>(expires_at))
                          .Add(kTagPayload, payload)
                          .Finish();
  // The worker never waits for the nonce lease's commit: Commit chains the write behind it.
  OTD_ASSIGN_OR_RETURN(Sealed sealed,
                       vault_.sealer().SealDeferred(kTokens, account_id, t.id,
                                                    plain.Reveal(SecretAccess::Grant()), ahead));
  OTD_ASSIGN_OR_RETURN(Bytes key, vault_.keys().LookupKey(kTokens, account_id, t.id));
  t.batch.push_back({.op = store::Op::kInsert,
                     .table = std::string(kTokens),
                     .key = std::move(key),
                     .value = std::move(sealed.bytes),
                     .expires_at = expires_at});
  t.lease = std::move(sealed.gate);
  return t;
}

void Tokens::Commit(PreparedToken token, std::function<void(Status)> done) {
  const auto bytes = static_cast<int64_t>(token.bytes);
  const bool is_public = token.is_public;
  auto write = [this, bytes, is_public, batch = std::move(token.batch),
                done = std::move(done)](Status lease) mutable {
    if (!lease.ok()) {
      done(std::move(lease));  // the encryption's lease did not become durable: store nothing
      return;
    }
    store_.ApplyAsync(std::move(batch), [this, bytes, is_public, done = std::move(done)](Status s) {
      if (s.ok()) {
        log_.Info("tokenized", {{"bytes", bytes}, {"public", is_public}});
      }
      done(std::move(s));
    });
  };
  if (token.lease) {
    token.lease->Then(std::move(write));  // on the writer thread, once the lease is durable
  } else {
    write(Status::Ok());
  }
}

Result<Vault::ReadAhead> Tokens::SignedReadAhead(std::string_view account_id,
                                                 std::string_view access_code,
                                                 std::string_view token_id) {
  std::string data_key_id;
  std::vector<KeyHierarchy::Wanted> wanted = {
      {.table = tables::kAccessCodes,
       .account = account_id,
       .id = access_code,
       .ids = Vault::Ids::kPublic},
      KeyHierarchy::DataKeyWanted(account_id, 1, data_key_id)};
  if (!token_id.empty()) {
    wanted.push_back({.table = kTokens, .account = account_id, .id = token_id});
  }
  return vault_.keys().ReadTogether(wanted);
}

Result<StoredToken> Tokens::Get(std::string_view account_id, std::string_view token_id,
                                const Vault::ReadAhead* ahead) {
  const Status not_found = NotFound("no such token");
  OTD_ASSIGN_OR_RETURN(
      Located found, vault_.keys().Find(kTokens, account_id, token_id, Vault::Ids::kSecret, ahead));
  const std::optional<Bytes>& value = found.value;
  if (!value) {
    // Spend what a hit spends (an unwrap and a failing decryption) so that a miss cannot be told
    // from a wrong account or a tampered record by its timing.
    static const Bytes kDummy = [] {
      Bytes d(1 + 4 + 12 + 16 + 64, 0);
      d[0] = 0x01;
      d[4] = 0x01;
      return d;
    }();
    (void)vault_.sealer().OpenSystem(kTokens, token_id, kDummy);
    return not_found;
  }
  auto plain = vault_.sealer().Open(kTokens, account_id, token_id, *value, ahead);
  if (!plain.ok()) {
    return plain.status().code() == Code::kUnavailable ? plain.status() : not_found;
  }
  OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(*plain));
  StoredToken t;
  OTD_ASSIGN_OR_RETURN(t.content_type, r.Text(kTagContentType));
  OTD_ASSIGN_OR_RETURN(uint64_t pub, r.U64(kTagPublic));
  OTD_ASSIGN_OR_RETURN(uint64_t created, r.U64(kTagCreatedAt));
  OTD_ASSIGN_OR_RETURN(uint64_t expires, r.U64(kTagExpiresAt));
  t.is_public = pub == 1;
  t.created_at = static_cast<int64_t>(created);
  t.expires_at = static_cast<int64_t>(expires);
  if (t.expires_at != 0 && t.expires_at <= clock_.NowSeconds()) {
    return not_found;
  }
  OTD_ASSIGN_OR_RETURN(t.payload, r.Secret(kTagPayload));
  OTD_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(*value));
  digest.resize(16);
  t.etag = "\"" + crypto::Base64UrlEncode(digest) + "\"";
  return t;
}

Status Tokens::Delete(std::string_view account_id, std::string_view token_id) {
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kTokens, account_id, token_id));
  Bytes key = std::move(found.key);
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kDelete, .table = std::string(kTokens), .key = std::move(key)});
  Status s = store_.Apply(std::move(batch));
  if (s.code() == Code::kFailedPrecondition) {
    return NotFound("no such token");
  }
  OTD_RETURN_IF_ERROR(s);
  log_.Info("token_deleted");
  return Status::Ok();
}

}  // namespace otd::service
