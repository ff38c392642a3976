#include "common/strict_json.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

#include <string>

namespace otd {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

TEST(StrictJsonTest, AcceptsPlainObject) {
  auto r = ParseStrictJson(R"({"email":"a@example.com","n":[1,2,{"x":true}]})");
  ASSERT_OK(r);
  EXPECT_EQ((*r)["email"], "a@example.com");
}

TEST(StrictJsonTest, RejectsDuplicateKeysEvenWhenEscaped) {
  EXPECT_THAT(ParseStrictJson(R"({"pan":"1","pan":"2"})"), Not(IsOk()));
  EXPECT_THAT(ParseStrictJson(R"({"pan":"1","p\u0061n":"2"})"), Not(IsOk()));
  // The same key in different objects is fine.
  EXPECT_OK(ParseStrictJson(R"({"a":{"k":1},"b":{"k":2}})"));
}

TEST(StrictJsonTest, NamesTheDuplicateKeyOnlyWhenAsked) {
  const char* doc = R"({"listen":{"unix":{"path":"/a"},"tls":{},"unix":{}}})";
  auto plain = ParseStrictJson(doc);
  ASSERT_THAT(plain, Not(IsOk()));
  EXPECT_EQ(plain.status().message(), "JSON object has a duplicate key");
  auto named = ParseStrictJson(doc, JsonLimits{.name_duplicate_keys = true});
  ASSERT_THAT(named, Not(IsOk()));
  EXPECT_EQ(named.status().message(), "JSON object has a duplicate key: listen.unix");
  auto top =
      ParseStrictJson(R"({"a":1,"b":{"c":2},"a":3})", JsonLimits{.name_duplicate_keys = true});
  ASSERT_THAT(top, Not(IsOk()));
  EXPECT_EQ(top.status().message(), "JSON object has a duplicate key: a");
}

TEST(StrictJsonTest, RejectsDeepNesting) {
  std::string deep(100, '[');
  deep += std::string(100, ']');
  EXPECT_THAT(ParseStrictJson(deep), Not(IsOk()));
  std::string ok(8, '[');
  ok += std::string(8, ']');
  EXPECT_OK(ParseStrictJson(ok));
}

TEST(StrictJsonTest, RejectsBomNulControlAndBadUtf8) {
  EXPECT_THAT(ParseStrictJson("\xEF\xBB\xBF{}"), Not(IsOk()));
  // Regression: nlohmann stops at a raw NUL, so trailing data after it was silently ignored.
  EXPECT_THAT(ParseStrictJson(std::string_view("{\"a\":1}\0{\"b\":[[[1]]]}", 21)), Not(IsOk()));
  EXPECT_THAT(ParseStrictJson(std::string_view("{\"a\":1}\0", 8)), Not(IsOk()));
  EXPECT_THAT(ParseStrictJson(R"({"a":"x\u0000y"})"), Not(IsOk()));
  EXPECT_THAT(ParseStrictJson(R"({"a":"x\u0001y"})"), Not(IsOk()));
  EXPECT_THAT(ParseStrictJson("{\"a\":\"\xff\"}"), Not(IsOk()));
  EXPECT_THAT(ParseStrictJson("{} trailing"), Not(IsOk()));
  EXPECT_THAT(ParseStrictJson("{/*c*/}"), Not(IsOk()));
  EXPECT_THAT(ParseStrictJson(""), Not(IsOk()));
}

TEST(StrictJsonTest, RejectsOverlongStrings) {
  JsonLimits limits;
  limits.max_string_bytes = 4;
  EXPECT_THAT(ParseStrictJson(R"({"a":"12345"})", limits), Not(IsOk()));
  EXPECT_OK(ParseStrictJson(R"({"a":"1234"})", limits));
}

}  // namespace
}  // namespace otd
