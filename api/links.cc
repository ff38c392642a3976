#include "api/links.h"

namespace otd::api {

std::string FormatLink(const Link& link) {
  std::string s = "<" + link.href + ">; rel=\"" + link.rel + "\"";
  if (!link.profile.empty()) {
    s += "; profile=\"" + link.profile + "\"";
  }
  if (link.templated) {
    s += "; templated=\"true\"";
  }
  if (!link.title.empty()) {
    s += "; title=\"" + link.title + "\"";
  }
  return s;
}

void AddLink(Response& res, const Link& link) { res.insert(http::field::link, FormatLink(link)); }

void AddStandardLinks(Response& res, const std::string& self) {
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  AddLink(res, {.href = self, .rel = "self"});
}

std::vector<Link> DiscoveryLinks() {
  return {
      {.href = "/access-tokens",
       .rel = "service",
       .title = "account-accessTokens",
       .profile = "/schema/access-tokens/access-token-post.json"},
      {.href = "/account/{accountId}/login",
       .rel = "service",
       .title = "account-login",
       .profile = "/schema/account/login-request.json",
       .templated = true},
      {.href = "/account/{accountId}/token{?public}",
       .rel = "service",
       .title = "account-token-create",
       .profile = "/schema/account/token-create-request.json",
       .templated = true},
      {.href = "/healthCheck", .rel = "service", .title = "health-check"},
      {.href = "/v1/access_tokens",
       .rel = "service",
       .title = "access-tokens-email",
       .profile = "/schema/v1/access-tokens-request.json"},
      {.href = "/v1/access_tokens/delete",
       .rel = "service",
       .title = "access-tokens-email-delete",
       .profile = "/schema/v1/access-tokens-request.json"},
      {.href = "/registration",
       .rel = "service",
       .title = "registration-register",
       .profile = "/schema/registration/register-request.json"},
  };
}

}  // namespace otd::api
