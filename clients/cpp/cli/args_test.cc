// The CLI's argument parsing, secret sources, settings resolution and QR rendering.
#include "cli/args.h"

#include <sys/stat.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "cli/qr.h"

namespace opentoken::cli {
namespace {

Result<Args> Parse(std::vector<std::string> argv) { return ParseArgs(argv); }

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

TEST(ParseArgs, CommandSubPositionalAndOptionsInAnyOrder) {
  Result<Args> a = Parse({"--socket", "/s", "access-code", "create", "--description=ci", "--save"});
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->command, "access-code");
  EXPECT_EQ(a->sub, "create");
  EXPECT_EQ(a->Get("--socket"), "/s");
  EXPECT_EQ(a->Get("--description"), "ci");
  EXPECT_TRUE(a->Has("--save"));
  Result<Args> t =
      Parse({"tokenize", "--public", "--expires", "1h", "--content-type", "text/plain"});
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->positional.empty());
  EXPECT_EQ(t->Get("--expires"), "1h");
  Result<Args> r = Parse({"request", "get", "/x", "--", "--not-an-option"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->positional, (std::vector<std::string>{"get", "/x", "--not-an-option"}));
  Result<Args> s = Parse({"access-token", "create", "--name", "n", "--scope", "a", "--scope", "b"});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->All("--scope"), (std::vector<std::string>{"a", "b"}));
}

TEST(ParseArgs, IdsStartingWithADashArePositional) {
  // Token ids and access codes are base64url: '-' is a valid first character.
  Result<Args> a = Parse({"detokenize", "-13l54FBDoBnT-0VJEzXQgsw_bS19-kY"});
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->positional, std::vector<std::string>{"-13l54FBDoBnT-0VJEzXQgsw_bS19-kY"});
  Result<Args> b = Parse({"access-code", "revoke", "--", "--2l54FBDoBnT-0VJEzXQgsw_bS19-kY"});
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->positional, std::vector<std::string>{"--2l54FBDoBnT-0VJEzXQgsw_bS19-kY"});
  Result<Args> c = Parse({"delete", "--2l54FBDoBnT-0VJEzXQgsw_bS19-kY"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("goes after --"), std::string::npos);
  EXPECT_TRUE(Parse({"tokenize", "-h"})->Has("--help"));
}

TEST(ParseArgs, UsageErrors) {
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{{"frobnicate"},
                                             {"access-code"},
                                             {"access-code", "explode"},
                                             {"tokenize", "--data", "@x"},  // not a tokenize option
                                             {"login", "--account"},        // missing value
                                             {"whoami", "--save=yes"},      // unknown here
                                             {"tokenize", "--public=yes"},  // flag with a value
                                             {"tokenize", "--frobnicate"}}) {
    Result<Args> a = Parse(argv);
    ASSERT_FALSE(a.ok()) << argv[0] << " " << argv.back();
    EXPECT_EQ(a.error().kind, Error::Kind::kUsage);
    EXPECT_EQ(ExitCodeFor(a.error()), kExitUsage);
  }
  EXPECT_TRUE(Parse({"access-code", "--help"}).ok());
}

TEST(ParseArgs, SecretsOnTheCommandLineAreRefusedWithTheAlternatives) {
  for (const char* opt :
       {"--password", "--secret", "--totp", "--totp-key", "--bearer", "--mail-code"}) {
    Result<Args> a = Parse({"login", opt, "hunter2"});
    ASSERT_FALSE(a.ok()) << opt;
    EXPECT_EQ(ExitCodeFor(a.error()), kExitUsage);
    EXPECT_NE(a.error().message.find("never taken on the command line"), std::string::npos);
    EXPECT_NE(a.error().message.find("-file"), std::string::npos);
    EXPECT_EQ(a.error().message.find("hunter2"), std::string::npos);
    Result<Args> b = Parse({"tokenize", std::string(opt) + "=hunter2"});
    ASSERT_FALSE(b.ok()) << opt;
    EXPECT_EQ(b.error().message.find("hunter2"), std::string::npos);
  }
}

TEST(ExitCodes, FollowTheErrorKind) {
  EXPECT_EQ(ExitCodeFor({Error::Kind::kHttp, 401, "", ""}), kExitRefused);
  EXPECT_EQ(ExitCodeFor({Error::Kind::kHttp, 404, "", ""}), kExitRefused);
  EXPECT_EQ(ExitCodeFor({Error::Kind::kHttp, 503, "", ""}), kExitTransport);
  EXPECT_EQ(ExitCodeFor({Error::Kind::kTransport, 0, "", ""}), kExitTransport);
  EXPECT_EQ(ExitCodeFor({Error::Kind::kLocal, 0, "", ""}), kExitLocal);
  EXPECT_EQ(ExitCodeFor({Error::Kind::kUsage, 0, "", ""}), kExitUsage);
}

class SecretSources : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/opentoken-args-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string Write(const std::string& name, const std::string& content) {
    const std::string path = dir_ + "/" + name;
    EXPECT_TRUE(WritePrivateFile(path, content).ok());
    return path;
  }
  std::string dir_;
};

TEST_F(SecretSources, FileStripsOneNewlineFdReadsOneLineEnvAndNothing) {
  const std::string file = Write("pw", "s3cret pass\n");
  Result<Args> a = Parse({"login", "--password-file", file});
  ASSERT_TRUE(a.ok());
  Result<std::optional<Secret>> s =
      ReadSecret(*a, {"password", "OPENTOKEN_PASSWORD", ""},
                 FakeEnv({{"OPENTOKEN_PASSWORD", "from-env"}}), false);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->Reveal(), "s3cret pass");  // the file wins over the environment

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string two_lines = "first\r\nsecond\n";
  ASSERT_EQ(::write(fds[1], two_lines.data(), two_lines.size()),
            static_cast<ssize_t>(two_lines.size()));
  ::close(fds[1]);
  Result<Args> b = Parse(
      {"login", "--password-fd", std::to_string(fds[0]), "--totp-fd", std::to_string(fds[0])});
  ASSERT_TRUE(b.ok());
  Result<std::optional<Secret>> pw = ReadSecret(*b, {"password", "X", ""}, FakeEnv({}), false);
  Result<std::optional<Secret>> totp = ReadSecret(*b, {"totp", "X", ""}, FakeEnv({}), false);
  ::close(fds[0]);
  ASSERT_TRUE(pw.ok() && pw->has_value() && totp.ok() && totp->has_value());
  EXPECT_EQ((*pw)->Reveal(), "first");
  EXPECT_EQ((*totp)->Reveal(), "second");

  Result<Args> c = Parse({"login"});
  ASSERT_TRUE(c.ok());
  Result<std::optional<Secret>> env = ReadSecret(*c, {"password", "OPENTOKEN_PASSWORD", ""},
                                                 FakeEnv({{"OPENTOKEN_PASSWORD", "e"}}), false);
  ASSERT_TRUE(env.ok() && env->has_value());
  EXPECT_EQ((*env)->Reveal(), "e");
  Result<std::optional<Secret>> none =
      ReadSecret(*c, {"password", "OPENTOKEN_PASSWORD", ""}, FakeEnv({}), false);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  Result<Args> d = Parse({"login", "--password-file", dir_ + "/missing"});
  ASSERT_TRUE(d.ok());
  Result<std::optional<Secret>> missing = ReadSecret(*d, {"password", "X", ""}, FakeEnv({}), false);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ExitCodeFor(missing.error()), kExitLocal);
  Result<Args> e = Parse({"login", "--password-fd", "x3"});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(ReadSecret(*e, {"password", "X", ""}, FakeEnv({}), false).error().kind,
            Error::Kind::kUsage);
}

TEST_F(SecretSources, PrivateFilesAre0600InA0700Directory) {
  const std::string path = Write("a/b/state.json", "{}");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  ASSERT_EQ(::stat((dir_ + "/a/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700U);
  Result<nlohmann::json> doc = LoadJsonFile(path);
  ASSERT_TRUE(doc.ok());
  EXPECT_TRUE(doc->is_object());
  EXPECT_TRUE(LoadJsonFile(dir_ + "/nope.json")->is_null());
  Write("bad.json", "[1]");
  EXPECT_FALSE(LoadJsonFile(dir_ + "/bad.json").ok());
}

TEST(Settings, FlagsBeatEnvironmentBeatProfileBeatState) {
  const nlohmann::json config = {
      {"profile", "work"},
      {"profiles",
       {{"work", {{"url", "https://127.0.0.1:9443"}, {"cacert", "/ca.pem"}, {"account", "P"}}},
        {"other", {{"socket", "/other.sock"}}}}}};
  const nlohmann::json state = {{"account", "S"}, {"access_code", "C"}, {"secret", "sec"}};
  Result<Paths> paths = PathsFor("work", "", FakeEnv({{"HOME", "/home/u"}}));
  ASSERT_TRUE(paths.ok());
  EXPECT_EQ(paths->config, "/home/u/.config/opentoken/config.json");
  EXPECT_EQ(paths->state, "/home/u/.local/state/opentoken/work.json");
  EXPECT_EQ(paths->session, "/home/u/.cache/opentoken/work.session");
  Result<Paths> xdg = PathsFor("p", "",
                               FakeEnv({{"HOME", "/h"},
                                        {"XDG_RUNTIME_DIR", "/run/user/1"},
                                        {"OPENTOKEN_CONFIG", "/etc/ot.json"}}));
  EXPECT_EQ(xdg->session, "/run/user/1/opentoken/p.session");
  EXPECT_EQ(xdg->config, "/etc/ot.json");

  Result<Settings> s = Resolve(*Parse({"whoami"}), FakeEnv({}), config, state, *paths);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->profile, "work");
  EXPECT_EQ(s->endpoint.url, "https://127.0.0.1:9443");
  EXPECT_EQ(s->endpoint.cacert, "/ca.pem");
  EXPECT_EQ(s->account, "P");  // the profile beats the state file
  EXPECT_EQ(s->access_code, "C");
  EXPECT_EQ(s->saved_secret, "sec");

  s = Resolve(*Parse({"whoami"}),
              FakeEnv({{"OPENTOKEN_ACCOUNT", "E"}, {"OPENTOKEN_ACCESS_CODE", "D"}}), config, state,
              *paths);
  EXPECT_EQ(s->account, "E");
  EXPECT_EQ(s->saved_secret, "");  // the saved secret belongs to the saved code only

  s = Resolve(*Parse({"whoami", "--account", "F", "--socket", "/s.sock"}),
              FakeEnv({{"OPENTOKEN_ACCOUNT", "E"}}), config, state, *paths);
  EXPECT_EQ(s->account, "F");
  EXPECT_EQ(s->endpoint.socket_path, "/s.sock");
  EXPECT_EQ(s->endpoint.url, "");  // --socket wins over the profile's url

  s = Resolve(*Parse({"whoami", "--profile", "other"}), FakeEnv({}), config, nlohmann::json(),
              *paths);
  EXPECT_EQ(s->endpoint.socket_path, "/other.sock");
  EXPECT_EQ(s->account, "");

  EXPECT_FALSE(
      Resolve(*Parse({"whoami", "--format", "xml"}), FakeEnv({}), config, state, *paths).ok());
  EXPECT_EQ(s->endpoint.timeout_seconds, 60);
  nlohmann::json with_timeout = config;
  with_timeout["profiles"]["work"]["timeout"] = 7;
  s = Resolve(*Parse({"whoami"}), FakeEnv({}), with_timeout, state, *paths);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->endpoint.timeout_seconds, 7);
  s = Resolve(*Parse({"whoami", "--timeout", "5"}), FakeEnv({{"OPENTOKEN_TIMEOUT", "9"}}), config,
              state, *paths);
  EXPECT_EQ(s->endpoint.timeout_seconds, 5);
  s = Resolve(*Parse({"whoami"}), FakeEnv({{"OPENTOKEN_TIMEOUT", "9"}}), config, state, *paths);
  EXPECT_EQ(s->endpoint.timeout_seconds, 9);
  for (const char* bad : {"0", "x", "3601", "5s"}) {
    EXPECT_FALSE(
        Resolve(*Parse({"whoami", "--timeout", bad}), FakeEnv({}), config, state, *paths).ok())
        << bad;
  }
  EXPECT_FALSE(
      Resolve(*Parse({"whoami", "--profile", "../x"}), FakeEnv({}), config, state, *paths).ok());
}

TEST(Usage, EveryCommandHasHelpAndTheOverviewDocumentsExitCodes) {
  for (const char* cmd : {"register", "confirm", "login", "logout", "whoami", "access-code",
                          "access-token", "tokenize", "detokenize", "delete", "sign", "request"}) {
    const std::string text = UsageText(cmd);
    EXPECT_NE(text.find(std::string("opentoken ") + cmd), std::string::npos) << cmd;
    EXPECT_NE(text.find("--socket"), std::string::npos) << cmd;
  }
  const std::string overview = UsageText("");
  EXPECT_NE(overview.find("Exit codes: 0 ok; 1"), std::string::npos);
  EXPECT_NE(overview.find("--socket PATH"), std::string::npos);
  EXPECT_NE(overview.find("OPENTOKEN_TIMEOUT"), std::string::npos);
}

TEST(Qr, HalfBlocksDrawTwoRowsPerLineWithAQuietZone) {
  // A 2x2 matrix: dark on the diagonal. With the 2-module quiet zone: 6x6 modules, 3 lines.
  const std::string out = RenderModules({{true, false}, {false, true}});
  const std::string full = "\u2588";
  const std::string upper = "\u2580";  // top light, bottom dark
  const std::string lower = "\u2584";  // top dark, bottom light
  std::string want;
  for (int i = 0; i < 6; ++i)
    want += full;
  want += "\n" + full + full + lower + upper + full + full + "\n";
  for (int i = 0; i < 6; ++i)
    want += full;
  want += "\n";
  EXPECT_EQ(out, want);
  Result<std::string> qr = RenderQr("otpauth://totp/opentokend:a%40example.com?secret=ABC");
  ASSERT_TRUE(qr.ok());
  EXPECT_GT(qr->size(), 100U);
}

}  // namespace
}  // namespace opentoken::cli
