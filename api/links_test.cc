#include "api/links.h"

#include <gtest/gtest.h>

namespace otd::api {
namespace {

TEST(LinksTest, FormatsLikeTheDocumentation) {
  EXPECT_EQ(FormatLink({.href = "/", .rel = "up", .title = "self-discovery"}),
            R"(</>; rel="up"; title="self-discovery")");
  EXPECT_EQ(
      FormatLink({.href = "/account/{accountId}/login",
                  .rel = "service",
                  .title = "account-login",
                  .profile = "/schema/account/login-request.json",
                  .templated = true}),
      R"(</account/{accountId}/login>; rel="service"; profile="/schema/account/login-request.json"; templated="true"; title="account-login")");
}

TEST(LinksTest, EveryResponseGetsUpAndSelf) {
  Response res;
  AddStandardLinks(res, "/healthCheck");
  std::vector<std::string> links;
  for (const auto& f : res) {
    if (f.name() == http::field::link) {
      links.emplace_back(f.value());
    }
  }
  ASSERT_EQ(links.size(), 2u);
  EXPECT_EQ(links[0], R"(</>; rel="up"; title="self-discovery")");
  EXPECT_EQ(links[1], R"(</healthCheck>; rel="self")");
}

}  // namespace
}  // namespace otd::api
