#include "api/validation.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "api/schemas.h"
#include "common/testing/status_matchers.h"

namespace otd::api {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

using nlohmann::json;

constexpr std::string_view kRegister = "registration/register-request.json";
constexpr std::string_view kSecure = "registration/secure-request.json";
constexpr std::string_view kLogin = "account/login-request.json";
constexpr std::string_view kLogout = "account/logout-request.json";

const std::string kHash = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=";  // 36 chars, base64

class ValidationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto v = SchemaValidator::Create();
    ASSERT_OK(v);
    validator_ = std::move(v).value().release();
  }
  static void TearDownTestSuite() {
    delete validator_;
    validator_ = nullptr;
  }

  static Status Check(std::string_view schema, const json& doc) {
    Status s = validator_->Validate(schema, doc);
    if (s.ok()) {
      s = RejectUnknownFields(doc, schema, *validator_);
    }
    return s;
  }

  // Rejected as invalid input, with `pointer` in the message and without `secret`.
  static void ExpectRejected(std::string_view schema, const json& doc, const std::string& pointer,
                             const std::string& secret = "") {
    Status s = Check(schema, doc);
    ASSERT_THAT(s, Not(IsOk())) << doc.dump();
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
    EXPECT_TRUE(s.message().starts_with(pointer + ": ")) << s.message();
    if (!secret.empty()) {
      EXPECT_EQ(s.message().find(secret), std::string::npos) << s.message();
    }
  }

  static json Login(const json& challenge, const json& totp) {
    return {{"challengeHash", challenge}, {"mfa", {{"totp", totp}}}};
  }
  static json Secure(const json& totp) {
    return {{"passwordHash", kHash}, {"mfa", {{"totp", totp}}}};
  }

  static SchemaValidator* validator_;
};

SchemaValidator* ValidationTest::validator_ = nullptr;

TEST_F(ValidationTest, EveryEmbeddedSchemaCompilesAndAcceptsSomethingOrRejectsCleanly) {
  ASSERT_FALSE(EmbeddedSchemas().empty());
  for (const auto& f : EmbeddedSchemas()) {
    Status s = validator_->Validate(f.path, json::object());
    EXPECT_TRUE(s.ok() || s.code() == Code::kInvalidArgument) << f.path << ": " << s.ToString();
    s = validator_->Validate(f.path, json("x"));
    EXPECT_TRUE(s.ok() || s.code() == Code::kInvalidArgument) << f.path << ": " << s.ToString();
  }
}

TEST_F(ValidationTest, ValidRegisterRequestPasses) {
  EXPECT_OK(Check(kRegister, {{"email", "a@example.com"}}));
  EXPECT_OK(Check(kRegister, {{"email", "first.last+tag@sub.example.org"}}));
  EXPECT_OK(Check(kRegister, {{"email", "user@[192.0.2.1]"}}));
}

TEST_F(ValidationTest, MissingEmailIsRejectedNamingTheField) {
  Status s = Check(kRegister, json::object());
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "/email: is required");
}

TEST_F(ValidationTest, TooShortEmailIsRejectedWithoutEchoingIt) {
  ExpectRejected(kRegister, {{"email", "a@b.c"}}, "/email", "a@b.c");
}

TEST_F(ValidationTest, EmailNotMatchingThePatternIsRejectedWithoutEchoingIt) {
  for (const char* bad : {"no-at-sign.example.com", "two@at@example.com", "spa ce@example.com",
                          "secret-value@exa mple.com", "a@example..com"}) {
    ExpectRejected(kRegister, {{"email", bad}}, "/email", bad);
  }
  Status s = Check(kRegister, {{"email", "no-at-sign.example.com"}});
  EXPECT_EQ(s.message(), "/email: does not match the required pattern");
}

TEST_F(ValidationTest, NonObjectBodyIsRejectedAtTheRoot) {
  for (const json& doc : {json::array({"a@example.com"}), json("a@example.com"), json(nullptr),
                          json(42), json(true)}) {
    ExpectRejected(kRegister, doc, "/", "a@example.com");
  }
  EXPECT_EQ(Check(kRegister, json::array()).message(), "/: wrong type");
}

TEST_F(ValidationTest, WrongTypeIsRejectedNamingTheField) {
  ExpectRejected(kRegister, {{"email", 1234567}}, "/email", "1234567");
  ExpectRejected(kRegister, {{"email", {{"a", "b"}}}}, "/email");
  EXPECT_EQ(Check(kRegister, {{"email", true}}).message(), "/email: wrong type");
}

TEST_F(ValidationTest, ValidLoginRequestPasses) {
  EXPECT_OK(Check(kLogin, Login(kHash, "123456")));
  EXPECT_OK(Check(kLogin, Login(kHash, "000000")));
}

TEST_F(ValidationTest, LoginTotpMustBeSixDigits) {
  for (const char* bad : {"12345", "abcdef", "1234567", "12345a", "", "12 456"}) {
    ExpectRejected(kLogin, Login(kHash, bad), "/mfa/totp", std::string(bad).size() >= 5 ? bad : "");
  }
  ExpectRejected(kLogin, Login(kHash, 123456), "/mfa/totp", "123456");
  EXPECT_EQ(Check(kLogin, Login(kHash, "12345")).message(), "/mfa/totp: too short");
}

TEST_F(ValidationTest, LoginChallengeHashShorterThan24IsRejected) {
  std::string short_hash = kHash.substr(0, 23);
  ExpectRejected(kLogin, Login(short_hash, "123456"), "/challengeHash", short_hash);
  EXPECT_EQ(Check(kLogin, Login(short_hash, "123456")).message(), "/challengeHash: too short");
  EXPECT_OK(Check(kLogin, Login(kHash.substr(0, 24), "123456")));
}

TEST_F(ValidationTest, LoginChallengeHashFollowsThePasswordHashPatternThroughAllOf) {
  std::string bad = "not base64 but long enough!!";
  ExpectRejected(kLogin, Login(bad, "123456"), "/challengeHash", bad);
}

TEST_F(ValidationTest, LoginRequiresChallengeHashMfaAndTotp) {
  EXPECT_EQ(Check(kLogin, {{"mfa", {{"totp", "123456"}}}}).message(),
            "/challengeHash: is required");
  EXPECT_EQ(Check(kLogin, {{"challengeHash", kHash}}).message(), "/mfa: is required");
  EXPECT_EQ(Check(kLogin, {{"challengeHash", kHash}, {"mfa", json::object()}}).message(),
            "/mfa/totp: is required");
}

TEST_F(ValidationTest, SecureRequestNeedsCurrentAndPreviousTotp) {
  EXPECT_OK(Check(kSecure, Secure({{"current", "123456"}, {"previous", "654321"}})));
  EXPECT_EQ(Check(kSecure, Secure({{"current", "123456"}})).message(),
            "/mfa/totp/previous: is required");
  EXPECT_EQ(Check(kSecure, Secure({{"previous", "123456"}})).message(),
            "/mfa/totp/current: is required");
  ExpectRejected(kSecure, Secure({{"current", "12345x"}, {"previous", "654321"}}),
                 "/mfa/totp/current", "12345x");
  ExpectRejected(kSecure, Secure("123456"), "/mfa/totp", "123456");
}

TEST_F(ValidationTest, UnknownFieldsAreRejectedAtTopLevel) {
  Status s = Check(kRegister, {{"email", "a@example.com"}, {"admin", true}});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "/admin: unknown field");
}

TEST_F(ValidationTest, UnknownFieldsAreRejectedWhenNested) {
  json doc = Secure({{"current", "123456"}, {"previous", "654321"}, {"next", "111111"}});
  EXPECT_EQ(Check(kSecure, doc).message(), "/mfa/totp/next: unknown field");
  json login = Login(kHash, "123456");
  login["mfa"]["sms"] = "123456";
  EXPECT_EQ(Check(kLogin, login).message(), "/mfa/sms: unknown field");
}

TEST_F(ValidationTest, UnknownFieldNamesThatCouldBeDataAreNotEchoed) {
  for (const char* key : {"a@example.com", "4111111111111111", "with space", "x/y"}) {
    json doc = {{"email", "a@example.com"}, {key, 1}};
    Status s = Check(kRegister, doc);
    EXPECT_EQ(s.message(), "/: unknown field") << key;
  }
}

TEST_F(ValidationTest, EmptySchemaAcceptsOnlyAnEmptyObjectAsFarAsFieldsGo) {
  EXPECT_OK(Check(kLogout, json::object()));
  EXPECT_EQ(Check(kLogout, {{"everything", true}}).message(), "/everything: unknown field");
}

TEST_F(ValidationTest, EnumIsChecked) {
  EXPECT_OK(Check("account/token-create-request.json", {{"public", "true"}}));
  EXPECT_EQ(Check("account/token-create-request.json", {{"public", "yes"}}).message(),
            "/public: not an allowed value");
}

TEST_F(ValidationTest, VeryLongStringUnderAPatternIsRejectedBeforeTheRegexRuns) {
  // std::regex recurses per character: 60 000 characters overflow an 8 MiB stack.
  std::string local(60000, 'a');
  Status s = Check(kRegister, {{"email", local + "@example.com"}});
  EXPECT_EQ(s.message(), "/email: too long");
  std::string at_cap(kMaxPatternSubjectBytes - 12, 'a');
  EXPECT_OK(Check(kRegister, {{"email", at_cap + "@example.com"}}));
}

TEST_F(ValidationTest, DateTimeFormatIsCheckedOnStringsOnly) {
  // meta/date-string.json: its patterns and our RFC 3339 check.
  EXPECT_TRUE(validator_->Validate("meta/date-string.json", "2024-02-29T12:00:00Z").ok());
  EXPECT_TRUE(validator_->Validate("meta/date-string.json", "2023-12-31T23:59:60+05:30").ok());
  EXPECT_EQ(validator_->Validate("meta/date-string.json", "2023-02-29T12:00:00Z").message(),
            "/: not a valid date-time");
  EXPECT_FALSE(validator_->Validate("meta/date-string.json", "2023-13-01T12:00:00Z").ok());
  EXPECT_EQ(validator_->Validate("meta/date-string.json", 5).message(), "/: wrong type");
}

TEST_F(ValidationTest, UnknownSchemaIsAnInternalError) {
  EXPECT_EQ(validator_->Validate("nope.json", json::object()).code(), Code::kInternal);
  EXPECT_EQ(RejectUnknownFields(json::object(), "nope.json", *validator_).code(), Code::kInternal);
}

TEST_F(ValidationTest, ParseAndValidateRunsAllThreeSteps) {
  JsonLimits limits;
  auto ok = ParseAndValidate(R"({"email":"a@example.com"})", kRegister, *validator_, limits);
  ASSERT_OK(ok);
  EXPECT_EQ((*ok)["email"], "a@example.com");

  auto dup = ParseAndValidate(R"({"email":"a@example.com","email":"b@example.com"})", kRegister,
                              *validator_, limits);
  EXPECT_EQ(dup.status().code(), Code::kInvalidArgument);

  auto invalid = ParseAndValidate(R"({"email":"nope"})", kRegister, *validator_, limits);
  EXPECT_EQ(invalid.status().message(), "/email: too short");

  auto unknown =
      ParseAndValidate(R"({"email":"a@example.com","admin":true})", kRegister, *validator_, limits);
  EXPECT_EQ(unknown.status().message(), "/admin: unknown field");
}

TEST_F(ValidationTest, ValidateIsSafeFromManyThreads) {
  std::vector<std::thread> threads;
  std::vector<int> failures(8, 0);
  for (size_t t = 0; t < failures.size(); ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < 200; ++i) {
        if (!Check(kLogin, Login(kHash, "123456")).ok() ||
            Check(kLogin, Login(kHash, "12345")).ok() ||
            !Check(kRegister, {{"email", "a@example.com"}}).ok()) {
          ++failures[t];
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  for (int f : failures) {
    EXPECT_EQ(f, 0);
  }
}

// Schema sets built in the test, for what the embedded schemas do not exercise.
Result<std::unique_ptr<SchemaValidator>> FromFiles(std::vector<SchemaFile> files) {
  return SchemaValidator::CreateFrom(files);
}

TEST(SchemaSetTest, RefsResolveRelativeToTheReferringDocumentIncludingFragments) {
  auto v = FromFiles({
      {"a/root.json", R"({"type":"object","properties":{
          "x":{"$ref":"../b/lib.json#/definitions/code"},
          "y":{"$ref":"./sibling.json"},
          "z":{"$ref":"#/definitions/local"}},
        "definitions":{"local":{"type":"integer","minimum":3}}})"},
      {"a/sibling.json", R"({"allOf":[{"$ref":"../b/lib.json#/definitions/code"}],"maxLength":4})"},
      {"b/lib.json", R"({"definitions":{"code":{"type":"string","pattern":"^[0-9]+$"}}})"},
  });
  ASSERT_OK(v);
  auto check = [&](const json& doc) {
    Status s = (*v)->Validate("a/root.json", doc);
    return s.ok() ? RejectUnknownFields(doc, "a/root.json", **v) : s;
  };
  EXPECT_OK(check({{"x", "12"}, {"y", "34"}, {"z", 3}}));
  EXPECT_EQ(check({{"x", "1a"}}).message(), "/x: does not match the required pattern");
  EXPECT_EQ(check({{"y", "1a"}}).message(), "/y: does not match the required pattern");
  EXPECT_EQ(check({{"y", "12345"}}).message(), "/y: too long");
  EXPECT_EQ(check({{"z", 2}}).message(), "/z: out of range");
  EXPECT_EQ(check({{"z", 3.5}}).message(), "/z: wrong type");
}

TEST(SchemaSetTest, BrokenSchemaSetsFailToCreate) {
  struct Case {
    const char* name;
    std::vector<SchemaFile> files;
  };
  const std::vector<Case> cases = {
      {"unsupported keyword", {{"a.json", R"({"anyOf":[{"type":"string"}]})"}}},
      {"id changes resolution", {{"a.json", R"({"id":"http://example.com/a.json"})"}}},
      {"ref outside the set", {{"a.json", R"({"$ref":"b.json"})"}}},
      {"ref above the root", {{"d/a.json", R"({"$ref":"../../a.json"})"}}},
      {"absolute ref", {{"a.json", R"({"$ref":"http://example.com/a.json"})"}}},
      {"missing fragment", {{"a.json", R"({"$ref":"#/definitions/none"})"}}},
      {"ref cycle", {{"a.json", R"({"$ref":"b.json"})"}, {"b.json", R"({"$ref":"a.json"})"}}},
      {"bad pattern", {{"a.json", R"({"pattern":"(unclosed"})"}}},
      {"duplicate key", {{"a.json", R"({"type":"string","type":"object"})"}}},
      {"not a schema", {{"a.json", R"({"properties":{"x":5}})"}}},
  };
  for (const auto& c : cases) {
    auto v = FromFiles(c.files);
    EXPECT_THAT(v, Not(IsOk())) << c.name;
    if (!v.ok()) {
      EXPECT_EQ(v.status().code(), Code::kInternal) << c.name;
    }
  }
}

TEST(SchemaSetTest, AllOfCyclesThroughPropertiesTerminate) {
  auto v = FromFiles({{"tree.json", R"({"type":"object","properties":{
      "name":{"type":"string"},"child":{"$ref":"tree.json"}}})"}});
  ASSERT_OK(v);
  json doc = {{"name", "a"}, {"child", {{"name", "b"}, {"child", {{"name", "c"}}}}}};
  EXPECT_TRUE((*v)->Validate("tree.json", doc).ok());
  EXPECT_OK(RejectUnknownFields(doc, "tree.json", **v));
  doc["child"]["child"]["extra"] = 1;
  EXPECT_EQ(RejectUnknownFields(doc, "tree.json", **v).message(),
            "/child/child/extra: unknown field");
  doc["child"]["child"].erase("extra");
  doc["child"]["name"] = 7;
  EXPECT_EQ((*v)->Validate("tree.json", doc).message(), "/child/name: wrong type");
}

TEST(SchemaSetTest, AdditionalPropertiesOpensAnObjectButKeepsInputNamesOutOfMessages) {
  auto v = FromFiles({{"m.json", R"({"type":"object","properties":{"fixed":{"type":"string"}},
      "additionalProperties":{"type":"string","maxLength":3}})"}});
  ASSERT_OK(v);
  json ok = {{"fixed", "x"}, {"anything", "abc"}};
  EXPECT_TRUE((*v)->Validate("m.json", ok).ok());
  EXPECT_OK(RejectUnknownFields(ok, "m.json", **v));
  Status s = (*v)->Validate("m.json", {{"a@example.com", "abcd"}});
  EXPECT_EQ(s.message(), "/: too long");
  s = (*v)->Validate("m.json", {{"label", "abcd"}});
  EXPECT_EQ(s.message(), "/label: too long");
}

TEST(SchemaSetTest, ArrayItemsAreWalkedWithTheirIndex) {
  auto v = FromFiles({{"l.json", R"({"type":"object","properties":{"scope":{"type":"array",
      "items":{"type":"object","properties":{"name":{"type":"string","pattern":"^[a-z.]+$"}}}}}})"}});
  ASSERT_OK(v);
  json doc = {{"scope", {{{"name", "account.read"}}, {{"name", "X"}}}}};
  EXPECT_EQ((*v)->Validate("l.json", doc).message(),
            "/scope/1/name: does not match the required pattern");
  doc = {{"scope", {{{"name", "a"}}, {{"name", "b"}, {"nope", 1}}}}};
  EXPECT_EQ(RejectUnknownFields(doc, "l.json", **v).message(), "/scope/1/nope: unknown field");
  doc = {{"scope", {{{"name", std::string(5000, 'a')}}}}};
  EXPECT_EQ((*v)->Validate("l.json", doc).message(), "/scope/0/name: too long");
}

}  // namespace
}  // namespace otd::api
