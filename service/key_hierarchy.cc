#include "service/key_hierarchy.h"

#include "common/check.h"
#include "crypto/encoding.h"
#include "crypto/random.h"
#include "service/audit.h"
#include "service/internal/meta.h"
#include "service/record.h"
#include "service/tables.h"

namespace otd::service {

namespace {

using internal::kAccountKeysTable;
using internal::kHmacBytes;
using internal::kMetaIndexMinVersion;
using internal::kMetaIndexVersion;
using internal::kMetaKekVersion;
using internal::kMetaTable;
using internal::ParseU32;
using internal::U32Bytes;

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

}  // namespace

std::string DataKeyId(uint32_t version) { return "data-key-v" + std::to_string(version); }

Status TokenFailure(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
    case Code::kDataLoss:
    case Code::kInvalidArgument:
    case Code::kResourceExhausted:
    case Code::kUnavailable: return s;
    default: return Unavailable("HSM: " + s.message());
  }
}

std::string KekLabel(uint32_t version) { return "otd-kek-v" + std::to_string(version); }

std::string IndexKeyLabel(uint32_t version) { return "otd-index-v" + std::to_string(version); }

Result<KeyVersions> KeyHierarchy::ReadVersions() const {
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

Result<KeyVersions> KeyHierarchy::CurrentVersions() const {
  {
    std::lock_guard lock(cache_mu_);
    if (versions_ && std::chrono::steady_clock::now() - versions_read_ < kVersionsTtl) {
      return *versions_;
    }
  }
  return RefreshVersions();
}

Result<KeyVersions> KeyHierarchy::RefreshVersions() const {
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

Status KeyHierarchy::EnsureTokenKeys(uint32_t kek_version, uint32_t index_version,
                                     bool* created_kek, bool* created_index) {
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

Status KeyHierarchy::CreateTokenKeys(InitReport& report) {
  OTD_RETURN_IF_ERROR(EnsureTokenKeys(1, 1, &report.created_kek, &report.created_index));
  return EnsureAuditKey();
}

Status KeyHierarchy::EnsureAuditKey() {
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

Result<RotateReport> KeyHierarchy::RotateKeys() {
  RotateReport report;
  OTD_ASSIGN_OR_RETURN(report.before, ReadVersions());
  report.after = report.before;
  report.after.kek = report.before.kek + 1;
  report.after.index = report.before.index + 1;
  OTD_RETURN_IF_ERROR(EnsureTokenKeys(report.after.kek, report.after.index, &report.created_kek,
                                      &report.created_index));
  // Both versions move in one commit, and only from the versions read above.
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kUpdate,
                   .table = std::string(kMetaTable),
                   .key = ToBytes(kMetaKekVersion),
                   .value = U32Bytes(report.after.kek),
                   .expect = U32Bytes(report.before.kek)});
  batch.push_back({.op = store::Op::kUpdate,
                   .table = std::string(kMetaTable),
                   .key = ToBytes(kMetaIndexVersion),
                   .value = U32Bytes(report.after.index),
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

Result<RewrapProgress> KeyHierarchy::RewrapDataKeys(
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
      OTD_ASSIGN_OR_RETURN(
          moved, FromToken(s.Rewrap(hsm::KeyRef::Persistent(KekLabel(rec.kek_version)), to,
                                    rec.wrapped, hsm::KeyType::kAes256)));
    }
    // kPut with the old value expected: a key deleted (shredded) or changed meanwhile is left
    // alone. The expiry must be carried over: a registration's key expires with it.
    std::vector<store::Mutation> batch;
    batch.push_back({.op = store::Op::kUpdate,
                     .table = std::string(kAccountKeysTable),
                     .key = key,
                     .value = EncodeWrappedKey({v.kek, std::move(moved)}),
                     .expect = value,
                     .keep_expiry = true});
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

uint32_t KeyHierarchy::IndexVersionOfKey(ByteView store_key) {
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

Status KeyHierarchy::CheckKeys() {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  OTD_RETURN_IF_ERROR(CheckTokenKeys(v));
  OTD_ASSIGN_OR_RETURN(bool has_system_key, HasDataKey(kSystemOwner));
  if (!has_system_key) {
    return FailedPrecondition(
        "the system data key is missing: run `opentoken-admin init --config FILE`");
  }
  return Status::Ok();
}

Result<bool> KeyHierarchy::HasDataKey(std::string_view owner) {
  OTD_ASSIGN_OR_RETURN(Located found, Find(kAccountKeysTable, owner, DataKeyId(1), Ids::kPublic));
  return found.value.has_value();
}

Status KeyHierarchy::CheckTokenKeys(const KeyVersions& v) {
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

Result<std::vector<KeyReport>> KeyHierarchy::DescribeKeys() {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  std::vector<KeyReport> out;
  for (const auto& label : {KekLabel(v.kek), IndexKeyLabel(v.index)}) {
    OTD_ASSIGN_OR_RETURN(auto attrs, s.ReadAttributes(hsm::KeyRef::Persistent(label)));
    out.push_back({label, attrs});
  }
  return out;
}

Result<Bytes> KeyHierarchy::KeyAt(uint32_t index_version, std::string_view table,
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
  OTD_ASSIGN_OR_RETURN(
      Bytes mac, FromToken(s.Sign(hsm::KeyRef::Persistent(IndexKeyLabel(index_version)), msg)));
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
      store_keys_.clear();  // crude bound; refilled on demand
    }
    store_keys_.emplace(std::move(cache_key), key);
  }
  return key;
}

Result<Bytes> KeyHierarchy::LookupKey(std::string_view table, std::string_view account,
                                      std::string_view id, Ids ids) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  return KeyAt(v.index, table, account, id, ids);
}

const KeyHierarchy::ReadAhead::Entry* KeyHierarchy::ReadAhead::Match(std::string_view table,
                                                                     std::string_view account,
                                                                     std::string_view id, Ids ids,
                                                                     uint32_t version) const {
  for (const Entry& e : entries_) {
    if (e.version == version && e.ids == ids && e.table == table && e.account == account &&
        e.id == id) {
      return &e;
    }
  }
  return nullptr;
}

KeyHierarchy::Wanted KeyHierarchy::DataKeyWanted(std::string_view account, uint32_t version,
                                                 std::string& id_storage) {
  id_storage = DataKeyId(version);
  return {.table = kAccountKeysTable, .account = account, .id = id_storage, .ids = Ids::kPublic};
}

Result<KeyHierarchy::ReadAhead> KeyHierarchy::ReadTogether(const std::vector<Wanted>& wanted) {
  ReadAhead ahead;
  if (!store_.PointReadsAreRoundTrips()) {
    // Nothing to save on an embedded store, and the keyed hashes would be token work spent
    // before the caller's signature is checked (a forged request would cost three HMACs, not one).
    return ahead;
  }
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  std::vector<store::ReadKey> keys;
  ahead.entries_.reserve(wanted.size());
  for (const Wanted& w : wanted) {
    OTD_ASSIGN_OR_RETURN(Bytes key, KeyAt(v.index, w.table, w.account, w.id, w.ids));
    ahead.entries_.push_back({.table = std::string(w.table),
                              .account = std::string(w.account),
                              .id = std::string(w.id),
                              .ids = w.ids,
                              .version = v.index,
                              .key = std::move(key),
                              .value = std::nullopt});
  }
  for (const ReadAhead::Entry& e : ahead.entries_) {
    keys.push_back({.table = e.table, .key = e.key});
  }
  OTD_ASSIGN_OR_RETURN(auto values, store_.GetMany(keys));
  OTD_CHECK(values.size() == ahead.entries_.size());
  for (size_t i = 0; i < values.size(); ++i) {
    ahead.entries_[i].value = std::move(values[i]);
  }
  return ahead;
}

Result<Located> KeyHierarchy::Find(std::string_view table, std::string_view account,
                                   std::string_view id, Ids ids, const ReadAhead* ahead) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  Located current;
  for (uint32_t version = v.index; version >= v.index_min && version > 0; --version) {
    const ReadAhead::Entry* read =
        ahead != nullptr ? ahead->Match(table, account, id, ids, version) : nullptr;
    Bytes key;
    std::optional<Bytes> value;
    if (read != nullptr) {
      key = read->key;
      value = read->value;
    } else {
      OTD_ASSIGN_OR_RETURN(key, KeyAt(version, table, account, id, ids));
      OTD_ASSIGN_OR_RETURN(value, store_.Get(table, key));
    }
    if (value) {
      return Located{std::move(key), std::move(value), version};
    }
    if (version == v.index) {
      current = Located{std::move(key), std::nullopt, version};
    }
  }
  // A miss under cached versions: another process (a second daemon, `opentoken-admin
  // rotate-keys`) may have made a newer index key current and keyed the record with it. Read the
  // versions from the store (one Get) and try the newer ones, so a record made on another node is
  // found at once, and a new record gets the truly current key.
  OTD_ASSIGN_OR_RETURN(KeyVersions fresh, RefreshVersions());
  if (fresh.index <= v.index) {
    return current;
  }
  for (uint32_t version = fresh.index; version > v.index; --version) {
    OTD_ASSIGN_OR_RETURN(Bytes key, KeyAt(version, table, account, id, ids));
    OTD_ASSIGN_OR_RETURN(auto value, store_.Get(table, key));
    if (value) {
      return Located{std::move(key), std::move(value), version};
    }
    if (version == fresh.index) {
      current = Located{std::move(key), std::nullopt, version};
    }
  }
  return current;
}

Result<Bytes> KeyHierarchy::StableKeyedHash(std::string_view table, std::string_view account,
                                            std::string_view id) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  return KeyAt(v.index_min, table, account, id);
}

Result<store::Mutation> KeyHierarchy::NewDataKeyMutation(std::string_view account, uint32_t version,
                                                         int64_t expires_at) {
  OTD_ASSIGN_OR_RETURN(KeyVersions v, CurrentVersions());
  OTD_ASSIGN_OR_RETURN(Bytes key,
                       LookupKey(kAccountKeysTable, account, DataKeyId(version), Ids::kPublic));
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

Result<store::Mutation> KeyHierarchy::NewAccountKeyMutation(std::string_view account,
                                                            int64_t expires_at) {
  return NewDataKeyMutation(account, 1, expires_at);
}

Result<Bytes> KeyHierarchy::LoadWrappedDataKey(std::string_view account, uint32_t version,
                                               uint32_t* kek_version, const ReadAhead* ahead) {
  // Read from the store on every use, never cached: the record's presence is what makes the key
  // usable, so a key erased (shredded) or purged by any process is refused by every process at
  // once, and the token's cache of unwrapped keys (hsm::Session::UnwrapCached, keyed by this
  // blob) is only reached with a blob the store still holds.
  OTD_ASSIGN_OR_RETURN(Located found,
                       Find(kAccountKeysTable, account, DataKeyId(version), Ids::kPublic, ahead));
  if (!found.value) {
    return NotFound("account has no data key");
  }
  OTD_ASSIGN_OR_RETURN(WrappedKeyRecord rec, DecodeWrappedKey(*found.value));
  *kek_version = rec.kek_version;
  return std::move(rec.wrapped);
}

Status KeyHierarchy::CheckWrappedKey(ByteView value) {
  OTD_ASSIGN_OR_RETURN(WrappedKeyRecord rec, DecodeWrappedKey(value));
  OTD_ASSIGN_OR_RETURN(hsm::Session s, token_.Acquire());
  OTD_ASSIGN_OR_RETURN(hsm::SessionKey key,
                       s.Unwrap(hsm::KeyRef::Persistent(KekLabel(rec.kek_version)), rec.wrapped,
                                hsm::KeyType::kAes256, hsm::KeyUsage::kEncrypt));
  return Status::Ok();
}

VaultHealth KeyHierarchy::Health() {
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

Result<std::vector<store::Mutation>> KeyHierarchy::EraseDataKeyMutations(std::string_view account,
                                                                         uint32_t newest) {
  std::vector<store::Mutation> out;
  for (uint32_t version = 1; version <= newest; ++version) {
    OTD_ASSIGN_OR_RETURN(Located found,
                         Find(kAccountKeysTable, account, DataKeyId(version), Ids::kPublic));
    out.push_back({.op = store::Op::kErase,
                   .table = std::string(kAccountKeysTable),
                   .key = std::move(found.key)});
  }
  return out;
}

}  // namespace otd::service
