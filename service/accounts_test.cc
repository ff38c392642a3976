// Accounts against SoftHSM2, LMDB and a mail spool, with a fake clock for the time rules.
#include "service/accounts.h"

#include <gtest/gtest.h>

#include <regex>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/totp.h"
#include "service/service_test_env.h"

namespace otd::service {
namespace {

class AccountsTest : public ::testing::Test {
 protected:
  AccountsTest() : accounts_(*env_.vault_, *env_.store_, *env_.mailer_, env_.clock_, env_.log_, Options()) {}
  static AccountsOptions Options() {
    AccountsOptions o;
    o.registration_lifetime_seconds = 3600;
    o.challenge_lifetime_seconds = 300;
    o.session_lifetime_seconds = 600;
    o.public_url = "https://vault.example";
    o.rate_limit.free_failures = 2;
    o.rate_limit.base_delay_seconds = 10;
    return o;
  }
  std::string Code(const SecretBytes& seed, int64_t step_offset = 0) {
    return *crypto::TotpCode(seed, env_.clock_.NowSeconds() + 30 * step_offset);
  }
  SecretBytes PasswordHash() { return SecretBytes::CopyFrom(std::string_view("cGFzc3dvcmQtaGFzaC1vZi00OC1ieXRlcy1iYXNlNjQ=")); }

  // Registers, secures and confirms; returns the account id.
  std::string CreateAccount(const std::string& address) {
    auto reg = accounts_.Register(SecretBytes::CopyFrom(std::string_view(address)));
    EXPECT_TRUE(reg.ok());
    EXPECT_TRUE(accounts_.SecureRegistration(reg->id, PasswordHash(), Code(reg->totp_seed), Code(reg->totp_seed, -1)).ok());
    std::smatch m;
    std::string mail = env_.Mails().back();
    EXPECT_TRUE(std::regex_search(mail, m, std::regex("/confirm/([A-Za-z0-9_-]+)")));
    auto account = accounts_.ConfirmRegistration(reg->id, m[1].str());
    EXPECT_TRUE(account.ok()) << account.status().ToString();
    seed_ = std::move(reg->totp_seed);
    return account.ok() ? *account : "";
  }
  std::string ChallengeHash(const LoginChallenge& c) {
    std::string input = "cGFzc3dvcmQtaGFzaC1vZi00OC1ieXRlcy1iYXNlNjQ=" + c.challenge_salt;
    return crypto::HexEncode(*crypto::Sha512(AsBytes(input)));
  }

  ServiceEnv env_;
  Accounts accounts_;
  SecretBytes seed_;
};

TEST_F(AccountsTest, PendingRegistrationExpiresAndIsPurgedWithItsKey) {
  auto reg = accounts_.Register(SecretBytes::CopyFrom(std::string_view("late@example.com")));
  ASSERT_TRUE(reg.ok());
  EXPECT_TRUE(accounts_.GetRegistration(reg->id).ok());
  env_.clock_.Advance(3601);
  EXPECT_EQ(accounts_.GetRegistration(reg->id).status().code(), Code::kNotFound);
  auto purged = env_.store_->PurgeExpired(env_.clock_.NowSeconds(), 100);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 3u);  // the registration record, its data key and the key's usage counter
  EXPECT_EQ(accounts_.GetRegistration(reg->id).status().code(), Code::kNotFound);
}

TEST_F(AccountsTest, ConfirmationCreatesTheAccountExactlyOnce) {
  std::string account = CreateAccount("once@example.com");
  ASSERT_FALSE(account.empty());
  auto email = accounts_.AccountEmail(account);
  ASSERT_TRUE(email.ok());
  EXPECT_EQ(email->RevealString(SecretAccess::Grant()), "once@example.com");
  EXPECT_TRUE(*accounts_.AccountExists(account));
}

TEST_F(AccountsTest, ASecondAccountForTheSameAddressIsRefused) {
  ASSERT_FALSE(CreateAccount("twice@example.com").empty());
  auto reg = accounts_.Register(SecretBytes::CopyFrom(std::string_view("TWICE@example.com")));
  ASSERT_TRUE(reg.ok());
  ASSERT_TRUE(accounts_.SecureRegistration(reg->id, PasswordHash(), Code(reg->totp_seed), Code(reg->totp_seed, -1)).ok());
  std::smatch m;
  std::string mail = env_.Mails().back();
  ASSERT_TRUE(std::regex_search(mail, m, std::regex("/confirm/([A-Za-z0-9_-]+)")));
  EXPECT_EQ(accounts_.ConfirmRegistration(reg->id, m[1].str()).status().code(), Code::kAlreadyExists);
  // Nothing changed: the registration can still be read.
  EXPECT_TRUE(accounts_.GetRegistration(reg->id).ok());
}

TEST_F(AccountsTest, ChallengesExpireAndSessionsExpire) {
  std::string account = CreateAccount("clock@example.com");
  auto challenge = accounts_.IssueChallenge(account);
  ASSERT_TRUE(challenge.ok());
  env_.clock_.Advance(301);
  EXPECT_EQ(accounts_.Login(account, ChallengeHash(*challenge), Code(seed_), "peer").status().code(),
            Code::kUnauthenticated);
  challenge = accounts_.IssueChallenge(account);
  auto session = accounts_.Login(account, ChallengeHash(*challenge), Code(seed_), "peer");
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  EXPECT_TRUE(accounts_.GetSession(session->id).ok());
  env_.clock_.Advance(601);
  EXPECT_EQ(accounts_.GetSession(session->id).status().code(), Code::kNotFound);
}

TEST_F(AccountsTest, FailuresLockTheAccountWithGrowingDelay) {
  std::string account = CreateAccount("locked@example.com");
  for (int i = 0; i < 3; ++i) {
    auto c = accounts_.IssueChallenge(account);
    EXPECT_EQ(accounts_.Login(account, std::string(128, '0'), "000000", "peer").status().code(),
              Code::kUnauthenticated);
  }
  EXPECT_EQ(accounts_.LoginRetryAfter(account, "peer"), 10);
  auto c = accounts_.IssueChallenge(account);
  EXPECT_EQ(accounts_.Login(account, ChallengeHash(*c), Code(seed_), "peer").status().code(),
            Code::kResourceExhausted);
  env_.clock_.Advance(11);
  c = accounts_.IssueChallenge(account);
  EXPECT_TRUE(accounts_.Login(account, ChallengeHash(*c), Code(seed_), "peer").ok());
  EXPECT_EQ(accounts_.LoginRetryAfter(account, "peer"), 0);
}

TEST_F(AccountsTest, UnknownAccountsGetAStableFakeSalt) {
  auto a = accounts_.IssueChallenge("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  auto b = accounts_.IssueChallenge("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  auto other = accounts_.IssueChallenge("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  EXPECT_EQ(a->password_salt, b->password_salt);
  EXPECT_NE(a->password_salt, other->password_salt);
  EXPECT_EQ(a->password_salt.size(), kPasswordSaltChars);
  EXPECT_NE(a->challenge_salt, b->challenge_salt);
}

}  // namespace
}  // namespace otd::service
