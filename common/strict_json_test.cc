#include "common/strict_json.h"

#include <gtest/gtest.h>

#include <string>

namespace otd {
namespace {

TEST(StrictJsonTest, AcceptsPlainObject) {
  auto r = ParseStrictJson(R"({"email":"a@example.com","n":[1,2,{"x":true}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["email"], "a@example.com");
}

TEST(StrictJsonTest, RejectsDuplicateKeysEvenWhenEscaped) {
  EXPECT_FALSE(ParseStrictJson(R"({"pan":"1","pan":"2"})").ok());
  EXPECT_FALSE(ParseStrictJson(R"({"pan":"1","p\u0061n":"2"})").ok());
  // The same key in different objects is fine.
  EXPECT_TRUE(ParseStrictJson(R"({"a":{"k":1},"b":{"k":2}})").ok());
}

TEST(StrictJsonTest, RejectsDeepNesting) {
  std::string deep(100, '[');
  deep += std::string(100, ']');
  EXPECT_FALSE(ParseStrictJson(deep).ok());
  std::string ok(8, '[');
  ok += std::string(8, ']');
  EXPECT_TRUE(ParseStrictJson(ok).ok());
}

TEST(StrictJsonTest, RejectsBomNulControlAndBadUtf8) {
  EXPECT_FALSE(ParseStrictJson("\xEF\xBB\xBF{}").ok());
  // Regression: nlohmann stops at a raw NUL, so trailing data after it was silently ignored.
  EXPECT_FALSE(ParseStrictJson(std::string_view("{\"a\":1}\0{\"b\":[[[1]]]}", 21)).ok());
  EXPECT_FALSE(ParseStrictJson(std::string_view("{\"a\":1}\0", 8)).ok());
  EXPECT_FALSE(ParseStrictJson(R"({"a":"x\u0000y"})").ok());
  EXPECT_FALSE(ParseStrictJson(R"({"a":"x\u0001y"})").ok());
  EXPECT_FALSE(ParseStrictJson("{\"a\":\"\xff\"}").ok());
  EXPECT_FALSE(ParseStrictJson("{} trailing").ok());
  EXPECT_FALSE(ParseStrictJson("{/*c*/}").ok());
  EXPECT_FALSE(ParseStrictJson("").ok());
}

TEST(StrictJsonTest, RejectsOverlongStrings) {
  JsonLimits limits;
  limits.max_string_bytes = 4;
  EXPECT_FALSE(ParseStrictJson(R"({"a":"12345"})", limits).ok());
  EXPECT_TRUE(ParseStrictJson(R"({"a":"1234"})", limits).ok());
}

}  // namespace
}  // namespace otd
