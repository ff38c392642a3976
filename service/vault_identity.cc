// KeyHierarchy: initialisation and the store's identity (meta `vault_identity`): which vault a
// store holds and which token keys it belongs to (service/key_hierarchy.h VaultIdentity).

#include <algorithm>

#include "crypto/encoding.h"
#include "crypto/random.h"
#include "service/internal/meta.h"
#include "service/key_hierarchy.h"
#include "service/record.h"

namespace otd::service {

namespace {

using internal::kAccountKeysTable;
using internal::kHmacBytes;
using internal::kMetaIdentity;
using internal::kMetaIndexVersion;
using internal::kMetaKekVersion;
using internal::kMetaTable;
using internal::ParseU32;
using internal::U32Bytes;

constexpr std::string_view kFingerprintDomain = "otd-vault-fingerprint-v1";
constexpr uint8_t kIdentityFormat = 1;
constexpr size_t kVaultIdBytes = 16;

// vault_identity value: [format u8 = 1][vault id 16][fingerprint index version u32][fingerprint 32]
// [serial length u8][serial][label length u8][label].
Bytes EncodeIdentity(const VaultIdentity& id) {
  Bytes out;
  out.reserve(1 + id.vault_id.size() + 4 + id.fingerprint.size() + 2 + id.token_serial.size() +
              id.token_label.size());
  out.push_back(kIdentityFormat);
  out.insert(out.end(), id.vault_id.begin(), id.vault_id.end());
  Bytes v = U32Bytes(id.fingerprint_version);
  out.insert(out.end(), v.begin(), v.end());
  out.insert(out.end(), id.fingerprint.begin(), id.fingerprint.end());
  for (const std::string* s : {&id.token_serial, &id.token_label}) {
    const size_t n = std::min<size_t>(s->size(), 255);
    out.push_back(static_cast<uint8_t>(n));
    out.insert(out.end(), s->begin(), s->begin() + static_cast<std::ptrdiff_t>(n));
  }
  return out;
}

Result<VaultIdentity> DecodeIdentity(ByteView b) {
  const Status bad = DataLoss("the store's vault_identity record is malformed");
  constexpr size_t kFixed = 1 + kVaultIdBytes + 4 + kHmacBytes;
  if (b.size() < kFixed + 2 || b[0] != kIdentityFormat) {
    return bad;
  }
  VaultIdentity id;
  ByteView rest = b.subspan(1);
  auto take = [&rest](size_t n) {
    ByteView out = rest.first(n);
    rest = rest.subspan(n);
    return out;
  };
  ByteView vault_id = take(kVaultIdBytes);
  id.vault_id.assign(vault_id.begin(), vault_id.end());
  OTD_ASSIGN_OR_RETURN(id.fingerprint_version, ParseU32(take(4)));
  ByteView fingerprint = take(kHmacBytes);
  id.fingerprint.assign(fingerprint.begin(), fingerprint.end());
  for (std::string* s : {&id.token_serial, &id.token_label}) {
    if (rest.empty() || rest.size() - 1 < rest[0]) {
      return bad;
    }
    const size_t n = take(1)[0];
    ByteView text = take(n);
    s->assign(text.begin(), text.end());
  }
  const size_t at = b.size() - rest.size();
  if (at != b.size() || id.fingerprint_version == 0) {
    return bad;
  }
  return id;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    out += (out.empty() ? "" : ", ") + s;
  }
  return out;
}

}  // namespace

std::string VaultIdentity::ToString() const {
  return "vault " + crypto::HexEncode(vault_id) + " (recorded token: label=\"" + token_label +
         "\" serial=\"" + token_serial + "\")";
}

Result<std::vector<std::string>> KeyHierarchy::TokenVaultKeys() {
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(std::vector<std::string> keys, FromToken(s.KeyLabels("otd-kek-v")));
  OTD_ASSIGN_OR_RETURN(std::vector<std::string> index, FromToken(s.KeyLabels("otd-index-v")));
  keys.insert(keys.end(), index.begin(), index.end());
  return keys;
}

Result<Bytes> KeyHierarchy::Fingerprint(uint32_t index_version, ByteView vault_id) {
  Bytes msg(kFingerprintDomain.begin(), kFingerprintDomain.end());
  msg.insert(msg.end(), vault_id.begin(), vault_id.end());
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  return FromToken(s.Sign(hsm::KeyRef::Persistent(IndexKeyLabel(index_version)), msg));
}

Result<VaultIdentity> KeyHierarchy::NewIdentity(uint32_t index_version) {
  VaultIdentity id;
  id.vault_id.resize(kVaultIdBytes);
  OTD_RETURN_IF_ERROR(crypto::RandomBytes(id.vault_id));
  id.fingerprint_version = index_version;
  OTD_ASSIGN_OR_RETURN(id.fingerprint, Fingerprint(index_version, id.vault_id));
  const hsm::TokenIdentity token = token_.Identity();
  id.token_serial = token.serial;
  id.token_label = token.label;
  return id;
}

Result<std::optional<VaultIdentity>> KeyHierarchy::ReadIdentity() const {
  OTD_ASSIGN_OR_RETURN(auto value, store_.Get(kMetaTable, AsBytes(kMetaIdentity)));
  if (!value) {
    return std::optional<VaultIdentity>();
  }
  OTD_ASSIGN_OR_RETURN(VaultIdentity id, DecodeIdentity(*value));
  return std::optional<VaultIdentity>(std::move(id));
}

Result<std::string> KeyHierarchy::RecordMismatch(const VaultIdentity& id) {
  const std::string label = IndexKeyLabel(id.fingerprint_version);
  {
    OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
    OTD_ASSIGN_OR_RETURN(bool present, FromToken(s.HasKey(label)));
    if (!present) {
      return "the token has no " + label;
    }
  }
  OTD_ASSIGN_OR_RETURN(Bytes fp, Fingerprint(id.fingerprint_version, id.vault_id));
  if (!ConstantTimeEquals(fp, id.fingerprint)) {
    return "the token's " + label + " is another key than the store's (its fingerprint differs)";
  }
  return std::string();
}

Result<std::string> KeyHierarchy::SystemKeyMismatch(const KeyVersions& v) {
  {
    OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
    std::vector<std::string> needed = {KekLabel(v.kek)};
    for (uint32_t i = v.index; i >= v.index_min && i > 0; --i) {
      needed.push_back(IndexKeyLabel(i));
    }
    std::vector<std::string> missing;
    for (const auto& label : needed) {
      OTD_ASSIGN_OR_RETURN(bool present, FromToken(s.HasKey(label)));
      if (!present) {
        missing.push_back(label);
      }
    }
    if (!missing.empty()) {
      return "the token has no " + Join(missing);
    }
  }
  OTD_ASSIGN_OR_RETURN(Located system,
                       Find(kAccountKeysTable, kSystemOwner, DataKeyId(1), Ids::kPublic));
  if (!system.value) {
    bool sealed = false;
    OTD_RETURN_IF_ERROR(store_.ForEach(kAccountKeysTable, [&](ByteView, ByteView) {
      sealed = true;
      return false;
    }));
    if (sealed) {
      return std::string(
          "the store's data keys are keyed by another index key than the token's "
          "(the system data key is not found with it)");
    }
    return std::string();  // nothing sealed yet: nothing the token could fail to open
  }
  OTD_ASSIGN_OR_RETURN(WrappedKeyRecord rec, DecodeWrappedKey(*system.value));
  {
    OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
    OTD_ASSIGN_OR_RETURN(bool present, FromToken(s.HasKey(KekLabel(rec.kek_version))));
    if (!present) {
      return "the token has no " + KekLabel(rec.kek_version);
    }
  }
  Status unwrapped = CheckWrappedKey(*system.value);
  if (unwrapped.code() == Code::kDataLoss) {
    return "the store's system data key does not unwrap under the token's " +
           KekLabel(rec.kek_version) + " (another key)";
  }
  if (!unwrapped.ok()) {
    return TokenFailure(unwrapped);
  }
  return std::string();
}

Status KeyHierarchy::VerifyStoreIdentity(const std::string& store_path, bool adopt, bool* adopted) {
  const std::string where = "storage.path " + store_path;
  auto versions = ReadVersions();
  if (!versions.ok()) {
    if (versions.status().code() != Code::kFailedPrecondition) {
      return Status(versions.status().code(), where + ": " + versions.status().message());
    }
    OTD_ASSIGN_OR_RETURN(std::vector<std::string> existing, TokenVaultKeys());
    if (!existing.empty()) {
      return FailedPrecondition(
          where + " holds no vault, but the token in use (" + token_.Identity().ToString() +
          ") holds the keys of one (" + Join(existing) +
          "): is storage.path right? (a typo, a missing mount; `opentoken-admin init` refuses "
          "to start an empty store on these keys unless given --new-store)");
    }
    return FailedPrecondition(where + ": " + versions.status().message());
  }
  OTD_ASSIGN_OR_RETURN(std::optional<VaultIdentity> id, ReadIdentity());
  const hsm::TokenIdentity token = token_.Identity();
  if (id) {
    OTD_ASSIGN_OR_RETURN(std::string why, RecordMismatch(*id));
    if (!why.empty()) {
      return FailedPrecondition(
          where + " holds " + id->ToString() + ", but the token in use (" + token.ToString() +
          ") does not hold its keys: " + why +
          ". Select the token the store belongs to (hsm.token_serial, hsm.token_label) or "
          "restore that token from its backup; `opentoken-admin init` will not create keys for "
          "this store in this token");
    }
    if (id->token_serial != token.serial) {
      log_.Warn("store_token_serial_changed",
                {{"recorded_serial", id->token_serial},
                 {"token_serial", token.serial},
                 {"reason",
                  "the token holds the store's keys (fingerprint matches): restored "
                  "or cloned; `opentoken-admin init` records the new serial"}});
      if (adopt) {
        VaultIdentity updated = *id;
        updated.token_serial = token.serial;
        updated.token_label = token.label;
        std::vector<store::Mutation> batch;
        batch.push_back({.op = store::Op::kUpdate,
                         .table = std::string(kMetaTable),
                         .key = ToBytes(kMetaIdentity),
                         .value = EncodeIdentity(updated),
                         .expect = EncodeIdentity(*id)});
        Status s = store_.Apply(std::move(batch));
        if (!s.ok() && s.code() != Code::kFailedPrecondition) {
          return s;  // kFailedPrecondition: another process updated it meanwhile
        }
      }
    }
    return Status::Ok();
  }
  // A store from before the record existed: the system data key proves whose keys it holds.
  OTD_ASSIGN_OR_RETURN(std::string why, SystemKeyMismatch(*versions));
  if (!why.empty()) {
    return FailedPrecondition(
        where + " holds records sealed under keys that the token in use (" + token.ToString() +
        ") does not hold: " + why +
        ". Select the token the store belongs to (hsm.token_serial, hsm.token_label) or restore "
        "that token from its backup; `opentoken-admin init` will not create keys for this store "
        "in this token");
  }
  if (!adopt) {
    return Status::Ok();
  }
  OTD_ASSIGN_OR_RETURN(VaultIdentity fresh, NewIdentity(versions->index_min));
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert,
                   .table = std::string(kMetaTable),
                   .key = ToBytes(kMetaIdentity),
                   .value = EncodeIdentity(fresh)});
  Status s = store_.Apply(std::move(batch));
  if (s.code() == Code::kAlreadyExists) {
    return VerifyStoreIdentity(store_path, /*adopt=*/false);  // another process recorded it
  }
  OTD_RETURN_IF_ERROR(s);
  if (adopted != nullptr) {
    *adopted = true;
  }
  log_.Info("store_identity_recorded",
            {{"vault", crypto::HexEncode(fresh.vault_id)}, {"token_serial", fresh.token_serial}});
  return Status::Ok();
}

Result<InitReport> KeyHierarchy::InitKeys(const InitOptions& options) {
  InitReport report;
  report.versions = {1, 1};
  const std::string where = "storage.path " + options.store_path;
  OTD_ASSIGN_OR_RETURN(auto kek, store_.Get(kMetaTable, AsBytes(kMetaKekVersion)));
  OTD_ASSIGN_OR_RETURN(auto index, store_.Get(kMetaTable, AsBytes(kMetaIndexVersion)));
  if (kek.has_value() != index.has_value()) {
    return DataLoss(where + ": the key versions recorded in the store are inconsistent");
  }
  if (!kek) {
    // No vault in this store yet. It must be empty, and a token that already holds the keys of a
    // vault means storage.path is probably wrong (a typo, a missing mount): creating a fresh
    // store there would answer 404 for every token the clients hold.
    OTD_ASSIGN_OR_RETURN(store::Stats stats, store_.GetStats());
    uint64_t records = 0;
    for (const auto& [table, t] : stats.tables) {
      records += t.entries;
    }
    if (records > 0) {
      return DataLoss(where + " holds " + std::to_string(records) +
                      " records but no key versions: not a store `opentoken-admin init` made; "
                      "refusing to initialise it");
    }
    OTD_ASSIGN_OR_RETURN(std::vector<std::string> existing, TokenVaultKeys());
    if (!existing.empty() && !options.new_store) {
      return FailedPrecondition(
          where + " holds no vault, but the token in use (" + token_.Identity().ToString() +
          ") already holds the keys of one (" + Join(existing) +
          "). If storage.path is wrong (a typo, a missing mount), fix it: a new store would not "
          "find any of that vault's records. To start a second, separate store on this token's "
          "keys, run `opentoken-admin init --new-store`");
    }
    OTD_RETURN_IF_ERROR(CreateTokenKeys(report));
    OTD_ASSIGN_OR_RETURN(VaultIdentity id, NewIdentity(1));
    std::vector<store::Mutation> batch;
    for (auto key : {kMetaKekVersion, kMetaIndexVersion}) {
      batch.push_back({.op = store::Op::kInsert,
                       .table = std::string(kMetaTable),
                       .key = ToBytes(key),
                       .value = U32Bytes(1)});
    }
    batch.push_back({.op = store::Op::kInsert,
                     .table = std::string(kMetaTable),
                     .key = ToBytes(kMetaIdentity),
                     .value = EncodeIdentity(id)});
    Status applied = store_.Apply(std::move(batch));
    if (applied.code() == Code::kAlreadyExists) {
      return FailedPrecondition(where +
                                ": another `init` created this store at the same time; "
                                "run init again");
    }
    OTD_RETURN_IF_ERROR(applied);
    report.created_store = true;
    log_.Info("store_created", {{"vault", crypto::HexEncode(id.vault_id)},
                                {"token_serial", id.token_serial},
                                {"new_store", options.new_store}});
  } else {
    if (options.new_store) {
      return FailedPrecondition(where +
                                " already holds a vault; --new-store only starts an "
                                "empty store (leave it out to check and complete this one)");
    }
    // The token must hold this store's keys before anything is created in it: keys made for a
    // store that belongs to another token would leave all of its records unreadable.
    OTD_RETURN_IF_ERROR(
        VerifyStoreIdentity(options.store_path, /*adopt=*/true, &report.recorded_identity));
    OTD_RETURN_IF_ERROR(EnsureAuditKey());  // upgrades: stores from before the audit trail
  }
  OTD_ASSIGN_OR_RETURN(report.versions, CurrentVersions());
  // The system owner's data key (for records that belong to no account).
  OTD_ASSIGN_OR_RETURN(bool has_system_key, HasDataKey(kSystemOwner));
  if (!has_system_key) {
    OTD_ASSIGN_OR_RETURN(store::Mutation m, NewAccountKeyMutation(kSystemOwner));
    std::vector<store::Mutation> b;
    b.push_back(std::move(m));
    OTD_RETURN_IF_ERROR(store_.Apply(std::move(b)));
  }
  log_.Info("keys_initialised", {{"created_kek", report.created_kek},
                                 {"created_index", report.created_index},
                                 {"kek_version", report.versions.kek},
                                 {"index_version", report.versions.index}});
  return report;
}

}  // namespace otd::service
