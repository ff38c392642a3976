// Vault against the real stack: SoftHSM2 through PKCS#11 and LMDB on disk.
#include "service/vault.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "common/metrics.h"
#include "service/email_index.h"
#include "service/record.h"
#include "service/service_test_env.h"

namespace otd::service {
namespace {

// The real stack (service/service_test_env.h), without the keys initialised.
class VaultTest : public ::testing::Test, protected ServiceEnv {
 protected:
  VaultTest() : ServiceEnv(/*init_keys=*/false) {}
  void InitAndCreateAccount(const std::string& account) {
    ASSERT_TRUE(vault_->InitKeys().ok());
    auto m = vault_->NewAccountKeyMutation(account);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    std::vector<store::Mutation> batch;
    batch.push_back(std::move(m).value());
    ASSERT_TRUE(store_->Apply(std::move(batch)).ok());
  }
};

TEST_F(VaultTest, RefusesToWorkBeforeInit) {
  Status s = vault_->CheckKeys();
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("opentoken-admin init"), std::string::npos);
  EXPECT_FALSE(vault_->Health().ok());
}

TEST_F(VaultTest, InitIsIdempotent) {
  auto first = vault_->InitKeys();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->created_kek);
  EXPECT_TRUE(first->created_index);
  auto second = vault_->InitKeys();
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->created_kek);
  EXPECT_FALSE(second->created_index);
  EXPECT_TRUE(vault_->CheckKeys().ok());
  EXPECT_TRUE(vault_->Health().ok());
}

TEST_F(VaultTest, TokenKeysAreSensitiveAndNonExtractable) {
  ASSERT_TRUE(vault_->InitKeys().ok());
  auto keys = vault_->DescribeKeys();
  ASSERT_TRUE(keys.ok());
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
  auto sealed = vault_->Seal("records", "acct-1", "rec-1", payload);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ((*sealed)[0], kFormatSealed);
  auto opened = vault_->Open("records", "acct-1", "rec-1", *sealed);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto got = opened->Reveal(SecretAccess::Grant());
  EXPECT_EQ(Bytes(got.begin(), got.end()), payload);
  // Same plaintext sealed twice gives different records (fresh nonce).
  auto again = vault_->Seal("records", "acct-1", "rec-1", payload);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*sealed, *again);
}

TEST_F(VaultTest, RecordMovedToAnotherIdTableOrAccountFailsToOpen) {
  InitAndCreateAccount("acct-1");
  InitAndCreateAccount("acct-2");
  Bytes payload = ToBytes("4111111111111111");
  auto sealed = vault_->Seal("records", "acct-1", "rec-1", payload);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(vault_->Open("records", "acct-1", "rec-2", *sealed).status().code(), Code::kDataLoss);
  EXPECT_EQ(vault_->Open("tokens", "acct-1", "rec-1", *sealed).status().code(), Code::kDataLoss);
  EXPECT_EQ(vault_->Open("records", "acct-2", "rec-1", *sealed).status().code(), Code::kDataLoss);
  EXPECT_EQ(vault_->Open("records", "acct-9", "rec-1", *sealed).status().code(), Code::kNotFound);
  // A flipped bit anywhere after the header, or a changed key version, fails too.
  for (size_t i = 0; i < sealed->size(); ++i) {
    Bytes t = *sealed;
    t[i] ^= 0x01;
    EXPECT_FALSE(vault_->Open("records", "acct-1", "rec-1", t).ok()) << i;
  }
}

TEST_F(VaultTest, LookupKeysAreKeyedAndDistinct) {
  ASSERT_TRUE(vault_->InitKeys().ok());
  auto a = vault_->LookupKey("tokens", "acct", "id-1");
  auto b = vault_->LookupKey("tokens", "acct", "id-2");
  auto a2 = vault_->LookupKey("tokens", "acct", "id-1");
  ASSERT_TRUE(a.ok() && b.ok() && a2.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
  EXPECT_EQ(*a, *a2);
}

TEST_F(VaultTest, StoreKeysOfPublicIdsAreCachedAndOfSecretIdsAreNot) {
  ASSERT_TRUE(vault_->InitKeys().ok());
  // Reopen the token with metrics to count the HMACs it computes.
  Close();
  metrics::Registry registry;  // outlives the token: Close() below
  Open(&registry);
  ASSERT_NE(vault_, nullptr);
  auto family = registry.AddCounter("opentokend_hsm_operations_total", "", {"op", "result"});
  ASSERT_TRUE(family.ok());
  metrics::Counter& signs = (*family)->With({"sign", "ok"});

  const uint64_t start = signs.Value();
  auto secret = vault_->LookupKey("tokens", "acct", "tok-1");
  ASSERT_TRUE(secret.ok());
  for (int i = 0; i < 3; ++i) {
    auto again = vault_->LookupKey("tokens", "acct", "tok-1");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *secret);
  }
  EXPECT_EQ(signs.Value() - start, 4u);  // secret ids: computed in the token every time

  const uint64_t mid = signs.Value();
  for (int i = 0; i < 4; ++i) {
    auto cached = vault_->LookupKey("tokens", "acct", "tok-1", Vault::Ids::kPublic);
    ASSERT_TRUE(cached.ok());
    EXPECT_EQ(*cached, *secret);  // the same key either way
    auto found = vault_->Find("tokens", "acct", "tok-1", Vault::Ids::kPublic);
    ASSERT_TRUE(found.ok());
    EXPECT_EQ(found->key, *secret);
  }
  EXPECT_EQ(signs.Value() - mid, 1u);  // public ids: once

  // After a rotation the current version's key is new (and computed), the old one still found.
  ASSERT_TRUE(vault_->RotateKeys().ok());
  ASSERT_TRUE(vault_->CheckKeys().ok());
  const uint64_t rotated = signs.Value();
  auto v2 = vault_->LookupKey("tokens", "acct", "tok-1", Vault::Ids::kPublic);
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(Vault::IndexVersionOfKey(*v2), 2u);
  EXPECT_NE(*v2, *secret);
  EXPECT_EQ(signs.Value() - rotated, 1u);
  Close();
}

TEST_F(VaultTest, DataSurvivesRestartAndStoreHoldsNoPlaintext) {
  InitAndCreateAccount("acct-1");
  const std::string secret = "PLAINTEXT-MARKER-5500005555555559";
  auto key = vault_->LookupKey("records", "acct-1", "rec-1");
  auto sealed = vault_->Seal("records", "acct-1", "rec-1", AsBytes(secret));
  ASSERT_TRUE(key.ok() && sealed.ok());
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert, .table = "records", .key = *key, .value = *sealed});
  ASSERT_TRUE(store_->Apply(std::move(batch)).ok());
  Close();
  // Nothing in the LMDB files is the plaintext, the record id or the account key in clear.
  for (const auto& f : std::filesystem::directory_iterator(data_.path() + "/data")) {
    std::ifstream in(f.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(secret), std::string::npos) << f.path();
    EXPECT_EQ(bytes.find("rec-1"), std::string::npos) << f.path();
  }
  Open();
  auto key2 = vault_->LookupKey("records", "acct-1", "rec-1");
  ASSERT_TRUE(key2.ok());
  auto value = store_->Get("records", *key2);
  ASSERT_TRUE(value.ok() && value->has_value());
  auto opened = vault_->Open("records", "acct-1", "rec-1", **value);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->RevealString(SecretAccess::Grant()), secret);
}

// --- key rotation ------------------------------------------------------------------------

// Stores a sealed record for (records, account, id) under the current index key.
void PutRecord(Vault& vault, store::Store& store, const std::string& account,
               const std::string& id, const std::string& text) {
  auto key = vault.LookupKey("records", account, id);
  auto sealed = vault.Seal("records", account, id, AsBytes(text));
  ASSERT_TRUE(key.ok() && sealed.ok());
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert, .table = "records", .key = *key, .value = *sealed});
  ASSERT_TRUE(store.Apply(std::move(batch)).ok());
}

std::string ReadRecord(Vault& vault, const std::string& account, const std::string& id) {
  auto found = vault.Find("records", account, id);
  if (!found.ok() || !found->value) {
    return "<absent>";
  }
  auto opened = vault.Open("records", account, id, *found->value);
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
  auto fake_salt_before = vault_->StableKeyedHash("fake-salt", "nobody", "");
  ASSERT_TRUE(fake_salt_before.ok());

  auto r = vault_->RotateKeys();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->before.kek, 1u);
  EXPECT_EQ(r->after.kek, 2u);
  EXPECT_EQ(r->after.index, 2u);
  EXPECT_TRUE(r->created_kek);
  EXPECT_TRUE(r->created_index);
  auto v = vault_->CurrentVersions();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->kek, 2u);
  EXPECT_EQ(v->index, 2u);
  EXPECT_TRUE(vault_->CheckKeys().ok());

  // New store keys carry the version; old ones are the bare HMAC.
  auto new_key = vault_->LookupKey("records", "acct-1", "after");
  ASSERT_TRUE(new_key.ok());
  EXPECT_EQ(new_key->size(), 36u);
  EXPECT_EQ(Vault::IndexVersionOfKey(*new_key), 2u);
  auto old = vault_->Find("records", "acct-1", "before");
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->index_version, 1u);
  EXPECT_EQ(old->key.size(), 32u);
  EXPECT_EQ(Vault::IndexVersionOfKey(old->key), 1u);

  PutRecord(*vault_, *store_, "acct-1", "after", "new record");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "before"), "old record");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "after"), "new record");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "never"), "<absent>");
  // A miss returns the current-version key for a new record.
  auto miss = vault_->Find("records", "acct-1", "never");
  ASSERT_TRUE(miss.ok());
  EXPECT_EQ(miss->key, *vault_->LookupKey("records", "acct-1", "never"));
  // What must not change with rotation does not.
  auto fake_salt_after = vault_->StableKeyedHash("fake-salt", "nobody", "");
  ASSERT_TRUE(fake_salt_after.ok());
  EXPECT_EQ(*fake_salt_before, *fake_salt_after);

  // A data key made now is wrapped by the new KEK.
  auto m = vault_->NewAccountKeyMutation("acct-2");
  ASSERT_TRUE(m.ok());
  auto wrapped = DecodeWrappedKey(m->value);
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(wrapped->kek_version, 2u);

  // A second rotation goes to version 3; everything still reads after a restart.
  ASSERT_TRUE(vault_->RotateKeys().ok());
  Close();
  Open();
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "before"), "old record");
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "after"), "new record");
  EXPECT_EQ(vault_->CurrentVersions()->index, 3u);
}

TEST_F(VaultTest, RewrapMovesEveryDataKeyToTheCurrentKekAndKeepsExpiries) {
  InitAndCreateAccount("acct-1");
  auto expiring = vault_->NewAccountKeyMutation("reg:1", /*expires_at=*/clock_.NowSeconds() + 60);
  ASSERT_TRUE(expiring.ok());
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(expiring).value());
  ASSERT_TRUE(store_->Apply(std::move(batch)).ok());
  PutRecord(*vault_, *store_, "acct-1", "r", "sealed before rotation");
  const uint64_t ttl_before = store_->GetStats()->ttl_entries;

  ASSERT_TRUE(vault_->RotateKeys().ok());
  size_t keys = 0;
  EXPECT_EQ(KekVersionOfDataKey(*store_, &keys), 1u);
  std::vector<uint64_t> seen;
  auto p = vault_->RewrapDataKeys([&](const RewrapProgress& now) { seen.push_back(now.done); });
  ASSERT_TRUE(p.ok()) << p.status().ToString();
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
  auto again = vault_->RewrapDataKeys(nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->total, 0u);
  // A fresh process (no caches) opens the old record through the re-wrapped key.
  Close();
  Open();
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "r"), "sealed before rotation");
  EXPECT_TRUE(vault_->CheckWrappedKey(*store_->Get("account_keys",
                                                   vault_->Find("account_keys", "acct-1",
                                                                "data-key-v1")->key)
                                            .value())
                  .ok());
  // The expiring key is still purged on time.
  EXPECT_GE(*store_->PurgeExpired(clock_.NowSeconds() + 61, 100), 1u);
  EXPECT_EQ(ReadRecord(*vault_, "acct-1", "r"), "sealed before rotation");
}

TEST_F(VaultTest, AnInterruptedRotationResumesWithTheKeysItAlreadyMade) {
  ASSERT_TRUE(vault_->InitKeys().ok());
  {  // the crash: version-2 keys exist in the token, the store still says version 1
    auto s = token_->Acquire();
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->GenerateKey(KekLabel(2), hsm::KeyType::kAes256, hsm::KeyUsage::kWrap).ok());
  }
  EXPECT_EQ(vault_->CurrentVersions()->kek, 1u);
  auto r = vault_->RotateKeys();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->created_kek);
  EXPECT_TRUE(r->created_index);
  EXPECT_EQ(r->after.kek, 2u);
  EXPECT_TRUE(vault_->CheckKeys().ok());
}

TEST_F(VaultTest, EmailIndexIsUniqueAcrossIndexKeyVersions) {
  InitAndCreateAccount("acct-1");
  auto first = EmailIndexInsert(*vault_, "Alice@Example.org", "acct-1");
  ASSERT_TRUE(first.ok());
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(first).value());
  ASSERT_TRUE(store_->Apply(std::move(batch)).ok());
  ASSERT_TRUE(vault_->RotateKeys().ok());
  // Found under the old index key, and a second account for the address is refused.
  auto id = AccountIdForEmail(*vault_, *store_, "alice@example.org");
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(id->has_value());
  EXPECT_EQ(**id, "acct-1");
  EXPECT_EQ(EmailIndexInsert(*vault_, "ALICE@example.org", "acct-2").status().code(),
            Code::kAlreadyExists);
}

// --- nonce budget ------------------------------------------------------------------------

TEST_F(VaultTest, DataKeysRollOverBeforeTheirNonceBudgetAndCountersSurviveRestarts) {
  InitAndCreateAccount("acct-1");
  Vault small(*token_, *store_, clock_, log_, {.rollover_after = 10, .lease = 4});
  std::vector<std::pair<std::string, Bytes>> sealed;
  std::map<uint32_t, int> per_version;
  for (int i = 0; i < 25; ++i) {
    const std::string id = "r" + std::to_string(i);
    auto rec = small.Seal("records", "acct-1", id, AsBytes("payload " + id));
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    ++per_version[DecodeSealed(*rec)->key_version];
    sealed.emplace_back(id, *rec);
  }
  // Leases of 4 while the reserved total stays <= 10: 8 encryptions per data key version.
  EXPECT_EQ(per_version, (std::map<uint32_t, int>{{1, 8}, {2, 8}, {3, 8}, {4, 1}}));
  EXPECT_EQ(*small.CurrentDataKeyVersion("acct-1"), 4u);
  EXPECT_NE(log_sink_.str().find("data_key_rolled_over"), std::string::npos);
  // Every version opens, through this vault and through another one (no caches).
  for (const auto& [id, rec] : sealed) {
    auto opened = vault_->Open("records", "acct-1", id, rec);
    ASSERT_TRUE(opened.ok()) << id << ": " << opened.status().ToString();
    EXPECT_EQ(opened->RevealString(SecretAccess::Grant()), "payload " + id);
  }
  // A new process continues from the persisted counter: the rest of the old lease is not reused,
  // and the version stays.
  Vault restarted(*token_, *store_, clock_, log_, {.rollover_after = 10, .lease = 4});
  auto next = restarted.Seal("records", "acct-1", "after-restart", AsBytes("x"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(DecodeSealed(*next)->key_version, 4u);
  // Shredding destroys every version and the counter.
  auto shred = vault_->DeleteAccountKeyMutations("acct-1");
  ASSERT_TRUE(shred.ok());
  EXPECT_EQ(shred->size(), 5u);  // data-key-v1..v4 and the usage counter
  ASSERT_TRUE(store_->Apply(std::move(shred).value()).ok());
  Vault fresh(*token_, *store_, clock_, log_);
  for (const auto& [id, rec] : sealed) {
    EXPECT_FALSE(fresh.Open("records", "acct-1", id, rec).ok()) << id;
  }
  EXPECT_EQ(*fresh.CurrentDataKeyVersion("acct-1"), 1u);  // no counter left
}

TEST_F(VaultTest, AnExpiringOwnersUsageCounterExpiresWithItsKey) {
  ASSERT_TRUE(vault_->InitKeys().ok());
  auto m = vault_->NewAccountKeyMutation("reg:9", clock_.NowSeconds() + 60);
  ASSERT_TRUE(m.ok());
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(m).value());
  ASSERT_TRUE(store_->Apply(std::move(batch)).ok());
  const uint64_t before = store_->GetStats()->tables["key_usage"].entries;
  ASSERT_TRUE(vault_->Seal("registrations", "reg:9", "registration", AsBytes("r")).ok());
  EXPECT_EQ(store_->GetStats()->tables["key_usage"].entries, before + 1);
  EXPECT_EQ(*store_->PurgeExpired(clock_.NowSeconds() + 61, 100), 2u);  // key and counter
  EXPECT_EQ(store_->GetStats()->tables["key_usage"].entries, before);
}

}  // namespace
}  // namespace otd::service
