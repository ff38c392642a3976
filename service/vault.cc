#include "service/vault.h"

#include <tuple>

#include "crypto/encoding.h"
#include "crypto/random.h"
#include "service/audit.h"
#include "service/record.h"
#include "service/tables.h"

namespace otd::service {

namespace {

constexpr std::string_view kMetaTable = tables::kMeta;
constexpr std::string_view kAccountKeysTable = tables::kAccountKeys;
constexpr std::string_view kMetaKekVersion = "kek_version";
constexpr std::string_view kMetaIndexVersion = "index_version";
constexpr std::string_view kMetaIndexMinVersion = "index_min_version";
constexpr std::string_view kMetaIdentity = "vault_identity";
constexpr std::string_view kFingerprintDomain = "otd-vault-fingerprint-v1";
constexpr uint8_t kIdentityFormat = 1;
constexpr size_t kVaultIdBytes = 16;
constexpr size_t kHmacBytes = 32;
constexpr std::string_view kKeyUsageTable = tables::kKeyUsage;
constexpr std::string_view kUsageId = "usage";

std::string DataKeyId(uint32_t version) { return "data-key-v" + std::to_string(version); }

// key_usage value: [data key version u32][encryptions reserved with it u64], big-endian.
Bytes EncodeUsage(uint32_t version, uint64_t reserved) {
  Bytes out;
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<uint8_t>(version >> (8 * i)));
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(reserved >> (8 * i)));
  return out;
}

Result<std::pair<uint32_t, uint64_t>> DecodeUsage(ByteView b) {
  if (b.size() != 12) {
    return DataLoss("key usage record has the wrong length");
  }
  uint32_t version = 0;
  uint64_t reserved = 0;
  for (int i = 0; i < 4; ++i) version = (version << 8) | b[i];
  for (int i = 4; i < 12; ++i) reserved = (reserved << 8) | b[i];
  if (version == 0) {
    return DataLoss("key usage record names data key version 0");
  }
  return std::make_pair(version, reserved);
}

Bytes U32Bytes(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

Result<uint32_t> ParseU32(const Bytes& b) {
  if (b.size() != 4) {
    return DataLoss("meta value has the wrong length");
  }
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

void PutField(Bytes& out, std::string_view s) {
  out.push_back(static_cast<uint8_t>(s.size() >> 8));
  out.push_back(static_cast<uint8_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

Status CheckKeyAttributes(const std::string& label, const hsm::KeyAttributes& a) {
  if (!a.sensitive || a.extractable || !a.always_sensitive || !a.never_extractable ||
      a.value_readable) {
    return Internal("token key " + label +
                    " is not sensitive and non-extractable; refusing to use it");
  }
  return Status::Ok();
}


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
  size_t at = 1;
  id.vault_id.assign(b.begin() + at, b.begin() + at + kVaultIdBytes);
  at += kVaultIdBytes;
  OTD_ASSIGN_OR_RETURN(id.fingerprint_version, ParseU32(Bytes(b.begin() + at, b.begin() + at + 4)));
  at += 4;
  id.fingerprint.assign(b.begin() + at, b.begin() + at + kHmacBytes);
  at += kHmacBytes;
  for (std::string* s : {&id.token_serial, &id.token_label}) {
    if (at >= b.size() || b.size() - at - 1 < b[at]) {
      return bad;
    }
    const size_t n = b[at++];
    s->assign(b.begin() + at, b.begin() + at + n);
    at += n;
  }
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

Status TokenFailure(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
    case Code::kDataLoss:
    case Code::kInvalidArgument:
    case Code::kResourceExhausted:
    case Code::kUnavailable:
      return s;
    default:
      return Unavailable("HSM: " + s.message());
  }
}

std::string KekLabel(uint32_t version) { return "otd-kek-v" + std::to_string(version); }
std::string IndexKeyLabel(uint32_t version) { return "otd-index-v" + std::to_string(version); }

Result<KeyVersions> Vault::ReadVersions() const {
  KeyVersions v;
  OTD_ASSIGN_OR_RETURN(auto kek, store_.Get(kMetaTable, AsBytes(kMetaKekVersion)));
  OTD_ASSIGN_OR_RETURN(auto index, store_.Get(kMetaTable, AsBytes(kMetaIndexVersion)));
  if (!kek || !index) {
    return FailedPrecondition(
        "vault keys are not initialised: run `opentoken-admin init --config FILE` first");
  }
  OTD_ASSIGN_OR_RETURN(v.kek, ParseU32(*kek));
  OTD_ASSIGN_OR_RETURN(v.index, ParseU32(*index));
  OTD_ASSIGN_OR_RETURN(auto index_min, store_.Get(kMetaTable, AsBytes(kMetaIndexMinVersion)));
  if (index_min) {
    OTD_ASSIGN_OR_RETURN(v.index_min, ParseU32(*index_min));
  }
  if (v.kek == 0 || v.index == 0 || v.index_min == 0 || v.index_min > v.index) {
    return DataLoss("the key versions recorded in the store are inconsistent");
  }
  return v;
}

Result<KeyVersions> Vault::CurrentVersions() const {
  constexpr auto kVersionsTtl = std::chrono::seconds(5);
  {
    std::lock_guard lock(cache_mu_);
    if (versions_ && std::chrono::steady_clock::now() - versions_read_ < kVersionsTtl) {
      return *versions_;
    }
  }
  OTD_ASSIGN_OR_RETURN(KeyVersions v, ReadVersions());
  bool changed = false;
  {
    std::lock_guard lock(cache_mu_);
    changed = versions_.has_value() && (versions_->kek != v.kek || versions_->index != v.index);
    versions_ = v;
    versions_read_ = std::chrono::steady_clock::now();
  }
  if (changed && versions_observer_) {
    versions_observer_(v);
  }
  return v;
}

Status Vault::EnsureTokenKeys(uint32_t kek_version, uint32_t index_version, bool* created_kek,
                              bool* created_index) {
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  const std::string kek = KekLabel(kek_version);
  const std::string index = IndexKeyLabel(index_version);
  OTD_ASSIGN_OR_RETURN(bool has_kek, s.HasKey(kek));
  if (!has_kek) {
    OTD_RETURN_IF_ERROR(s.GenerateKey(kek, hsm::KeyType::kAes256, hsm::KeyUsage::kWrap));
    *created_kek = true;
  }
  OTD_ASSIGN_OR_RETURN(bool has_index, s.HasKey(index));
  if (!has_index) {
    OTD_RETURN_IF_ERROR(s.GenerateKey(index, hsm::KeyType::kHmacSha256, hsm::KeyUsage::kSign));
    *created_index = true;
  }
  for (const auto& label : {kek, index}) {
    OTD_ASSIGN_OR_RETURN(auto attrs, s.ReadAttributes(hsm::KeyRef::Persistent(label)));
    OTD_RETURN_IF_ERROR(CheckKeyAttributes(label, attrs));
  }
  return Status::Ok();
}

Status Vault::CreateTokenKeys(InitReport& report) {
  OTD_RETURN_IF_ERROR(EnsureTokenKeys(1, 1, &report.created_kek, &report.created_index));
  return EnsureAuditKey();
}

Status Vault::EnsureAuditKey() {
  // The audit trail's key (service/audit.h): HMAC-SHA256, never rotated (it only authenticates).
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(bool has_audit, s.HasKey(kAuditKeyLabel));
  if (!has_audit) {
    OTD_RETURN_IF_ERROR(
        s.GenerateKey(kAuditKeyLabel, hsm::KeyType::kHmacSha256, hsm::KeyUsage::kSign));
  }
  OTD_ASSIGN_OR_RETURN(auto attrs,
                       s.ReadAttributes(hsm::KeyRef::Persistent(std::string(kAuditKeyLabel))));
  return CheckKeyAttributes(std::string(kAuditKeyLabel), attrs);
}

Result<RotateReport> Vault::RotateKeys() {
  RotateReport report;
  OTD_ASSIGN_OR_RETURN(report.before, ReadVersions());
  report.after = report.before;
  report.after.kek = report.before.kek + 1;
  report.after.index = report.before.index + 1;
  OTD_RETURN_IF_ERROR(EnsureTokenKeys(report.after.kek, report.after.index, &report.created_kek,
                                      &report.created_index));
  // Both versions move in one commit, and only from the versions read above.
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kUpdate, .table = std::string(kMetaTable),
                   .key = ToBytes(kMetaKekVersion), .value = U32Bytes(report.after.kek),
                   .expect = U32Bytes(report.before.kek)});
  batch.push_back({.op = store::Op::kUpdate, .table = std::string(kMetaTable),
                   .key = ToBytes(kMetaIndexVersion), .value = U32Bytes(report.after.index),
                   .expect = U32Bytes(report.before.index)});
  Status applied = store_.Apply(std::move(batch));
  if (applied.code() == Code::kFailedPrecondition) {
    return FailedPrecondition("another key rotation ran at the same time; run rotate-keys again");
  }
  OTD_RETURN_IF_ERROR(applied);
  {
    std::lock_guard lock(cache_mu_);
    versions_.reset();
  }
  log_.Info("keys_rotated", {{"kek_version", report.after.kek},
                             {"index_version", report.after.index},
                             {"created_kek", report.created_kek},
                             {"created_index", report.created_index}});
  return report;
}

Result<RewrapProgress> Vault::RewrapDataKeys(
    const std::function<void(const RewrapProgress&)>& progress) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, ReadVersions());
  // Collect first (the token must not be called inside a read transaction).
  std::vector<std::pair<Bytes, Bytes>> old;
  OTD_RETURN_IF_ERROR(store_.ForEach(kAccountKeysTable, [&](ByteView key, ByteView value) {
    auto rec = DecodeWrappedKey(value);
    if (rec.ok() && rec->kek_version < v.kek) {
      old.emplace_back(Bytes(key.begin(), key.end()), Bytes(value.begin(), value.end()));
    }
    return true;
  }));
  RewrapProgress p;
  p.total = old.size();
  if (progress) {
    progress(p);
  }
  const hsm::KeyRef to = hsm::KeyRef::Persistent(KekLabel(v.kek));
  for (auto& [key, value] : old) {
    OTD_ASSIGN_OR_RETURN(WrappedKeyRecord rec, DecodeWrappedKey(value));
    Bytes moved;
    {
      OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
      OTD_ASSIGN_OR_RETURN(moved, FromToken(s.Rewrap(hsm::KeyRef::Persistent(KekLabel(rec.kek_version)),
                                                     to, rec.wrapped, hsm::KeyType::kAes256)));
    }
    // kPut with the old value expected: a key deleted (shredded) or changed meanwhile is left
    // alone. The expiry must be carried over: a registration's key expires with it.
    std::vector<store::Mutation> batch;
    batch.push_back({.op = store::Op::kUpdate, .table = std::string(kAccountKeysTable),
                     .key = key, .value = EncodeWrappedKey({v.kek, std::move(moved)}),
                     .expect = value, .keep_expiry = true});
    Status applied = store_.Apply(std::move(batch));
    if (applied.code() == Code::kFailedPrecondition) {
      ++p.skipped;
    } else {
      OTD_RETURN_IF_ERROR(applied);
      ++p.done;
    }
    if (progress) {
      progress(p);
    }
  }
  if (p.total > 0) {
    log_.Info("data_keys_rewrapped", {{"kek_version", v.kek},
                                      {"moved", static_cast<int64_t>(p.done)},
                                      {"skipped", static_cast<int64_t>(p.skipped)}});
  }
  return p;
}

uint32_t Vault::IndexVersionOfKey(ByteView store_key) {
  if (store_key.size() == kHmacBytes) {
    return 1;
  }
  if (store_key.size() == kHmacBytes + 4) {
    uint32_t v = (uint32_t{store_key[0]} << 24) | (uint32_t{store_key[1]} << 16) |
                 (uint32_t{store_key[2]} << 8) | uint32_t{store_key[3]};
    return v >= 2 ? v : 0;
  }
  return 0;
}

Result<InitReport> Vault::InitKeys(const InitOptions& options) {
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
      batch.push_back({.op = store::Op::kInsert, .table = std::string(kMetaTable),
                       .key = ToBytes(key), .value = U32Bytes(1)});
    }
    batch.push_back({.op = store::Op::kInsert, .table = std::string(kMetaTable),
                     .key = ToBytes(kMetaIdentity), .value = EncodeIdentity(id)});
    Status applied = store_.Apply(std::move(batch));
    if (applied.code() == Code::kAlreadyExists) {
      return FailedPrecondition(where + ": another `init` created this store at the same time; "
                                "run init again");
    }
    OTD_RETURN_IF_ERROR(applied);
    report.created_store = true;
    log_.Info("store_created", {{"vault", crypto::HexEncode(id.vault_id)},
                                {"token_serial", id.token_serial},
                                {"new_store", options.new_store}});
  } else {
    if (options.new_store) {
      return FailedPrecondition(where + " already holds a vault; --new-store only starts an "
                                "empty store (leave it out to check and complete this one)");
    }
    // The token must hold this store's keys before anything is created in it: keys made for a
    // store that belongs to another token would leave all of its records unreadable.
    OTD_RETURN_IF_ERROR(VerifyStoreIdentity(options.store_path, /*adopt=*/true,
                                            &report.recorded_identity));
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

Result<std::vector<std::string>> Vault::TokenVaultKeys() {
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(std::vector<std::string> keys, FromToken(s.KeyLabels("otd-kek-v")));
  OTD_ASSIGN_OR_RETURN(std::vector<std::string> index, FromToken(s.KeyLabels("otd-index-v")));
  keys.insert(keys.end(), index.begin(), index.end());
  return keys;
}

Result<Bytes> Vault::Fingerprint(uint32_t index_version, ByteView vault_id) {
  Bytes msg(kFingerprintDomain.begin(), kFingerprintDomain.end());
  msg.insert(msg.end(), vault_id.begin(), vault_id.end());
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  return FromToken(s.Sign(hsm::KeyRef::Persistent(IndexKeyLabel(index_version)), msg));
}

Result<VaultIdentity> Vault::NewIdentity(uint32_t index_version) {
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

Result<std::optional<VaultIdentity>> Vault::ReadIdentity() const {
  OTD_ASSIGN_OR_RETURN(auto value, store_.Get(kMetaTable, AsBytes(kMetaIdentity)));
  if (!value) {
    return std::optional<VaultIdentity>();
  }
  OTD_ASSIGN_OR_RETURN(VaultIdentity id, DecodeIdentity(*value));
  return std::optional<VaultIdentity>(std::move(id));
}

Result<std::string> Vault::RecordMismatch(const VaultIdentity& id) {
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

Result<std::string> Vault::SystemKeyMismatch(const KeyVersions& v) {
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
      return std::string("the store's data keys are keyed by another index key than the token's "
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

Status Vault::VerifyStoreIdentity(const std::string& store_path, bool adopt, bool* adopted) {
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
                {{"recorded_serial", id->token_serial}, {"token_serial", token.serial},
                 {"reason", "the token holds the store's keys (fingerprint matches): restored "
                            "or cloned; `opentoken-admin init` records the new serial"}});
      if (adopt) {
        VaultIdentity updated = *id;
        updated.token_serial = token.serial;
        updated.token_label = token.label;
        std::vector<store::Mutation> batch;
        batch.push_back({.op = store::Op::kUpdate, .table = std::string(kMetaTable),
                         .key = ToBytes(kMetaIdentity), .value = EncodeIdentity(updated),
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
  batch.push_back({.op = store::Op::kInsert, .table = std::string(kMetaTable),
                   .key = ToBytes(kMetaIdentity), .value = EncodeIdentity(fresh)});
  Status s = store_.Apply(std::move(batch));
  if (s.code() == Code::kAlreadyExists) {
    return VerifyStoreIdentity(store_path, /*adopt=*/false);  // another process recorded it
  }
  OTD_RETURN_IF_ERROR(s);
  if (adopted != nullptr) {
    *adopted = true;
  }
  log_.Info("store_identity_recorded", {{"vault", crypto::HexEncode(fresh.vault_id)},
                                        {"token_serial", fresh.token_serial}});
  return Status::Ok();
}

Status Vault::CheckKeys() {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  OTD_RETURN_IF_ERROR(CheckTokenKeys(v));
  OTD_ASSIGN_OR_RETURN(bool has_system_key, HasDataKey(kSystemOwner));
  if (!has_system_key) {
    return FailedPrecondition(
        "the system data key is missing: run `opentoken-admin init --config FILE`");
  }
  return Status::Ok();
}

Result<bool> Vault::HasDataKey(std::string_view owner) {
  OTD_ASSIGN_OR_RETURN(Located found, Find(kAccountKeysTable, owner, DataKeyId(1), Ids::kPublic));
  return found.value.has_value();
}

Status Vault::CheckTokenKeys(const KeyVersions& v) {
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  for (const auto& label : {KekLabel(v.kek), IndexKeyLabel(v.index), std::string(kAuditKeyLabel)}) {
    OTD_ASSIGN_OR_RETURN(bool present, s.HasKey(label));
    if (!present) {
      return FailedPrecondition("token key " + label +
                                " is missing from the token: run `opentoken-admin init` or "
                                "restore the token from its backup");
    }
    OTD_ASSIGN_OR_RETURN(auto attrs, s.ReadAttributes(hsm::KeyRef::Persistent(label)));
    OTD_RETURN_IF_ERROR(CheckKeyAttributes(label, attrs));
  }
  return Status::Ok();
}

Result<std::vector<KeyReport>> Vault::DescribeKeys() {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  std::vector<KeyReport> out;
  for (const auto& label : {KekLabel(v.kek), IndexKeyLabel(v.index)}) {
    OTD_ASSIGN_OR_RETURN(auto attrs, s.ReadAttributes(hsm::KeyRef::Persistent(label)));
    out.push_back({label, attrs});
  }
  return out;
}

Result<Bytes> Vault::KeyAt(uint32_t index_version, std::string_view table,
                           std::string_view account, std::string_view id, Ids ids) {
  static constexpr std::string_view kDomain = "otd-idx-v1";
  Bytes msg(kDomain.begin(), kDomain.end());
  PutField(msg, table);
  PutField(msg, account);
  PutField(msg, id);
  std::string cache_key;
  if (ids == Ids::kPublic) {
    Bytes v = U32Bytes(index_version);
    cache_key.assign(v.begin(), v.end());
    cache_key.append(msg.begin(), msg.end());
    std::lock_guard lock(cache_mu_);
    if (auto it = store_keys_.find(cache_key); it != store_keys_.end()) {
      return it->second;
    }
  }
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(Bytes mac,
                       FromToken(s.Sign(hsm::KeyRef::Persistent(IndexKeyLabel(index_version)), msg)));
  Bytes key;
  if (index_version == 1) {
    key = std::move(mac);  // the original format: the bare HMAC
  } else {
    key = U32Bytes(index_version);
    key.insert(key.end(), mac.begin(), mac.end());
  }
  if (ids == Ids::kPublic) {
    std::lock_guard lock(cache_mu_);
    if (store_keys_.size() >= kMaxCachedStoreKeys) {
      store_keys_.clear();  // crude bound, as for wrapped keys; refilled on demand
    }
    store_keys_.emplace(std::move(cache_key), key);
  }
  return key;
}

Result<Bytes> Vault::LookupKey(std::string_view table, std::string_view account,
                               std::string_view id, Ids ids) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  return KeyAt(v.index, table, account, id, ids);
}

Result<Located> Vault::Find(std::string_view table, std::string_view account,
                            std::string_view id, Ids ids) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  Located current;
  for (uint32_t version = v.index; version >= v.index_min && version > 0; --version) {
    OTD_ASSIGN_OR_RETURN(Bytes key, KeyAt(version, table, account, id, ids));
    OTD_ASSIGN_OR_RETURN(auto value, store_.Get(table, key));
    if (value) {
      return Located{std::move(key), std::move(value), version};
    }
    if (version == v.index) {
      current = Located{std::move(key), std::nullopt, version};
    }
  }
  return current;
}

Result<Bytes> Vault::StableKeyedHash(std::string_view table, std::string_view account,
                                     std::string_view id) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  return KeyAt(v.index_min, table, account, id);
}

Result<store::Mutation> Vault::NewDataKeyMutation(std::string_view account, uint32_t version,
                                                  int64_t expires_at) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  OTD_ASSIGN_OR_RETURN(Bytes key, LookupKey(kAccountKeysTable, account, DataKeyId(version), Ids::kPublic));
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(Bytes wrapped,
                       FromToken(s.GenerateWrapped(hsm::KeyRef::Persistent(KekLabel(v.kek)),
                                                   hsm::KeyType::kAes256)));
  return store::Mutation{.op = store::Op::kInsert,
                         .table = std::string(kAccountKeysTable),
                         .key = std::move(key),
                         .value = EncodeWrappedKey({v.kek, std::move(wrapped)}),
                         .expires_at = expires_at};
}

Result<store::Mutation> Vault::NewAccountKeyMutation(std::string_view account, int64_t expires_at) {
  return NewDataKeyMutation(account, 1, expires_at);
}

Result<std::vector<store::Mutation>> Vault::DeleteAccountKeyMutations(std::string_view account) {
  OTD_ASSIGN_OR_RETURN(Located usage, Find(kKeyUsageTable, account, kUsageId, Ids::kPublic));
  uint32_t newest = 1;
  if (usage.value) {
    OTD_ASSIGN_OR_RETURN(auto u, DecodeUsage(*usage.value));
    newest = u.first;
  }
  std::vector<store::Mutation> out;
  for (uint32_t version = 1; version <= newest; ++version) {
    OTD_ASSIGN_OR_RETURN(Located found, Find(kAccountKeysTable, account, DataKeyId(version), Ids::kPublic));
    out.push_back({.op = store::Op::kErase, .table = std::string(kAccountKeysTable),
                   .key = std::move(found.key)});
  }
  out.push_back({.op = store::Op::kErase, .table = std::string(kKeyUsageTable),
                 .key = std::move(usage.key)});
  {
    std::lock_guard lock(cache_mu_);
    for (uint32_t version = 1; version <= newest; ++version) {
      wrapped_keys_.erase(std::string(account) + '\0' + std::to_string(version));
    }
  }
  std::lock_guard lock(usage_mu_);
  usage_.erase(std::string(account));
  return out;
}

Result<uint32_t> Vault::TakeLease(std::string_view owner) {
  OTD_ASSIGN_OR_RETURN(Located rec, Find(kKeyUsageTable, owner, kUsageId, Ids::kPublic));
  uint32_t version = 1;
  uint64_t reserved = 0;
  int64_t expires_at = 0;
  if (rec.value) {
    OTD_ASSIGN_OR_RETURN(auto u, DecodeUsage(*rec.value));
    std::tie(version, reserved) = u;
    OTD_ASSIGN_OR_RETURN(expires_at, store_.ExpiryOf(kKeyUsageTable, rec.key));
  } else {
    // The first lease of this owner: the counter lives (and expires) with its data key.
    OTD_ASSIGN_OR_RETURN(Located key, Find(kAccountKeysTable, owner, DataKeyId(1), Ids::kPublic));
    if (!key.value) {
      return NotFound("account has no data key");
    }
    OTD_ASSIGN_OR_RETURN(expires_at, store_.ExpiryOf(kAccountKeysTable, key.key));
  }
  uint64_t start = reserved;
  uint64_t end = reserved + budget_.lease;
  std::vector<store::Mutation> batch;
  const bool roll = end > budget_.rollover_after;
  if (roll) {
    // The nonce budget of this key is (nearly) used up: a new data key version takes over.
    ++version;
    start = 0;
    end = budget_.lease;
    OTD_ASSIGN_OR_RETURN(store::Mutation key, NewDataKeyMutation(owner, version, expires_at));
    batch.push_back(std::move(key));
  }
  store::Mutation usage{.op = rec.value ? store::Op::kUpdate : store::Op::kInsert,
                        .table = std::string(kKeyUsageTable),
                        .key = rec.key,
                        .value = EncodeUsage(version, end),
                        .expires_at = expires_at};
  if (rec.value) {
    usage.expect = *rec.value;
    usage.keep_expiry = true;
  }
  batch.push_back(std::move(usage));
  // Durable before any encryption of the lease happens: a crash can only waste the lease.
  OTD_RETURN_IF_ERROR(store_.Apply(std::move(batch)));
  if (roll) {
    log_.Info("data_key_rolled_over", {{"data_key_version", static_cast<int64_t>(version)}});
  }
  std::lock_guard lock(usage_mu_);
  Usage& u = usage_[std::string(owner)];
  if (version > u.version || (version == u.version && end > u.reserved)) {
    u = Usage{version, start, end};
  }
  return version;
}

Result<uint32_t> Vault::ReserveEncryption(std::string_view owner) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    {
      std::lock_guard lock(usage_mu_);
      auto it = usage_.find(std::string(owner));
      if (it != usage_.end() && it->second.used < it->second.reserved) {
        ++it->second.used;
        return it->second.version;
      }
    }
    auto leased = TakeLease(owner);
    if (!leased.ok() && leased.status().code() != Code::kFailedPrecondition &&
        leased.status().code() != Code::kAlreadyExists) {
      return leased.status();  // not a lost race with another thread or process
    }
  }
  return Unavailable("too much contention on a data key's usage counter");
}

Result<uint32_t> Vault::CurrentDataKeyVersion(std::string_view owner) {
  OTD_ASSIGN_OR_RETURN(Located rec, Find(kKeyUsageTable, owner, kUsageId, Ids::kPublic));
  if (!rec.value) {
    return 1u;
  }
  OTD_ASSIGN_OR_RETURN(auto u, DecodeUsage(*rec.value));
  return u.first;
}

Result<Bytes> Vault::LoadWrappedDataKey(std::string_view account, uint32_t version,
                                        uint32_t* kek_version) {
  const std::string cache_key = std::string(account) + '\0' + std::to_string(version);
  {
    std::lock_guard lock(cache_mu_);
    if (auto it = wrapped_keys_.find(cache_key); it != wrapped_keys_.end()) {
      *kek_version = it->second.first;
      return it->second.second;
    }
  }
  OTD_ASSIGN_OR_RETURN(Located found,
                       Find(kAccountKeysTable, account, DataKeyId(version), Ids::kPublic));
  if (!found.value) {
    return NotFound("account has no data key");
  }
  OTD_ASSIGN_OR_RETURN(WrappedKeyRecord rec, DecodeWrappedKey(*found.value));
  *kek_version = rec.kek_version;
  std::lock_guard lock(cache_mu_);
  if (wrapped_keys_.size() >= kMaxCachedWrappedKeys) {
    wrapped_keys_.clear();  // crude bound; refilled from the store on demand
  }
  wrapped_keys_[cache_key] = {rec.kek_version, rec.wrapped};
  return std::move(rec.wrapped);
}

Result<Bytes> Vault::Seal(std::string_view table, std::string_view account, std::string_view id,
                          ByteView plaintext) {
  uint32_t kek_version = 0;
  OTD_ASSIGN_OR_RETURN(uint32_t data_key_version, ReserveEncryption(account));
  OTD_ASSIGN_OR_RETURN(Bytes wrapped, LoadWrappedDataKey(account, data_key_version, &kek_version));
  SealedRecord rec;
  rec.key_version = data_key_version;
  OTD_RETURN_IF_ERROR(crypto::RandomBytes(rec.nonce));
  Bytes aad = SealedAssociatedData(table, account, id, rec.key_version);
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(hsm::KeyRef dk,
                       FromToken(s.UnwrapCached(hsm::KeyRef::Persistent(KekLabel(kek_version)),
                                                wrapped, hsm::KeyType::kAes256,
                                                hsm::KeyUsage::kEncrypt)));
  OTD_ASSIGN_OR_RETURN(rec.ciphertext_and_tag, FromToken(s.EncryptGcm(dk, rec.nonce, aad, plaintext)));
  return EncodeSealed(rec);
}

Result<SecretBytes> Vault::Open(std::string_view table, std::string_view account,
                                std::string_view id, ByteView record) {
  OTD_ASSIGN_OR_RETURN(SealedRecord rec, DecodeSealed(record));
  uint32_t kek_version = 0;
  OTD_ASSIGN_OR_RETURN(Bytes wrapped, LoadWrappedDataKey(account, rec.key_version, &kek_version));
  Bytes aad = SealedAssociatedData(table, account, id, rec.key_version);
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(hsm::KeyRef dk,
                       FromToken(s.UnwrapCached(hsm::KeyRef::Persistent(KekLabel(kek_version)),
                                                wrapped, hsm::KeyType::kAes256,
                                                hsm::KeyUsage::kEncrypt)));
  return FromToken(s.DecryptGcm(dk, rec.nonce, aad, rec.ciphertext_and_tag));
}

Status Vault::CheckWrappedKey(ByteView value) {
  OTD_ASSIGN_OR_RETURN(WrappedKeyRecord rec, DecodeWrappedKey(value));
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(hsm::SessionKey key, s.Unwrap(hsm::KeyRef::Persistent(KekLabel(rec.kek_version)),
                                                    rec.wrapped, hsm::KeyType::kAes256,
                                                    hsm::KeyUsage::kEncrypt));
  return Status::Ok();
}

VaultHealth Vault::Health() {
  VaultHealth h;
  hsm::TokenHealth th = token_.Health();
  h.token_ok = th.ok;
  Status ss = store_.Health();
  h.store_ok = ss.ok();
  if (h.token_ok && h.store_ok) {
    Status ks = CheckKeys();
    h.keys_ok = ks.ok();
    if (!ks.ok()) {
      h.detail = ks.message();
    }
  } else {
    h.detail = !th.ok ? "token: " + th.detail : "store: " + ss.message();
  }
  return h;
}

}  // namespace otd::service
