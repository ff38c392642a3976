// Vault against the real stack: SoftHSM2 through PKCS#11 and LMDB on disk.
#include "service/vault.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

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

}  // namespace
}  // namespace otd::service
