#include "service/access_tokens.h"

#include <gtest/gtest.h>

#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "service/email_index.h"
#include "service/mail_requests.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

TEST(AccessTokenScopeTest, FamilyGrantsItsVerbsOnly) {
  EXPECT_TRUE(ScopeAllows({"accessTokens"}, "accessTokens.create"));
  EXPECT_TRUE(ScopeAllows({"accessTokens.read"}, "accessTokens.read"));
  EXPECT_FALSE(ScopeAllows({"accessTokens.read"}, "accessTokens.create"));
  EXPECT_FALSE(ScopeAllows({"accessTokens"}, "accessCodes.read"));
  EXPECT_FALSE(ScopeAllows({"account.read"}, "account"));
  EXPECT_FALSE(ScopeAllows({}, "account.read"));
  // A prefix of a family name is not the family.
  EXPECT_FALSE(ScopeAllows({"access"}, "accessTokens.read"));
}

TEST(AccessTokenFormatTest, RecognisesOnlyTheTokenShape) {
  const std::string good = "otk_" + std::string(43, 'A');
  EXPECT_TRUE(LooksLikeAccessToken(good));
  EXPECT_FALSE(LooksLikeAccessToken("otk_" + std::string(42, 'A')));
  EXPECT_FALSE(LooksLikeAccessToken("otx_" + std::string(43, 'A')));
  EXPECT_FALSE(LooksLikeAccessToken("otk_" + std::string(42, 'A') + "="));
  EXPECT_FALSE(LooksLikeAccessToken(""));
}

// The e-mail flow in process: the endpoints' calls queue, the queue's handler mails.
class AccessTokensMailTest : public ::testing::Test, protected ServiceEnv {
 protected:
  void SetUp() override {
    std::vector<store::Mutation> batch;
    auto key = vault_->keys().NewAccountKeyMutation("acct-1");
    auto index = EmailIndexInsert(*vault_, "owner@example.org", "acct-1");
    ASSERT_TRUE(key.ok() && index.ok());
    batch.push_back(std::move(key).value());
    batch.push_back(std::move(index).value());
    ASSERT_OK(store_->Apply(std::move(batch)));
  }

  AccessTokensOptions Options() {
    AccessTokensOptions o;
    o.email_tokens_per_account = 3;
    o.address_rate_limit.free_failures = 100;
    return o;
  }

  void Work() {
    queue_.ProcessDue([this](const MailRequest& r, store::Mutation done) {
      return tokens_.HandleMailRequest(r, std::move(done));
    });
  }

  std::vector<std::string> MailedTokens() {
    std::vector<std::string> out;
    const std::regex re("otk_[A-Za-z0-9_-]{43}");
    for (const auto& m : Mails()) {
      std::smatch match;
      if (std::regex_search(m, match, re)) {
        out.push_back(match.str());
      }
    }
    return out;
  }

  // The spool mailer, or a failure while `down`.
  struct SwitchableMailer final : mail::Mailer {
    explicit SwitchableMailer(mail::Mailer& m) : inner(m) {}
    Status Send(const mail::Message& m) override {
      if (on_send) {
        on_send(m);
      }
      return down ? Unavailable("mail spool not writable") : inner.Send(m);
    }
    mail::Mailer& inner;
    bool down = false;
    std::function<void(const mail::Message&)> on_send;  // called before the mail is sent
  };

  SwitchableMailer mailer_switch_{*mailer_};
  MailRequestQueue queue_{*vault_, *store_, clock_, log_};
  AccessTokens tokens_{*vault_, *store_, mailer_switch_, queue_, clock_, log_, Options()};
};

TEST_F(AccessTokensMailTest, TheRequestPathOnlyQueuesTheWorkerMails) {
  ASSERT_OK(tokens_.EmailToken("Owner@Example.org", "peer"));
  ASSERT_OK(tokens_.EmailToken("nobody@example.org", "peer"));
  EXPECT_TRUE(Mails().empty());
  Work();
  auto mailed = MailedTokens();
  ASSERT_EQ(mailed.size(), 1u);
  auto info = tokens_.Authenticate(mailed[0]);
  ASSERT_OK(info);
  EXPECT_EQ(info->account_id, "acct-1");
  EXPECT_EQ(info->source, "email");
  EXPECT_NE(log_sink_.str().find(R"("event":"access_token_mail_skipped","reason":"no_account")"),
            std::string::npos);
  EXPECT_EQ(log_sink_.str().find("nobody"), std::string::npos);
}

// Regression (issue 14): a client that waited as long as Retry-After said was refused again,
// every time, with a doubled wait (the limiter counted the request before checking it).
TEST_F(AccessTokensMailTest, AClientThatWaitsAsToldIsLetThrough) {
  const uint32_t allowance = tokens_.options().address_rate_limit.free_failures;
  for (uint32_t i = 0; i < allowance; ++i) {
    ASSERT_OK(tokens_.EmailToken("limited@example.org", "peer-" + std::to_string(i))) << i;
  }
  EXPECT_EQ(tokens_.EmailToken("limited@example.org", "peer").code(), Code::kResourceExhausted);
  const int64_t wait = tokens_.EmailRetryAfter("limited@example.org", "peer");
  ASSERT_GT(wait, 0);
  clock_.Advance(wait);
  EXPECT_OK(tokens_.EmailToken("LIMITED@example.org", "peer"));
  EXPECT_EQ(tokens_.EmailToken("limited@example.org", "peer").code(), Code::kResourceExhausted);
  EXPECT_EQ(tokens_.EmailRetryAfter("limited@example.org", "peer"), 2 * wait);
}

TEST_F(AccessTokensMailTest, MailedTokensLiveSideBySideUpToTheCap) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK(tokens_.EmailToken("owner@example.org", "peer"));
    Work();
  }
  auto mailed = MailedTokens();
  ASSERT_EQ(mailed.size(), 3u);  // the fourth request found the account at its cap
  for (const auto& t : mailed) {
    EXPECT_OK(tokens_.Authenticate(t));
  }
  EXPECT_NE(log_sink_.str().find(R"("reason":"email_token_cap")"), std::string::npos);
  // An expired one frees its place.
  clock_.Advance(tokens_.options().email_lifetime_seconds);
  ASSERT_OK(tokens_.EmailToken("owner@example.org", "peer"));
  Work();
  EXPECT_EQ(MailedTokens().size(), 4u);
  EXPECT_OK(tokens_.Authenticate(MailedTokens().back()));
}

// Regression (issue 17): the token was committed only after its mail was sent, so a recipient
// who used it at once (a client reading the spool) was refused for a few milliseconds.
TEST_F(AccessTokensMailTest, AMailedTokenIsValidBeforeItsMailLeaves) {
  std::vector<Status> at_send;
  mailer_switch_.on_send = [&](const mail::Message& m) {
    std::smatch match;
    const std::regex re("otk_[A-Za-z0-9_-]{43}");
    ASSERT_TRUE(std::regex_search(m.text, match, re));
    at_send.push_back(tokens_.Authenticate(match.str()).status());
  };
  ASSERT_OK(tokens_.EmailToken("owner@example.org", "peer"));
  Work();
  ASSERT_EQ(at_send.size(), 1u);
  EXPECT_OK(at_send[0]);
}

TEST_F(AccessTokensMailTest, AFailedMailMintsNothingAndIsRetried) {
  ASSERT_OK(tokens_.EmailToken("owner@example.org", "peer"));
  mailer_switch_.down = true;
  Work();
  mailer_switch_.down = false;
  EXPECT_TRUE(Mails().empty());
  auto list = tokens_.List("acct-1");
  ASSERT_OK(list);
  EXPECT_TRUE(list->empty());
  EXPECT_NE(log_sink_.str().find("mail_request_retry"), std::string::npos);
  clock_.Advance(5);
  Work();
  ASSERT_EQ(MailedTokens().size(), 1u);
  EXPECT_OK(tokens_.Authenticate(MailedTokens()[0]));
}

TEST_F(AccessTokensMailTest, TheRightCodeRightAfterAWrongOneRevokes) {
  // A wrong try is counted without waiting for its commit; the right code that follows at once
  // must not trip over that write (it used to fail when the write landed in between).
  const std::regex code_re("\r\n([A-Za-z0-9_-]{32})\r\n");
  for (int round = 0; round < 10; ++round) {
    ASSERT_OK(tokens_.EmailToken("owner@example.org", "peer"));
    ASSERT_OK(tokens_.EmailDeletionCode("owner@example.org", "peer"));
    Work();
    std::smatch match;
    const std::string mail = Mails().back();
    ASSERT_TRUE(std::regex_search(mail, match, code_re)) << mail;
    const std::string code = match[1].str();
    std::string wrong = code;
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    EXPECT_EQ(tokens_.DeleteEmailToken("owner@example.org", wrong, "peer").code(),
              Code::kInvalidArgument);
    Status s = tokens_.DeleteEmailToken("owner@example.org", code, "peer");
    ASSERT_OK(s) << "round " << round << ": " << s.ToString();
    EXPECT_TRUE(MailedTokens().empty() || !tokens_.Authenticate(MailedTokens().back()).ok());
  }
}

TEST_F(AccessTokensMailTest, FiveWrongTriesInARowDestroyTheCode) {
  ASSERT_OK(tokens_.EmailDeletionCode("owner@example.org", "peer"));
  Work();
  std::smatch match;
  const std::string mail = Mails().back();
  const std::regex code_re("\r\n([A-Za-z0-9_-]{32})\r\n");
  ASSERT_TRUE(std::regex_search(mail, match, code_re));
  const std::string code = match[1].str();
  // Another first character (a fixed "x" was the code itself for one code in 64).
  std::string wrong = code;
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  for (int i = 0; i < 5; ++i) {  // back to back: faster than the counts' commits
    EXPECT_EQ(tokens_.DeleteEmailToken("owner@example.org", wrong, "peer").code(),
              Code::kInvalidArgument);
  }
  EXPECT_EQ(tokens_.DeleteEmailToken("owner@example.org", code, "peer").code(),
            Code::kInvalidArgument);
}

TEST_F(AccessTokensMailTest, ABearerChangesOnlyTokensItCouldHaveCreated) {
  auto wide = tokens_.Create(
      "acct-1", {.name = "wide", .scope = {"accessTokens", "account"}, .active = false}, nullptr);
  auto narrow = tokens_.Create(
      "acct-1", {.name = "narrow", .scope = {"account.read"}, .active = false}, nullptr);
  auto updater = tokens_.Create(
      "acct-1", {.name = "u", .scope = {"accessTokens.update", "account.read"}}, nullptr);
  ASSERT_TRUE(wide.ok() && narrow.ok() && updater.ok());
  const AccessTokenInfo& caller = updater->info;
  auto denied = tokens_.Update("acct-1", wide->info.id, std::nullopt, true, &caller);
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(tokens_.Update("acct-1", wide->info.id, std::string("x"), std::nullopt, &caller)
                .status()
                .code(),
            Code::kPermissionDenied);
  EXPECT_FALSE(tokens_.Get("acct-1", wide->info.id)->active);
  auto ok = tokens_.Update("acct-1", narrow->info.id, std::nullopt, true, &caller);
  ASSERT_OK(ok);
  EXPECT_TRUE(ok->active);
  // Longer-lived than the bearer: out of reach as well.
  AccessTokenInfo short_lived = caller;
  short_lived.expires_at = clock_.NowSeconds() + 60;
  EXPECT_EQ(
      tokens_.Update("acct-1", narrow->info.id, std::nullopt, false, &short_lived).status().code(),
      Code::kPermissionDenied);
  // A login session changes anything.
  EXPECT_TRUE(tokens_.Update("acct-1", wide->info.id, std::nullopt, true, nullptr).ok());
}

}  // namespace
}  // namespace otd::service
