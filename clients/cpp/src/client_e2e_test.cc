// libopentoken-client against a real daemon (run by tests/support/with_daemon.py, which exports
// OPENTOKEN_TEST_SOCKET, OPENTOKEN_TEST_URL, OPENTOKEN_TEST_CACERT, OPENTOKEN_TEST_MAIL_DIR):
// register -> confirm (link from the mail spool) -> login -> access code -> tokenize ->
// detokenize (exact bytes) -> delete -> 404 -> access tokens -> logout, over the Unix socket and
// over TLS.
#include <dirent.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "opentoken/client.h"

namespace opentoken {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::vector<std::string> Mails(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return out;
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".eml") {
      out.push_back(dir + "/" + name);
    }
  }
  ::closedir(d);
  return out;
}

std::string ConfirmationPathFor(const std::string& dir, const std::string& address) {
  for (int i = 0; i < 200; ++i) {
    for (const std::string& path : Mails(dir)) {
      std::ifstream f(path, std::ios::binary);
      std::stringstream text;
      text << f.rdbuf();
      if (text.str().find("To: " + address) != std::string::npos) {
        std::string link = FindConfirmationPath(text.str());
        if (!link.empty()) {
          return link;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {};
}

class EndToEnd : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (Env("OPENTOKEN_TEST_SOCKET").empty()) {
      GTEST_SKIP() << "run through tests/support/with_daemon.py";
    }
  }
  Endpoint Where() const {
    if (GetParam() == "unix") {
      return {Env("OPENTOKEN_TEST_SOCKET"), "", ""};
    }
    return {"", Env("OPENTOKEN_TEST_URL"), Env("OPENTOKEN_TEST_CACERT")};
  }
};

TEST_P(EndToEnd, TheWholeJourney) {
  const std::string address = "e2e-" + GetParam() + "@example.com";
  const Secret password("correct horse battery staple");
  Client client(Where());

  Result<Registration> reg = client.Register(address);
  ASSERT_TRUE(reg.ok()) << reg.error().message;
  Status secured = client.Secure(*reg, password, std::time(nullptr));
  ASSERT_TRUE(secured.ok()) << secured.error().message;
  const std::string path = ConfirmationPathFor(Env("OPENTOKEN_TEST_MAIL_DIR"), address);
  ASSERT_FALSE(path.empty());
  EXPECT_EQ(path.rfind(reg->href + "/confirm/", 0), 0U);
  Result<std::string> account = client.Confirm(path);
  ASSERT_TRUE(account.ok()) << account.error().message;
  Result<std::string> again = client.Confirm(path);  // works once
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().status, 404);

  Result<std::string> key = HexDecode(reg->key_hex);
  ASSERT_TRUE(key.ok());
  Status wrong = client.Login(*account, Secret("wrong password"), Totp(*key, std::time(nullptr)));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().status, 401);
  EXPECT_EQ(wrong.error().message, "login failed");
  Status in = client.Login(*account, password, Totp(*key, std::time(nullptr)));
  ASSERT_TRUE(in.ok()) << in.error().message;
  EXPECT_FALSE(client.cookie().Empty());
  Result<nlohmann::json> me = client.Account(*account);
  ASSERT_TRUE(me.ok()) << me.error().message;
  EXPECT_EQ((*me)["email"], address);

  Result<AccessCodePair> pair = client.CreateAccessCode(*account, "e2e");
  ASSERT_TRUE(pair.ok()) << pair.error().message;
  Result<nlohmann::json> codes = client.ListAccessCodes(*account);
  ASSERT_TRUE(codes.ok());
  ASSERT_EQ((*codes)["items"].size(), 1U);
  EXPECT_EQ((*codes)["items"][0]["code"], pair->code);

  std::string payload;
  for (int i = 0; i < 256; ++i) {
    payload.push_back(static_cast<char>(i));
  }
  TokenOptions options;
  options.content_type = "application/x-e2e; v=1";
  Result<std::string> id = client.Tokenize(*account, *pair, payload, options);
  ASSERT_TRUE(id.ok()) << id.error().message;
  Result<Detokenized> back = client.Detokenize(*account, *pair, *id);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->data.Reveal(), payload);
  EXPECT_EQ(back->content_type, "application/x-e2e; v=1");
  AccessCodePair bad{pair->code, Secret(std::string(32, 'x'))};
  Result<Detokenized> refused = client.Detokenize(*account, bad, *id);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().status, 401);
  ASSERT_TRUE(client.DeleteToken(*account, *pair, *id).ok());
  Result<Detokenized> gone = client.Detokenize(*account, *pair, *id);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().status, 404);

  Result<nlohmann::json> token =
      client.CreateAccessToken({{"name", "e2e"}, {"scope", {"account.read"}}});
  ASSERT_TRUE(token.ok()) << token.error().message;
  const std::string token_id = (*token)["id"];
  EXPECT_EQ(std::string((*token)["token"]).rfind("otk_", 0), 0U);
  Result<nlohmann::json> listed = client.ListAccessTokens();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ((*listed)["count"], 1);
  Result<nlohmann::json> updated = client.UpdateAccessToken(token_id, {{"name", "renamed"}});
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_EQ((*updated)["name"], "renamed");
  Client bearer(Where());
  bearer.SetBearer(Secret(std::string((*token)["token"])));
  EXPECT_TRUE(bearer.Account(*account).ok());
  ASSERT_TRUE(client.DeleteAccessToken(token_id).ok());
  Result<nlohmann::json> deleted = client.GetAccessToken(token_id);
  ASSERT_FALSE(deleted.ok());
  EXPECT_EQ(deleted.error().status, 404);
  EXPECT_EQ(deleted.error().code, "NotFound");
  EXPECT_EQ(bearer.Account(*account).error().status, 401);

  ASSERT_TRUE(client.RevokeAccessCode(*account, pair->code).ok());
  Result<std::string> revoked = client.Tokenize(*account, *pair, "x", options);
  ASSERT_FALSE(revoked.ok());
  EXPECT_EQ(revoked.error().status, 401);

  EXPECT_TRUE(client.RequestEmailedToken(address).ok());
  ASSERT_TRUE(client.Logout(*account).ok());
  Result<nlohmann::json> after = client.Account(*account);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().status, 401);
}

INSTANTIATE_TEST_SUITE_P(Transports, EndToEnd, ::testing::Values("unix", "tls"));

TEST(EndToEndTls, AnotherCaIsRefused) {
  if (Env("OPENTOKEN_TEST_URL").empty()) {
    GTEST_SKIP() << "run through tests/support/with_daemon.py";
  }
  Client system_cas({"", Env("OPENTOKEN_TEST_URL"), ""});  // the test pair is self-signed
  Result<Response> r = system_cas.Send({"GET", "/", {}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, Error::Kind::kTransport);
}

}  // namespace
}  // namespace opentoken
