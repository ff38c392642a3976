// Accounts against SoftHSM2, LMDB and a mail spool, with a fake clock for the time rules.
#include "service/accounts.h"

#include <gtest/gtest.h>

#include <regex>

#include "common/testing/status_matchers.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/totp.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

class AccountsTest : public ::testing::Test {
 protected:
  AccountsTest()
      : accounts_(*env_.vault_, *env_.store_, *env_.mailer_, env_.clock_, env_.log_, Options()) {}
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
  SecretBytes PasswordHash() {
    return SecretBytes::CopyFrom(std::string_view("cGFzc3dvcmQtaGFzaC1vZi00OC1ieXRlcy1iYXNlNjQ="));
  }

  static Result<Registration> RegisterOn(Accounts& accounts, std::string_view address,
                                         std::string_view peer, int64_t* wait) {
    return accounts.Register(SecretBytes::CopyFrom(address), peer, wait);
  }
  Result<Registration> Register(const std::string& address, const std::string& peer = "peer") {
    int64_t wait = -1;
    auto reg = accounts_.Register(SecretBytes::CopyFrom(std::string_view(address)), peer, &wait);
    EXPECT_EQ(wait > 0, !reg.ok() && (reg.status().code() == Code::kResourceExhausted ||
                                      reg.status().code() == Code::kUnavailable));
    return reg;
  }
  Status Secure(const Registration& reg, const std::string& peer = "peer",
                int64_t* wait = nullptr) {
    int64_t w = -1;
    Status st = accounts_.SecureRegistration(reg.id, PasswordHash(), Code(reg.totp_seed),
                                             Code(reg.totp_seed, -1), peer, &w);
    if (wait != nullptr) {
      *wait = w;
    }
    return st;
  }

  // Registers, secures and confirms; returns the account id.
  std::string CreateAccount(const std::string& address) {
    auto reg = Register(address);
    EXPECT_OK(reg);
    EXPECT_OK(Secure(*reg));
    std::smatch m;
    std::string mail = env_.Mails().back();
    EXPECT_TRUE(std::regex_search(mail, m, std::regex("/confirm/([A-Za-z0-9_-]+)")));
    auto account = accounts_.ConfirmRegistration(reg->id, m[1].str());
    EXPECT_OK(account);
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
  auto reg = Register("late@example.com");
  ASSERT_OK(reg);
  EXPECT_OK(accounts_.GetRegistration(reg->id));
  env_.clock_.Advance(3601);
  EXPECT_EQ(accounts_.GetRegistration(reg->id).status().code(), Code::kNotFound);
  auto purged = env_.store_->PurgeExpired(env_.clock_.NowSeconds(), 100);
  ASSERT_OK(purged);
  EXPECT_EQ(*purged, 3u);  // the registration record, its data key and the key's usage counter
  EXPECT_EQ(accounts_.GetRegistration(reg->id).status().code(), Code::kNotFound);
}

TEST_F(AccountsTest, ConfirmationCreatesTheAccountExactlyOnce) {
  std::string account = CreateAccount("once@example.com");
  ASSERT_FALSE(account.empty());
  auto email = accounts_.AccountEmail(account);
  ASSERT_OK(email);
  EXPECT_EQ(email->RevealString(SecretAccess::Grant()), "once@example.com");
  EXPECT_TRUE(*accounts_.AccountExists(account));
}

TEST_F(AccountsTest, ASecondAccountForTheSameAddressIsRefused) {
  ASSERT_FALSE(CreateAccount("twice@example.com").empty());
  auto reg = Register("TWICE@example.com");
  ASSERT_OK(reg);
  ASSERT_OK(Secure(*reg));
  std::smatch m;
  std::string mail = env_.Mails().back();
  ASSERT_TRUE(std::regex_search(mail, m, std::regex("/confirm/([A-Za-z0-9_-]+)")));
  EXPECT_EQ(accounts_.ConfirmRegistration(reg->id, m[1].str()).status().code(),
            Code::kAlreadyExists);
  // Nothing changed: the registration can still be read.
  EXPECT_OK(accounts_.GetRegistration(reg->id));
}

TEST_F(AccountsTest, ChallengesExpireAndSessionsExpire) {
  std::string account = CreateAccount("clock@example.com");
  auto challenge = accounts_.IssueChallenge(account);
  ASSERT_OK(challenge);
  env_.clock_.Advance(301);
  EXPECT_EQ(
      accounts_.Login(account, ChallengeHash(*challenge), Code(seed_), "peer").status().code(),
      Code::kUnauthenticated);
  challenge = accounts_.IssueChallenge(account);
  auto session = accounts_.Login(account, ChallengeHash(*challenge), Code(seed_), "peer");
  ASSERT_OK(session);
  EXPECT_OK(accounts_.GetSession(session->id));
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
  EXPECT_OK(accounts_.Login(account, ChallengeHash(*c), Code(seed_), "peer"));
  EXPECT_EQ(accounts_.LoginRetryAfter(account, "peer"), 0);
}

TEST_F(AccountsTest, RegistrationStepsToOneAddressAreLimitedAndMailOnlyWhileAllowed) {
  // Default: 4 steps per address (register and secure both count), then 60 s, doubling.
  auto reg = Register("victim@example.com", "peer-a");
  ASSERT_OK(reg);
  for (int i = 0; i < 3; ++i) {
    EXPECT_OK(Secure(*reg, "peer-" + std::to_string(i))) << i;
  }
  int64_t wait = -1;
  EXPECT_EQ(Secure(*reg, "peer-b", &wait).code(), Code::kResourceExhausted);
  EXPECT_EQ(wait, 60);
  EXPECT_EQ(env_.Mails().size(), 3u);  // the refused step mailed nothing
  // Wrong codes neither mail nor count; another spelling of the address is the same address.
  int64_t w = -1;
  Status wrong =
      accounts_.SecureRegistration(reg->id, PasswordHash(), "000000", "111111", "peer-c", &w);
  EXPECT_EQ(wrong.code(), Code::kInvalidArgument);
  EXPECT_EQ(w, 0);
  auto again = RegisterOn(accounts_, "VICTIM@example.com", "peer-d", &w);
  EXPECT_EQ(again.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(w, 60);
  env_.clock_.Advance(61);
  EXPECT_OK(Secure(*reg, "peer-e"));
  EXPECT_EQ(Secure(*reg, "peer-e", &wait).code(), Code::kResourceExhausted);
  EXPECT_EQ(wait, 120);
  EXPECT_EQ(env_.Mails().size(), 4u);
}

TEST_F(AccountsTest, APeerAtItsPendingCapIsRefusedUntilOneIsConfirmed) {
  AccountsOptions o = Options();
  o.registration_limits.max_pending_per_peer = 2;
  Accounts accounts(*env_.vault_, *env_.store_, *env_.mailer_, env_.clock_, env_.log_, o);
  int64_t wait = -1;
  auto first = RegisterOn(accounts, "one@example.com", "uid:7", &wait);
  auto second = RegisterOn(accounts, "two@example.com", "uid:7", &wait);
  ASSERT_TRUE(first.ok() && second.ok());
  auto third = RegisterOn(accounts, "three@example.com", "uid:7", &wait);
  EXPECT_EQ(third.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(wait, 3600);  // until the first pending registration expires (lifetime 1 h here)
  EXPECT_OK(RegisterOn(accounts, "three@example.com", "uid:8", &wait));
  // Confirming one gives its place back.
  ASSERT_TRUE(accounts
                  .SecureRegistration(first->id, PasswordHash(), Code(first->totp_seed),
                                      Code(first->totp_seed, -1), "uid:7", &wait)
                  .ok());
  std::smatch m;
  std::string mail = env_.Mails().back();
  ASSERT_TRUE(std::regex_search(mail, m, std::regex("/confirm/([A-Za-z0-9_-]+)")));
  ASSERT_TRUE(accounts.ConfirmRegistration(first->id, m[1].str()).ok());
  EXPECT_OK(RegisterOn(accounts, "four@example.com", "uid:7", &wait));
}

TEST_F(AccountsTest, AtTheGlobalCapRegistrationIsUnavailableButSecuringStillWorks) {
  AccountsOptions o = Options();
  o.registration_limits.max_pending = 2;
  Accounts accounts(*env_.vault_, *env_.store_, *env_.mailer_, env_.clock_, env_.log_, o);
  int64_t wait = -1;
  auto a = RegisterOn(accounts, "a@example.com", "p1", &wait);
  auto b = RegisterOn(accounts, "b@example.com", "p2", &wait);
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = RegisterOn(accounts, "c@example.com", "p3", &wait);
  EXPECT_EQ(c.status().code(), Code::kUnavailable);
  EXPECT_EQ(wait, 300);
  EXPECT_TRUE(accounts
                  .SecureRegistration(a->id, PasswordHash(), Code(a->totp_seed),
                                      Code(a->totp_seed, -1), "p1", &wait)
                  .ok());
  // Expired and purged registrations free the places.
  env_.clock_.Advance(3601);
  ASSERT_TRUE(env_.store_->PurgeExpired(env_.clock_.NowSeconds(), 100).ok());
  EXPECT_OK(RegisterOn(accounts, "c@example.com", "p3", &wait));
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
