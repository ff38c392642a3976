#include "service/access_tokens.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace otd::service
