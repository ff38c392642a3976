#pragma once
// KeyHierarchy: the keys of DESIGN §4, on top of the token and the store.
//
//  * token keys: KEK "otd-kek-v<N>" (AES-256, wrap/unwrap only) and index key "otd-index-v<N>"
//    (HMAC-SHA256), persistent, sensitive, non-extractable; the current versions are recorded in
//    the store's `meta` table by InitKeys(), with the store's identity (which token keys it
//    belongs to: VerifyStoreIdentity, service/vault_identity.cc).
//  * per-owner data keys: AES-256 generated in the token, stored only wrapped by the KEK (table
//    `account_keys`, one record per data key version), unwrapped into a non-extractable session
//    object for each use (service/sealer.h).
//  * store keys: HMAC(index key, table | account | id), so identifiers are never stored in clear.
//
// Thread safety: thread safe (each call leases its own HSM session).

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/bytes.h"
#include "common/log.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "hsm/hsm.h"
#include "service/tables.h"
#include "store/store.h"

namespace otd::service {

// The current (newest) versions of the token keys, and the oldest index-key version that may
// still key records (lookups try every version from `index` down to `index_min`).
struct KeyVersions {
  uint32_t kek = 0;
  uint32_t index = 0;
  uint32_t index_min = 1;
};

struct RotateReport {
  KeyVersions before;
  KeyVersions after;
  bool created_kek = false;  // false when resuming a rotation whose keys were already made
  bool created_index = false;
};

// A record found by Vault::Find: its store key and value, or (value empty) the key a new record
// for that id gets.
struct Located {
  Bytes key;
  std::optional<Bytes> value;
  uint32_t index_version = 0;
};

// Progress of a rewrap pass (KEK-wrapped data keys moved to the current KEK).
struct RewrapProgress {
  uint64_t total = 0;    // wrapped keys under an older KEK when the pass started
  uint64_t done = 0;     // moved forward
  uint64_t skipped = 0;  // changed or deleted meanwhile (a later pass picks up what is left)
};

struct InitReport {
  bool created_kek = false;
  bool created_index = false;
  KeyVersions versions;
  bool created_store = false;      // the store was empty: a new vault (and its identity) was made
  bool recorded_identity = false;  // an older store got its identity record now (adopted)
};

// What a store records about itself (meta `vault_identity`): which vault it holds and which token
// keys it belongs to. Made by `init` with the store; a store from before it existed gets it at the
// next init or daemon start, once its system data key proved that the token holds its keys.
//
// The fingerprint decides, not the serial: HMAC(otd-index-vN, "otd-vault-fingerprint-v1" |
// vault_id), computed in the token, matches only where the very key that made it lives (a token
// restored from backup or cloned into another HSM keeps it, with a new serial; a token that
// merely has keys with the same labels does not). The token's serial and label are kept for
// messages and logs.
struct VaultIdentity {
  Bytes vault_id;                    // 16 random bytes, made with the store
  uint32_t fingerprint_version = 1;  // index-key version the fingerprint was computed with
  Bytes fingerprint;                 // 32 bytes
  std::string token_serial;          // the token at init or adoption (informative)
  std::string token_label;
  std::string ToString() const;  // vault=<hex> token label="..." serial="..."
};

struct InitOptions {
  std::string store_path;  // storage.path, named in messages
  // `init --new-store`: start an empty store even though the token already holds keys of a vault
  // (a second, separate vault on the same token keys). Never applies to a non-empty store.
  bool new_store = false;
};

struct KeyReport {
  std::string label;
  hsm::KeyAttributes attributes;
};

struct VaultHealth {
  bool token_ok = false;
  bool store_ok = false;
  bool keys_ok = false;
  std::string detail;  // operator-safe
  bool ok() const { return token_ok && store_ok && keys_ok; }
};

// The owner of data keys for records that belong to no account yet (registrations' indexes,
// sessions, challenges, the e-mail index). Created by InitKeys().
inline constexpr std::string_view kSystemOwner = "__system";

// Maps an error from the token on the data path to what callers should see: a missing token key,
// an unexpected PKCS#11 error or a refused login all mean "the HSM is not usable now"
// (kUnavailable → 503, no detail), not "not found" or "internal". kDataLoss (a record or wrapped
// key that does not authenticate), kInvalidArgument and kResourceExhausted pass through.
Status TokenFailure(const Status& s);
template <class T>
Result<T> FromToken(Result<T> r) {
  if (r.ok()) {
    return r;
  }
  return TokenFailure(r.status());
}

std::string KekLabel(uint32_t version);
std::string IndexKeyLabel(uint32_t version);

// The id of an owner's data key record of `version` (table account_keys).
std::string DataKeyId(uint32_t version);

class KeyHierarchy {
 public:
  KeyHierarchy(hsm::Token& token, store::Store& store, Logger& log)
      : token_(token), store_(store), log_(log) {}
  KeyHierarchy(const KeyHierarchy&) = delete;
  KeyHierarchy& operator=(const KeyHierarchy&) = delete;

  // Creates the version-1 KEK and index key when absent and records the versions and the store's
  // identity. Idempotent: running it again creates nothing. Refuses (kFailedPrecondition, the
  // message names storage.path and the token) to
  //  * start an empty store when the token already holds keys of a vault (otd-kek-v*,
  //    otd-index-v*), unless options.new_store: storage.path is probably wrong;
  //  * touch a store whose keys the token does not hold (VerifyStoreIdentity): creating keys
  //    there would leave every record of the store unreadable.
  Result<InitReport> InitKeys(const InitOptions& options = {});
  // Checks that the token in use holds this store's keys: the recorded fingerprint, or (a store
  // without the record) the system data key, found with the token's index key and unwrapped with
  // its KEK. kFailedPrecondition naming `store_path` and both tokens when not, or when the store
  // holds no vault (with a hint when the token holds keys of one: a wrong storage.path). With
  // `adopt`, a store without the record gets it. For daemon start, rotate-keys and rewrap.
  Status VerifyStoreIdentity(const std::string& store_path, bool adopt = true,
                             bool* adopted = nullptr);
  // The store's identity record, if it has one.
  Result<std::optional<VaultIdentity>> ReadIdentity() const;
  // kFailedPrecondition when the keys are not initialised (with the command to run), kInternal
  // when a key exists but is not sensitive/non-extractable, kUnavailable when the token is not
  // usable. Caches the versions on success.
  Status CheckKeys();
  Result<KeyVersions> CurrentVersions() const;
  // Attributes of the current token keys (for `opentoken-admin status` and tests).
  Result<std::vector<KeyReport>> DescribeKeys();

  // Creates the next KEK and index key versions in the token and makes them current (new data
  // keys are wrapped by the new KEK, new records keyed by the new index key). Resumable: keys
  // left by an interrupted run are reused. kFailedPrecondition if another rotation won the race.
  Result<RotateReport> RotateKeys();
  // Moves every data key wrapped by an older KEK to the current one (inside the token, CAS per
  // key, safe while the daemon serves). Calls `progress` after each key. Idempotent.
  Result<RewrapProgress> RewrapDataKeys(const std::function<void(const RewrapProgress&)>& progress);
  // Which index-key version made a store key (DESIGN §4 + docs/decisions.md: version 1 keys are
  // the bare 32-byte HMAC, later versions carry a 4-byte big-endian version prefix). 0 if neither.
  static uint32_t IndexVersionOfKey(ByteView store_key);

  // What the (account, id) of a lookup are. kPublic: identifiers that name a record without being
  // a credential or personal data (account ids, access-code ids, fixed ids): their store keys are
  // remembered in a bounded in-memory cache, saving one HMAC in the token per lookup (the cached
  // values are the LMDB keys themselves, which the database holds in clear anyway). kSecret (the
  // default): bearer values and personal data (token ids, session ids, access tokens, e-mail
  // addresses, deletion codes), never kept.
  enum class Ids : uint8_t { kSecret, kPublic };
  // The store key a NEW record of (table, account, id) gets: HMAC(current index key,
  // "otd-idx-v1" | table | account | id), prefixed with the version from version 2 on.
  Result<Bytes> LookupKey(std::string_view table, std::string_view account, std::string_view id,
                          Ids ids = Ids::kSecret);
  // One record a request will look up (see ReadAhead).
  struct Wanted {
    std::string_view table;
    std::string_view account;
    std::string_view id;
    Ids ids = Ids::kSecret;
  };
  // Records one request reads, fetched together under the current index-key version in ONE store
  // round trip (Store::GetMany): a Find() given it takes the record's key and value from it
  // instead of computing the key (an HMAC in the token for kSecret ids) and reading again. It is
  // a snapshot of one request, never a cache: build it per request and drop it with the request.
  // Empty (Find() then reads as usual) on a store whose point reads are not round trips (LMDB).
  class ReadAhead {
   private:
    friend class KeyHierarchy;
    struct Entry {
      std::string table, account, id;
      Ids ids;
      uint32_t version;
      Bytes key;
      std::optional<Bytes> value;
    };
    const Entry* Match(std::string_view table, std::string_view account, std::string_view id,
                       Ids ids, uint32_t version) const;
    std::vector<Entry> entries_;
  };
  Result<ReadAhead> ReadTogether(const std::vector<Wanted>& wanted);
  // The Wanted of `account`'s data key record (LoadWrappedDataKey); `id_storage` keeps its id.
  static Wanted DataKeyWanted(std::string_view account, uint32_t version, std::string& id_storage);
  // Finds an existing record under any live index-key version, newest first; when there is none,
  // returns the current-version key and no value. Use this for every read, update and delete.
  // With `ahead`, a record it holds for the current version is not read again.
  Result<Located> Find(std::string_view table, std::string_view account, std::string_view id,
                       Ids ids = Ids::kSecret, const ReadAhead* ahead = nullptr);
  // A stable keyed hash that does not change with rotation (the oldest live index key), for
  // values that must stay the same across rotations (e.g. the fake salt of unknown accounts).
  Result<Bytes> StableKeyedHash(std::string_view table, std::string_view account,
                                std::string_view id);

  // Returns the mutation that stores a fresh data key for `account` (wrapped by the KEK), so a
  // caller can commit it in the same batch as the account record. Data key version 1.
  // `expires_at` > 0 lets the store purge the key (and so shred the owner's records) then.
  Result<store::Mutation> NewAccountKeyMutation(std::string_view account, int64_t expires_at = 0);
  // The same for data key `version` (a rollover: service/nonce_budget.h).
  Result<store::Mutation> NewDataKeyMutation(std::string_view account, uint32_t version,
                                             int64_t expires_at);
  // The mutations that erase data key versions 1..`newest` of `account` (crypto-shredding).
  Result<std::vector<store::Mutation>> EraseDataKeyMutations(std::string_view account,
                                                             uint32_t newest);
  // The KEK-wrapped data key of `account` and `version`, and the KEK version that wraps it, read
  // from the store on every call (never cached: an erased key is refused by every process at
  // once). kNotFound when the owner has no such key.
  // `ahead`: this request's read-ahead (a snapshot of this request, so still never a cache).
  Result<Bytes> LoadWrappedDataKey(std::string_view account, uint32_t version,
                                   uint32_t* kek_version, const ReadAhead* ahead = nullptr);
  VaultHealth Health();

  // Called (outside any lock) when the key versions read from the store change while running,
  // i.e. after `opentoken-admin rotate-keys` (for the audit trail). Set before serving.
  void SetVersionsObserver(std::function<void(const KeyVersions&)> observer) {
    versions_observer_ = std::move(observer);
  }

  // Unwraps a stored wrapped-key record under its KEK version (and destroys the result at once):
  // proves the record is intact and its KEK is present. kDataLoss otherwise.
  Status CheckWrappedKey(ByteView value);

 private:
  Status CreateTokenKeys(InitReport& report);
  Status EnsureAuditKey();
  // HMAC(otd-index-v<version>, "otd-vault-fingerprint-v1" | vault_id) in the token.
  Result<Bytes> Fingerprint(uint32_t index_version, ByteView vault_id);
  // A new identity for this store (random vault id, fingerprint with `index_version`).
  Result<VaultIdentity> NewIdentity(uint32_t index_version);
  // Why the token cannot hold this store's keys ("" when it does): against the record, or,
  // without one, with the system data key.
  Result<std::string> RecordMismatch(const VaultIdentity& id);
  Result<std::string> SystemKeyMismatch(const KeyVersions& v);
  // Labels of the vault keys (otd-kek-v*, otd-index-v*) in the token.
  Result<std::vector<std::string>> TokenVaultKeys();
  Result<bool> HasDataKey(std::string_view owner);
  Status CheckTokenKeys(const KeyVersions& v);
  Result<KeyVersions> ReadVersions() const;  // from the store, uncached
  Result<Bytes> KeyAt(uint32_t index_version, std::string_view table, std::string_view account,
                      std::string_view id, Ids ids = Ids::kSecret);
  Status EnsureTokenKeys(uint32_t kek_version, uint32_t index_version, bool* created_kek,
                         bool* created_index);
  hsm::Token& token_;
  store::Store& store_;
  Logger& log_;

  // The current key versions, cached for kVersionsTtl (a rotation by another process is picked
  // up by then; Find re-reads them at once on a miss, so a record keyed by a newer index key on
  // another node is found by the very next lookup).
  static constexpr auto kVersionsTtl = std::chrono::seconds(5);
  Result<KeyVersions> RefreshVersions() const;  // read from the store, cache, notify the observer
  mutable std::mutex cache_mu_;
  mutable std::optional<KeyVersions> versions_;
  mutable std::chrono::steady_clock::time_point versions_read_;
  // Store keys of Ids::kPublic lookups: (index version | HMAC input) -> store key. Bounded.
  static constexpr size_t kMaxCachedStoreKeys = 20'000;
  std::unordered_map<std::string, Bytes> store_keys_;
  std::function<void(const KeyVersions&)> versions_observer_;
};

}  // namespace otd::service
