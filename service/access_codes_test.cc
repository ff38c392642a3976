#include "service/access_codes.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/testing/status_matchers.h"
#include "crypto/hash.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

class AccessCodesTest : public ::testing::Test {
 protected:
  AccessCodesTest()
      : codes_(*env_.vault_, *env_.token_, *env_.store_, env_.clock_, env_.log_,
               {.lifetime_seconds = 1000, .max_per_account = 3}) {
    for (const char* account : {"acct-a", "acct-b"}) {
      auto m = env_.vault_->keys().NewAccountKeyMutation(account);
      std::vector<store::Mutation> batch;
      batch.push_back(std::move(m).value());
      EXPECT_OK(env_.store_->Apply(std::move(batch)));
    }
  }
  Bytes Mac(const SecretBytes& secret, std::string_view msg) {
    return *crypto::HmacSha256(secret, AsBytes(msg));
  }
  ServiceEnv env_;
  AccessCodes codes_;
};

TEST_F(AccessCodesTest, VerifiesInsideTheTokenAndOnlyForItsAccount) {
  auto pair = codes_.Create("acct-a", "ci");
  ASSERT_OK(pair);
  EXPECT_EQ(pair->secret.size(), 32u);
  Bytes mac = Mac(pair->secret, "canonical");
  EXPECT_TRUE(codes_.Verify("acct-a", pair->code, AsBytes("canonical"), mac).ok());
  EXPECT_EQ(codes_.Verify("acct-a", pair->code, AsBytes("canonicaL"), mac).code(),
            Code::kUnauthenticated);
  EXPECT_EQ(codes_.Verify("acct-b", pair->code, AsBytes("canonical"), mac).code(),
            Code::kUnauthenticated);
  mac[0] ^= 1;
  EXPECT_EQ(codes_.Verify("acct-a", pair->code, AsBytes("canonical"), mac).code(),
            Code::kUnauthenticated);
}

// Issue 17: the client is told which check failed (unknown code, expired code, signature).
TEST_F(AccessCodesTest, RefusalsSayWhichCheckFailed) {
  auto pair = codes_.Create("acct-a", "ci");
  ASSERT_OK(pair);
  Bytes mac = Mac(pair->secret, "canonical");
  EXPECT_EQ(codes_.Verify("acct-a", "no-such-code", AsBytes("canonical"), mac).message(),
            kUnknownAccessCode);
  EXPECT_EQ(codes_.Verify("acct-b", pair->code, AsBytes("canonical"), mac).message(),
            kUnknownAccessCode);  // another account's code is unknown here
  EXPECT_EQ(codes_.Verify("acct-a", pair->code, AsBytes("canonicaL"), mac).message(),
            kSignatureMismatch);
  ASSERT_OK(codes_.Revoke("acct-a", pair->code));
  EXPECT_EQ(codes_.Verify("acct-a", pair->code, AsBytes("canonical"), mac).message(),
            kUnknownAccessCode);
  auto other = codes_.Create("acct-a", "");
  ASSERT_OK(other);
  env_.clock_.Advance(1001);
  EXPECT_EQ(codes_.Verify("acct-a", other->code, AsBytes("x"), Mac(other->secret, "x")).message(),
            kExpiredAccessCode);
}

TEST_F(AccessCodesTest, ExpiredCodesStopSigningAndLeaveTheList) {
  auto pair = codes_.Create("acct-a", "");
  ASSERT_OK(pair);
  Bytes mac = Mac(pair->secret, "x");
  env_.clock_.Advance(1001);
  EXPECT_EQ(codes_.Verify("acct-a", pair->code, AsBytes("x"), mac).code(), Code::kUnauthenticated);
  EXPECT_TRUE(codes_.List("acct-a")->empty());
}

TEST_F(AccessCodesTest, ListRevokeAndPerAccountLimit) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(codes_.Create("acct-a", "n" + std::to_string(i)));
  }
  auto over = codes_.Create("acct-a", "too many");
  EXPECT_EQ(over.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(over.status().message().find("maximum of 3 access codes"), std::string::npos)
      << over.status().message();
  auto list = codes_.List("acct-a");
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[1].description, "n1");
  EXPECT_OK(codes_.Revoke("acct-a", (*list)[0].code));
  EXPECT_EQ(codes_.Revoke("acct-a", (*list)[0].code).code(), Code::kNotFound);
  EXPECT_EQ(codes_.Revoke("acct-b", (*list)[1].code).code(), Code::kNotFound);
  EXPECT_EQ(codes_.List("acct-a")->size(), 2u);
  EXPECT_TRUE(codes_.List("acct-b")->empty());
}

TEST_F(AccessCodesTest, AfterRotationACodeStillSignsAndItsSecretMovesToTheNewKekOnFirstUse) {
  auto pair = codes_.Create("acct-a", "before rotation");
  ASSERT_OK(pair);
  auto before = env_.vault_->keys().Find("access_codes", "acct-a", pair->code);
  ASSERT_TRUE(before.ok() && before->value);
  const uint64_t ttl_entries = env_.store_->GetStats()->ttl_entries;
  ASSERT_OK(env_.vault_->keys().RotateKeys());

  Bytes mac = Mac(pair->secret, "canonical");
  EXPECT_TRUE(codes_.Verify("acct-a", pair->code, AsBytes("canonical"), mac).ok());
  // The re-wrap is committed in the background: wait for the record to change.
  std::optional<Bytes> after;
  for (int i = 0; i < 200; ++i) {
    after = *env_.store_->Get("access_codes", before->key);
    if (after && *after != *before->value) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(after.has_value());
  EXPECT_NE(*after, *before->value);
  EXPECT_EQ(env_.store_->GetStats()->ttl_entries, ttl_entries);  // still expires
  // Same secret, now under the new KEK; wrong MACs still fail; the list is unchanged.
  EXPECT_TRUE(codes_.Verify("acct-a", pair->code, AsBytes("canonical"), mac).ok());
  mac[3] ^= 1;
  EXPECT_EQ(codes_.Verify("acct-a", pair->code, AsBytes("canonical"), mac).code(),
            Code::kUnauthenticated);
  ASSERT_EQ(codes_.List("acct-a")->size(), 1u);
  EXPECT_EQ((*codes_.List("acct-a"))[0].description, "before rotation");
  // Revocation still removes it for good.
  EXPECT_OK(codes_.Revoke("acct-a", pair->code));
  EXPECT_EQ(
      codes_.Verify("acct-a", pair->code, AsBytes("canonical"), Mac(pair->secret, "canonical"))
          .code(),
      Code::kUnauthenticated);
}

}  // namespace
}  // namespace otd::service
