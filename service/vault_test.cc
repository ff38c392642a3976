// Vault against the real stack: SoftHSM2 through PKCS#11 and LMDB on disk.
#include "service/vault.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "common/metrics.h"
#include "common/testing/status_matchers.h"
#include "service/email_index.h"
#include "service/maintenance.h"
#include "service/record.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

// The real stack (service/testing/service_env.h), without the keys initialised.
class VaultTest : public ::testing::Test, protected ServiceEnv {
 protected:
  VaultTest() : ServiceEnv(/*init_keys=*/false) {}
  void InitAndCreateAccount(const std::string& account) {
    ASSERT_OK(vault_->keys().InitKeys());
    auto m = vault_->keys().NewAccountKeyMutation(account);
    ASSERT_OK(m);
    std::vector<store::Mutation> batch;
    batch.push_back(std::move(m).value());
    ASSERT_OK(store_->Apply(std::move(batch)));
  }
};

TEST_F(VaultTest, RefusesToWorkBeforeInit) {
  Status s = vault_->keys().CheckKeys();
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("opentoken-admin init"), std::string::npos);
  EXPECT_FALSE(vault_->keys().Health().ok());
}

TEST_F(VaultTest, InitIsIdempotent) {
  auto first = vault_->keys().InitKeys();
  ASSERT_OK(first);
  EXPECT_TRUE(first->created_kek);
  EXPECT_TRUE(first->created_index);
  auto second = vault_->keys().InitKeys();
  ASSERT_OK(second);
  EXPECT_FALSE(second->created_kek);
  EXPECT_FALSE(second->created_index);
  EXPECT_OK(vault_->keys().CheckKeys());
  EXPECT_TRUE(vault_->keys().Health().ok());
}

TEST_F(VaultTest, TokenKeysAreSensitiveAndNonExtractable) {
  ASSERT_OK(vault_->keys().InitKeys());
  auto keys = vault_->keys().DescribeKeys();
  ASSERT_OK(keys);
  ASSERT_EQ(keys->size(), 2u);
  for (const auto& k : *keys) {
    EXPECT_TRUE(k.attributes.token) << k.label;
    EXPECT_TRUE(k.attributes.sensitive) << k.label;
    EXPECT_FALSE(k.attributes.extractable) << k.label;
    EXPECT_TRUE(k.attributes.always_sensitive) << k.label;
    EXPECT_TRUE(k.attributes.never_extractable) << k.label;
    EXPECT_FALSE(k.attributes.value_readable) << k.label;
  }
}

TEST_F(VaultTest, SealOpenRoundTripsBinaryData) {
  InitAndCreateAccount("acct-1");
  Bytes payload = {0x00, 0xff, 0x10, 'h', 'i', 0x00};
  auto sealed = vault_->sealer().Seal("records", "acct-1", "rec-1", payload);
  ASSERT_OK(sealed);
  EXPECT_EQ((*sealed)[0], kFormatSealed);
  auto opened = vault_->sealer().Open("records", "acct-1", "rec-1", *sealed);
  ASSERT_OK(opened);
  auto got = opened->Reveal(SecretAccess::Grant());
  EXPECT_EQ(Bytes(got.begin(), got.end()), payload);
  // Same plaintext sealed twice gives different records (fresh nonce).
  auto again = vault_->sealer().Seal("records", "acct-1", "rec-1", payload);
  ASSERT_OK(again);
  EXPECT_NE(*sealed, *again);
}

TEST_F(VaultTest, RecordMovedToAnotherIdTableOrAccountFailsToOpen) {
  InitAndCreateAccount("acct-1");
  InitAndCreateAccount("acct-2");
  Bytes payload = ToBytes("4111111111111111");
  auto sealed = vault_->sealer().Seal("records", "acct-1", "rec-1", payload);
  ASSERT_OK(sealed);
  EXPECT_EQ(vault_->sealer().Open("records", "acct-1", "rec-2", *sealed).status().code(),
            Code::kDataLoss);
  EXPECT_EQ(vault_->sealer().Open("tokens", "acct-1", "rec-1", *sealed).status().code(),
            Code::kDataLoss);
  EXPECT_EQ(vault_->sealer().Open("records", "acct-2", "rec-1", *sealed).status().code(),
            Code::kDataLoss);
  EXPECT_EQ(vault_->sealer().Open("records", "acct-9", "rec-1", *sealed).status().code(),
            Code::kNotFound);
  // A flipped bit anywhere after the header, or a changed key version, fails too.
  for (size_t i = 0; i < sealed->size(); ++i) {
    Bytes t = *sealed;
    t[i] ^= 0x01;
    EXPECT_FALSE(vault_->sealer().Open("records", "acct-1", "rec-1", t).ok()) << i;
  }
}

TEST_F(VaultTest, LookupKeysAreKeyedAndDistinct) {
  ASSERT_OK(vault_->keys().InitKeys());
  auto a = vault_->keys().LookupKey("tokens", "acct", "id-1");
  auto b = vault_->keys().LookupKey("tokens", "acct", "id-2");
  auto a2 = vault_->keys().LookupKey("tokens", "acct", "id-1");
  ASSERT_TRUE(a.ok() && b.ok() && a2.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
  EXPECT_EQ(*a, *a2);
}

TEST_F(VaultTest, StoreKeysOfPublicIdsAreCachedAndOfSecretIdsAreNot) {
  ASSERT_OK(vault_->keys().InitKeys());
  // Reopen the token with metrics to count the HMACs it computes.
  Close();
  metrics::Registry registry;  // outlives the token: Close() below
  Open(&registry);
  ASSERT_NE(vault_, nullptr);
  auto family = registry.AddCounter("opentokend_hsm_operations_total", "", {"op", "result"});
  ASSERT_OK(family);
  metrics::Counter& signs = (*family)->With({"sign", "ok"});

  const uint64_t start = signs.Value();
  auto secret = vault_->keys().LookupKey("tokens", "acct", "tok-1");
  ASSERT_OK(secret);
  for (int i = 0; i < 3; ++i) {
    auto again = vault_->keys().LookupKey("tokens", "acct", "tok-1");
    ASSERT_OK(again);
    EXPECT_EQ(*again, *secret);
  }
  EXPECT_EQ(signs.Value() - start, 4u);  // secret ids: computed in the token every time

  const uint64_t mid = signs.Value();
  for (int i = 0; i < 4; ++i) {
    auto cached = vault_->keys().LookupKey("tokens", "acct", "tok-1", Vault::Ids::kPublic);
    ASSERT_OK(cached);
    EXPECT_EQ(*cached, *secret);  // the same key either way
    auto found = vault_->keys().Find("tokens", "acct", "tok-1", Vault::Ids::kPublic);
    ASSERT_OK(found);
    EXPECT_EQ(found->key, *secret);
  }
  EXPECT_EQ(signs.Value() - mid, 1u);  // public ids: once

  // After a rotation the current version's key is new (and computed), the old one still found.
  ASSERT_OK(vault_->keys().RotateKeys());
  ASSERT_OK(vault_->keys().CheckKeys());
  const uint64_t rotated = signs.Value();
  auto v2 = vault_->keys().LookupKey("tokens", "acct", "tok-1", Vault::Ids::kPublic);
  ASSERT_OK(v2);
  EXPECT_EQ(KeyHierarchy::IndexVersionOfKey(*v2), 2u);
  EXPECT_NE(*v2, *secret);
  EXPECT_EQ(signs.Value() - rotated, 1u);
  Close();
}

TEST_F(VaultTest, DataSurvivesRestartAndStoreHoldsNoPlaintext) {
  InitAndCreateAccount("acct-1");
  const std::string secret = "PLAINTEXT-MARKER-5500005555555559";
  auto key = vault_->keys().LookupKey("records", "acct-1", "rec-1");
  auto sealed = vault_->sealer().Seal("records", "acct-1", "rec-1", AsBytes(secret));
  ASSERT_TRUE(key.ok() && sealed.ok());
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert, .table = "records", .key = *key, .value = *sealed});
  ASSERT_OK(store_->Apply(std::move(batch)));
  Close();
  // Nothing in the LMDB files is the plaintext, the record id or the account key in clear.
  for (const auto& f : std::filesystem::directory_iterator(data_.path() + "/data")) {
    std::ifstream in(f.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(secret), std::string::npos) << f.path();
    EXPECT_EQ(bytes.find("rec-1"), std::string::npos) << f.path();
  }
  Open();
  auto key2 = vault_->keys().LookupKey("records", "acct-1", "rec-1");
  ASSERT_OK(key2);
  auto value = store_->Get("records", *key2);
  ASSERT_TRUE(value.ok() && value->has_value());
  auto opened = vault_->sealer().Open("records", "acct-1", "rec-1", **value);
  ASSERT_OK(opened);
  EXPECT_EQ(opened->RevealString(SecretAccess::Grant()), secret);
}

// --- key rotation ------------------------------------------------------------------------

// Stores a sealed record for (records, account, id) under the current index key.
void PutRecord(Vault& vault, store::Store& store, const std::string& account, const std::string& id,
               const std::string& text) {
  auto key = vault.keys().LookupKey("records", account, id);
  auto sealed = vault.sealer().Seal("records", account, id, AsBytes(text));
  ASSERT_TRUE(key.ok() && sealed.ok());
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert, .table = "records", .key = *key, .value = *sealed});
  ASSERT_OK(store.Apply(std::move(batch)));
}

std::string ReadRecord(Vault& vault, const std::string& account, const std::string& id) {
  auto found = vault.keys().Find("records", account, id);
  if (!found.ok() || !found->value) {
    return "<absent>";
  }
  auto opened = vault.sealer().Open("records", account, id, *found->value);
  return opened.ok() ? std::string(opened->RevealString(SecretAccess::Grant())) : "<unreadable>";
}

uint32_t KekVersionOfDataKey(store::Store& store, size_t* count) {
  uint32_t newest = 0;
  *count = 0;
  EXPECT_TRUE(store
                  .ForEach("account_keys",
                           [&](ByteView, ByteView value) {
                             auto rec = DecodeWrappedKey(value);
                             EXPECT_TRUE(rec.ok());
                             newest = std::max(newest, rec->kek_version);
                             ++*count;
                             return true;
                           })
                  .ok());
  return newest;
}

TEST_F(VaultTest, RotationMakesNewVersionsCurrentAndOldRecordsStayReadable) {
  InitAndCreateAccount("acct-1");
  PutRecord(*vault_, *store_, "acct-1", "before", "old record");
  auto fake_salt_before = vault_->keys().StableKeyedHash("fake-salt", "nobody", "");
  ASSERT_OK(fake_salt_before);

  auto r = vault_->keys().RotateKeys();
  ASSERT_OK(r);
  EXPECT_EQ(r->before.kek, 1u);
  EXPECT_EQ(r->after.kek, 2u);
  EXPECT_EQ(r->after.index, 2u);
  EXPECT_TRUE(r->created_kek);
  EXPECT_TRUE(r->created_index);
  auto v = vault_->keys().CurrentVersions();
  ASSERT_OK(v);
  EXPECT_EQ(v->kek, 2u);
  EXPECT_EQ(v->index, 2u);
  EXPECT_OK(vault_->keys().CheckKeys());

  // New store keys carry the version; old ones are the bare HMAC.
  auto new_key = vault_->keys().LookupKey("records", "acct-1", "after");
  ASSERT_OK(new_key);
  EXPECT_EQ(new_key->size(), 36u);
  EXPECT_EQ(KeyHierarchy::IndexVersionOfKey(*new_key), 2u);
  auto old = vault_->keys().Find("records", "acct-1", "before");
  ASSERT_OK(old);
  EXPECT_EQ(old->index_version, 1u);
  EXPECT_EQ(old->key.size(), 32u);
  EXPECT_EQ(KeyHierarchy::IndexVersionOfKey(old->key), 1u);

  PutRecord(*vault_, *store_, "acct-1", "after", "new record");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "before"), "old record");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "after"), "new record");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "never"), "<absent>");
  // A miss returns the current-version key for a new record.
  auto miss = vault_->keys().Find("records", "acct-1", "never");
  ASSERT_OK(miss);
  EXPECT_EQ(miss->key, *vault_->keys().LookupKey("records", "acct-1", "never"));
  // What must not change with rotation does not.
  auto fake_salt_after = vault_->keys().StableKeyedHash("fake-salt", "nobody", "");
  ASSERT_OK(fake_salt_after);
  EXPECT_EQ(*fake_salt_before, *fake_salt_after);

  // A data key made now is wrapped by the new KEK.
  auto m = vault_->keys().NewAccountKeyMutation("acct-2");
  ASSERT_OK(m);
  auto wrapped = DecodeWrappedKey(m->value);
  ASSERT_OK(wrapped);
  EXPECT_EQ(wrapped->kek_version, 2u);

  // A second rotation goes to version 3; everything still reads after a restart.
  ASSERT_OK(vault_->keys().RotateKeys());
  Close();
  Open();
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "before"), "old record");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "after"), "new record");
  EXPECT_EQ(vault_->keys().CurrentVersions()->index, 3u);
}

TEST_F(VaultTest, RewrapMovesEveryDataKeyToTheCurrentKekAndKeepsExpiries) {
  InitAndCreateAccount("acct-1");
  auto expiring =
      vault_->keys().NewAccountKeyMutation("reg:1", /*expires_at=*/clock_.NowSeconds() + 60);
  ASSERT_OK(expiring);
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(expiring).value());
  ASSERT_OK(store_->Apply(std::move(batch)));
  PutRecord(*vault_, *store_, "acct-1", "r", "sealed before rotation");
  const uint64_t ttl_before = store_->GetStats()->ttl_entries;

  ASSERT_OK(vault_->keys().RotateKeys());
  size_t keys = 0;
  EXPECT_EQ(KekVersionOfDataKey(*store_, &keys), 1u);
  std::vector<uint64_t> seen;
  auto p =
      vault_->keys().RewrapDataKeys([&](const RewrapProgress& now) { seen.push_back(now.done); });
  ASSERT_OK(p);
  EXPECT_EQ(p->total, keys);  // acct-1, reg:1 and the system key
  EXPECT_EQ(p->done, keys);
  EXPECT_EQ(p->skipped, 0u);
  EXPECT_EQ(seen.size(), keys + 1);  // once at the start, once per key
  size_t n = 0;
  ASSERT_TRUE(store_
                  ->ForEach("account_keys",
                            [&](ByteView, ByteView value) {
                              EXPECT_EQ(DecodeWrappedKey(value)->kek_version, 2u);
                              ++n;
                              return true;
                            })
                  .ok());
  EXPECT_EQ(n, keys);
  EXPECT_EQ(store_->GetStats()->ttl_entries, ttl_before);  // reg:1's key still expires
  // Idempotent: nothing left to move.
  auto again = vault_->keys().RewrapDataKeys(nullptr);
  ASSERT_OK(again);
  EXPECT_EQ(again->total, 0u);
  // A fresh process (no caches) opens the old record through the re-wrapped key.
  Close();
  Open();
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "r"), "sealed before rotation");
  EXPECT_TRUE(vault_->keys()
                  .CheckWrappedKey(
                      *store_
                           ->Get("account_keys",
                                 vault_->keys().Find("account_keys", "acct-1", "data-key-v1")->key)
                           .value())
                  .ok());
  // The expiring key is still purged on time.
  EXPECT_GE(*store_->PurgeExpired(clock_.NowSeconds() + 61, 100), 1u);
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "r"), "sealed before rotation");
}

TEST_F(VaultTest, AnInterruptedRotationResumesWithTheKeysItAlreadyMade) {
  ASSERT_OK(vault_->keys().InitKeys());
  {  // the crash: version-2 keys exist in the token, the store still says version 1
    auto s = token_->Acquire();
    ASSERT_OK(s);
    ASSERT_TRUE(s->GenerateKey(KekLabel(2), hsm::KeyType::kAes256, hsm::KeyUsage::kWrap).ok());
  }
  EXPECT_EQ(vault_->keys().CurrentVersions()->kek, 1u);
  auto r = vault_->keys().RotateKeys();
  ASSERT_OK(r);
  EXPECT_FALSE(r->created_kek);
  EXPECT_TRUE(r->created_index);
  EXPECT_EQ(r->after.kek, 2u);
  EXPECT_OK(vault_->keys().CheckKeys());
}

TEST_F(VaultTest, EmailIndexIsUniqueAcrossIndexKeyVersions) {
  InitAndCreateAccount("acct-1");
  auto first = EmailIndexInsert(*vault_, "Alice@Example.org", "acct-1");
  ASSERT_OK(first);
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(first).value());
  ASSERT_OK(store_->Apply(std::move(batch)));
  ASSERT_OK(vault_->keys().RotateKeys());
  // Found under the old index key, and a second account for the address is refused.
  auto id = AccountIdForEmail(*vault_, *store_, "alice@example.org");
  ASSERT_OK(id);
  ASSERT_TRUE(id->has_value());
  EXPECT_EQ(**id, "acct-1");
  EXPECT_EQ(EmailIndexInsert(*vault_, "ALICE@example.org", "acct-2").status().code(),
            Code::kAlreadyExists);
}

// --- nonce budget ------------------------------------------------------------------------

TEST_F(VaultTest, DataKeysRollOverBeforeTheirNonceBudgetAndCountersSurviveRestarts) {
  InitAndCreateAccount("acct-1");
  Vault small(*token_, *store_, log_, {.rollover_after = 10, .lease = 4});
  std::vector<std::pair<std::string, Bytes>> sealed;
  std::map<uint32_t, int> per_version;
  for (int i = 0; i < 25; ++i) {
    const std::string id = "r" + std::to_string(i);
    auto rec = small.sealer().Seal("records", "acct-1", id, AsBytes("payload " + id));
    ASSERT_OK(rec);
    ++per_version[DecodeSealed(*rec)->key_version];
    sealed.emplace_back(id, *rec);
  }
  // Leases of 4 while the reserved total stays <= 10: 8 encryptions per data key version.
  EXPECT_EQ(per_version, (std::map<uint32_t, int>{{1, 8}, {2, 8}, {3, 8}, {4, 1}}));
  EXPECT_EQ(*small.budget().CurrentVersion("acct-1"), 4u);
  EXPECT_NE(log_sink_.str().find("data_key_rolled_over"), std::string::npos);
  // Every version opens, through this vault and through another one (no caches).
  for (const auto& [id, rec] : sealed) {
    auto opened = vault_->sealer().Open("records", "acct-1", id, rec);
    ASSERT_OK(opened) << id << ": " << opened.status().ToString();
    EXPECT_EQ(opened->RevealString(SecretAccess::Grant()), "payload " + id);
  }
  // A new process continues from the persisted counter: the rest of the old lease is not reused,
  // and the version stays.
  Vault restarted(*token_, *store_, log_, {.rollover_after = 10, .lease = 4});
  auto next = restarted.sealer().Seal("records", "acct-1", "after-restart", AsBytes("x"));
  ASSERT_OK(next);
  EXPECT_EQ(DecodeSealed(*next)->key_version, 4u);
  // Shredding destroys every version and the counter.
  auto shred = vault_->DeleteAccountKeyMutations("acct-1");
  ASSERT_OK(shred);
  EXPECT_EQ(shred->size(), 5u);  // data-key-v1..v4 and the usage counter
  ASSERT_OK(store_->Apply(std::move(shred).value()));
  Vault fresh(*token_, *store_, log_);
  for (const auto& [id, rec] : sealed) {
    EXPECT_THAT(fresh.sealer().Open("records", "acct-1", id, rec), Not(IsOk())) << id;
  }
  EXPECT_EQ(*fresh.budget().CurrentVersion("acct-1"), 1u);  // no counter left
}

TEST_F(VaultTest, AnExpiringOwnersUsageCounterExpiresWithItsKey) {
  ASSERT_OK(vault_->keys().InitKeys());
  auto m = vault_->keys().NewAccountKeyMutation("reg:9", clock_.NowSeconds() + 60);
  ASSERT_OK(m);
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(m).value());
  ASSERT_OK(store_->Apply(std::move(batch)));
  const uint64_t before = store_->GetStats()->tables["key_usage"].entries;
  ASSERT_TRUE(vault_->sealer().Seal("registrations", "reg:9", "registration", AsBytes("r")).ok());
  EXPECT_EQ(store_->GetStats()->tables["key_usage"].entries, before + 1);
  EXPECT_EQ(*store_->PurgeExpired(clock_.NowSeconds() + 61, 100), 2u);  // key and counter
  EXPECT_EQ(store_->GetStats()->tables["key_usage"].entries, before);
}

// --- coherence between processes sharing one store and token (issue 16) -------------------
// `other` plays a second daemon: its own KeyHierarchy and caches on the same store and token.

TEST_F(VaultTest, ADataKeyErasedByOneProcessIsRefusedAtOnceByAnotherThatUsedIt) {
  InitAndCreateAccount("acct-1");
  PutRecord(*vault_, *store_, "acct-1", "rec", "secret");
  Vault other(*token_, *store_, log_);
  ASSERT_EQ(ReadRecord(other, "acct-1", "rec"), "secret");  // warms every cache of `other`
  ASSERT_EQ(ReadRecord(other, "acct-1", "rec"), "secret");
  auto erase = vault_->DeleteAccountKeyMutations("acct-1");  // shredding, on the first process
  ASSERT_OK(erase);
  ASSERT_OK(store_->Apply(std::move(erase).value()));
  EXPECT_EQ(ReadRecord(other, "acct-1", "rec"), "<unreadable>");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "rec"), "<unreadable>");
}

TEST_F(VaultTest, ADataKeyPurgedByExpiryIsRefusedAtOnceByAProcessThatUsedIt) {
  ASSERT_OK(vault_->keys().InitKeys());
  auto m = vault_->keys().NewAccountKeyMutation("reg:1", clock_.NowSeconds() + 60);
  ASSERT_OK(m);
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(m).value());
  ASSERT_OK(store_->Apply(std::move(batch)));
  PutRecord(*vault_, *store_, "reg:1", "rec", "secret");
  ASSERT_EQ(ReadRecord(*vault_, "reg:1", "rec"), "secret");
  ASSERT_OK(store_->PurgeExpired(clock_.NowSeconds() + 61, 100));
  EXPECT_EQ(ReadRecord(*vault_, "reg:1", "rec"), "<unreadable>");
}

TEST_F(VaultTest, ARecordKeyedAfterARotationByOneProcessIsFoundAtOnceByAnother) {
  InitAndCreateAccount("acct-1");
  Vault other(*token_, *store_, log_);
  ASSERT_OK(other.keys().CurrentVersions());  // `other` caches version 1
  PutRecord(other, *store_, "acct-1", "before", "old record");
  ASSERT_OK(vault_->keys().RotateKeys());
  PutRecord(*vault_, *store_, "acct-1", "after", "new record");  // keyed by index key v2
  EXPECT_EQ(ReadRecord(other, "acct-1", "after"), "new record");
  EXPECT_EQ(ReadRecord(other, "acct-1", "before"), "old record");
  EXPECT_EQ(other.keys().CurrentVersions()->index, 2u);
  // And a record `other` makes now gets the current key.
  auto miss = other.keys().Find("records", "acct-1", "next");
  ASSERT_OK(miss);
  EXPECT_EQ(KeyHierarchy::IndexVersionOfKey(miss->key), 2u);
}

// --- which token a store belongs to (issue 14) ---------------------------------------------

// Two tokens in one SoftHSM2 token directory ("otd-test" from ServiceEnv and "otd-other") and
// several stores under data_, opened in any combination.
class VaultIdentityTest : public ::testing::Test, protected ServiceEnv {
 protected:
  VaultIdentityTest() : ServiceEnv(/*init_keys=*/false) {
    Close();
    const std::string cmd =
        "softhsm2-util --init-token --free --label otd-other --so-pin 12345678 --pin 123456 "
        ">/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
  }
  void OpenWith(const std::string& token_label, const std::string& store) {
    Close();
    hsm::TokenConfig c = token_dir_.Config();
    c.token_label = token_label;
    auto token = hsm::Token::Open(std::move(c), &log_);
    ASSERT_OK(token);
    token_ = std::move(token).value();
    store::LmdbOptions o;
    o.path = data_.path() + "/" + store;
    o.map_size_bytes = 64ull << 20;
    o.tables = AllTables();
    auto st = store::LmdbStore::Open(o, &log_);
    ASSERT_OK(st);
    store_ = std::move(st).value();
    vault_ = std::make_unique<Vault>(*token_, *store_, log_);
  }
  std::vector<std::string> TokenKeys() {
    auto s = token_->Acquire();
    EXPECT_OK(s);
    auto labels = s->KeyLabels("otd-");
    EXPECT_OK(labels);
    return labels.ok() ? *labels : std::vector<std::string>{};
  }
  void CreateAccountWithRecord(const std::string& account) {
    auto m = vault_->keys().NewAccountKeyMutation(account);
    ASSERT_OK(m);
    std::vector<store::Mutation> batch;
    batch.push_back(std::move(m).value());
    ASSERT_OK(store_->Apply(std::move(batch)));
    PutRecord(*vault_, *store_, account, "rec", "kept");
  }
  void DropIdentityRecord() {
    std::vector<store::Mutation> batch;
    batch.push_back({.op = store::Op::kDelete, .table = "meta", .key = ToBytes("vault_identity")});
    ASSERT_OK(store_->Apply(std::move(batch)));
  }
};

TEST_F(VaultIdentityTest, InitRecordsWhichTokenKeysTheStoreBelongsTo) {
  OpenWith("otd-test", "a");
  auto r = vault_->keys().InitKeys({.store_path = "/srv/a"});
  ASSERT_OK(r);
  EXPECT_TRUE(r->created_store);
  auto id = vault_->keys().ReadIdentity();
  ASSERT_TRUE(id.ok() && id->has_value());
  EXPECT_EQ((*id)->vault_id.size(), 16u);
  EXPECT_EQ((*id)->fingerprint.size(), 32u);
  EXPECT_EQ((*id)->fingerprint_version, 1u);
  EXPECT_EQ((*id)->token_serial, token_->Identity().serial);
  EXPECT_EQ((*id)->token_label, "otd-test");
  EXPECT_OK(vault_->keys().VerifyStoreIdentity("/srv/a"));
  // `opentoken-admin verify` accepts the record (it is not a version number).
  auto verified = VerifyStore(*vault_, *store_, nullptr);
  ASSERT_OK(verified);
  EXPECT_EQ(verified->bad, 0u) << verified->first_problem;
  // Idempotent: the second run creates nothing and keeps the identity.
  auto again = vault_->keys().InitKeys({.store_path = "/srv/a"});
  ASSERT_OK(again);
  EXPECT_FALSE(again->created_store);
  EXPECT_FALSE(again->recorded_identity);
  EXPECT_EQ((*vault_->keys().ReadIdentity())->vault_id, (*id)->vault_id);
  // Survives a rotation (the fingerprint is of index key v1, which stays).
  ASSERT_OK(vault_->keys().RotateKeys());
  EXPECT_OK(vault_->keys().VerifyStoreIdentity("/srv/a"));
}

TEST_F(VaultIdentityTest, AnEmptyStoreOnATokenThatHoldsAVaultIsRefusedUnlessNewStore) {
  OpenWith("otd-test", "a");
  ASSERT_OK(vault_->keys().InitKeys({.store_path = "/srv/a"}));
  const Bytes first = (*vault_->keys().ReadIdentity())->vault_id;
  OpenWith("otd-test", "typo");
  const hsm::TokenIdentity token = token_->Identity();
  auto r = vault_->keys().InitKeys({.store_path = "/srv/typo"});
  ASSERT_THAT(r, Not(IsOk()));
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  const std::string m = r.status().message();
  for (const std::string& want : {std::string("storage.path /srv/typo"), token.serial, token.module,
                                  std::string("otd-kek-v1"), std::string("--new-store")}) {
    EXPECT_NE(m.find(want), std::string::npos) << want << " in " << m;
  }
  EXPECT_EQ(store_->GetStats()->tables["meta"].entries, 0u);  // nothing written
  Status start = vault_->keys().VerifyStoreIdentity("/srv/typo");
  EXPECT_EQ(start.code(), Code::kFailedPrecondition);
  EXPECT_NE(start.message().find("storage.path /srv/typo holds no vault"), std::string::npos)
      << start.message();
  EXPECT_NE(start.message().find(token.serial), std::string::npos) << start.message();
  // Told explicitly: a second, separate store on the same keys.
  auto created = vault_->keys().InitKeys({.store_path = "/srv/typo", .new_store = true});
  ASSERT_OK(created);
  EXPECT_TRUE(created->created_store);
  EXPECT_FALSE(created->created_kek);
  EXPECT_NE((*vault_->keys().ReadIdentity())->vault_id, first);
  EXPECT_OK(vault_->keys().CheckKeys());
  auto twice = vault_->keys().InitKeys({.store_path = "/srv/typo", .new_store = true});
  ASSERT_THAT(twice, Not(IsOk()));
  EXPECT_NE(twice.status().message().find("already holds a vault"), std::string::npos);
}

TEST_F(VaultIdentityTest, AStoreOfAnotherTokenIsRefusedAndNoKeysAreMadeForIt) {
  OpenWith("otd-test", "a");
  ASSERT_OK(vault_->keys().InitKeys({.store_path = "/srv/a"}));
  CreateAccountWithRecord("acct-1");
  const std::string recorded_serial = token_->Identity().serial;

  // A token without any keys (the new token of a duplicated label).
  OpenWith("otd-other", "a");
  const std::string other_serial = token_->Identity().serial;
  Status s = vault_->keys().VerifyStoreIdentity("/srv/a");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  for (const std::string& want : {std::string("storage.path /srv/a"), recorded_serial, other_serial,
                                  std::string("has no otd-index-v1")}) {
    EXPECT_NE(s.message().find(want), std::string::npos) << want << " in " << s.message();
  }
  auto init = vault_->keys().InitKeys({.store_path = "/srv/a"});
  ASSERT_THAT(init, Not(IsOk()));
  EXPECT_EQ(init.status().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(TokenKeys().empty());  // init created nothing in the wrong token

  // A token with keys of the same labels but another vault's.
  OpenWith("otd-other", "b");
  ASSERT_OK(vault_->keys().InitKeys({.store_path = "/srv/b"}));
  OpenWith("otd-other", "a");
  s = vault_->keys().VerifyStoreIdentity("/srv/a");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("fingerprint differs"), std::string::npos) << s.message();
  EXPECT_THAT(vault_->keys().InitKeys({.store_path = "/srv/a"}), Not(IsOk()));

  // The right token still reads everything.
  OpenWith("otd-test", "a");
  EXPECT_OK(vault_->keys().VerifyStoreIdentity("/srv/a"));
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "rec"), "kept");
}

TEST_F(VaultIdentityTest, AStoreWithoutTheRecordIsAdoptedOnlyByTheTokenHoldingItsKeys) {
  OpenWith("otd-other", "b");
  ASSERT_OK(vault_->keys().InitKeys({.store_path = "/srv/b"}));  // otd-other gets keys too
  OpenWith("otd-test", "a");
  ASSERT_OK(vault_->keys().InitKeys({.store_path = "/srv/a"}));
  CreateAccountWithRecord("acct-1");
  DropIdentityRecord();  // as a store written before the record existed

  OpenWith("otd-other", "a");
  Status s = vault_->keys().VerifyStoreIdentity("/srv/a");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("sealed under keys that the token in use"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("system data key is not found"), std::string::npos) << s.message();
  EXPECT_THAT(vault_->keys().InitKeys({.store_path = "/srv/a"}), Not(IsOk()));
  EXPECT_FALSE((*vault_->keys().ReadIdentity()).has_value());  // not adopted by the wrong token

  OpenWith("otd-test", "a");
  bool adopted = false;
  ASSERT_TRUE(vault_->keys().VerifyStoreIdentity("/srv/a", /*adopt=*/true, &adopted).ok());
  EXPECT_TRUE(adopted);
  auto id = vault_->keys().ReadIdentity();
  ASSERT_TRUE(id.ok() && id->has_value());
  EXPECT_EQ((*id)->token_serial, token_->Identity().serial);
  EXPECT_NE(log_sink_.str().find("store_identity_recorded"), std::string::npos);
  // From now on the record decides.
  OpenWith("otd-other", "a");
  EXPECT_NE(vault_->keys().VerifyStoreIdentity("/srv/a").message().find("fingerprint differs"),
            std::string::npos);
}

TEST_F(VaultIdentityTest, ASerialChangeWithTheSameKeysIsAcceptedAndRecorded) {
  OpenWith("otd-test", "a");
  ASSERT_OK(vault_->keys().InitKeys({.store_path = "/srv/a"}));
  // As after an HSM restore into a new token: same keys, another serial in the record.
  auto raw = store_->Get("meta", AsBytes(std::string_view("vault_identity")));
  ASSERT_TRUE(raw.ok() && raw->has_value());
  Bytes changed = **raw;
  const size_t serial_at = 1 + 16 + 4 + 32;
  ASSERT_GT(changed[serial_at], 0);
  for (size_t i = 0; i < changed[serial_at]; ++i) {
    changed[serial_at + 1 + i] = '0';
  }
  std::vector<store::Mutation> batch;
  batch.push_back(
      {.op = store::Op::kPut, .table = "meta", .key = ToBytes("vault_identity"), .value = changed});
  ASSERT_OK(store_->Apply(std::move(batch)));
  ASSERT_NE((*vault_->keys().ReadIdentity())->token_serial, token_->Identity().serial);
  EXPECT_OK(vault_->keys().VerifyStoreIdentity("/srv/a"));
  EXPECT_NE(log_sink_.str().find("store_token_serial_changed"), std::string::npos);
  EXPECT_EQ((*vault_->keys().ReadIdentity())->token_serial, token_->Identity().serial);
}

}  // namespace
}  // namespace otd::service
