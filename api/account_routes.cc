// The account (doc/api/account.md, logout.md): the login challenge, login (challenge hash +
// TOTP, sets the `login` cookie), the account resource with its service links, logout.

#include <algorithm>

#include <nlohmann/json.hpp>

#include "api/browser_policy.h"
#include "api/errors.h"
#include "api/links.h"
#include "api/request_helpers.h"
#include "api/routes.h"

namespace otd::api {

namespace {

using nlohmann::json;

std::string AccountPath(const std::string& id) { return "/account/" + id; }

json PasswordHashConfig(const std::string& salt) {
  return {{"algorithm", "sha512"}, {"derivedLength", service::kPasswordDerivedLength},
          {"encoding", "base64"},  {"iterations", service::kPasswordIterations},
          {"salt", salt},          {"type", "pbkdf2"}};
}

std::string CookieHeader(const RequestContext& ctx, const std::string& value, int64_t max_age,
                         std::string_view path) {
  std::string c = "login=" + value + "; Path=" + std::string(path) +
                  "; Max-Age=" + std::to_string(max_age) + "; HttpOnly; SameSite=Strict";
  if (ctx.transport == Transport::kTls) {
    c += "; Secure";
  }
  return c;
}

// The `login` cookie is accepted on the account API and on /access-tokens (docs/decisions.md):
// a browser gets it for both paths (two Set-Cookie fields, the account's first), so that the web
// console can manage access tokens; nowhere else.
void SetLoginCookies(Response& res, const RequestContext& ctx, const std::string& value,
                     int64_t max_age) {
  res.set(http::field::set_cookie, CookieHeader(ctx, value, max_age, "/account/"));
  res.insert(http::field::set_cookie, CookieHeader(ctx, value, max_age, "/access-tokens"));
}

Response TooManyLogins(const Call& call, int64_t wait) {
  Response res = call.Error(429, "too-many-requests", "too many failed logins; try again later");
  res.set(http::field::retry_after, std::to_string(std::max<int64_t>(1, wait)));
  return res;
}

Reply Challenge(Call& call) {
  const std::string& id = call.param("id");
  auto challenge = call.s().accounts.IssueChallenge(id);
  if (!challenge.ok()) {
    return call.Error(challenge.status());
  }
  json body = {
      {"challengeHashConfig",
       {{"algorithm", "sha512"}, {"encoding", "hex"}, {"salt", challenge->challenge_salt}}},
      {"passwordHashConfig", PasswordHashConfig(challenge->password_salt)}};
  Response res = JsonResponse(call.req, 200, body.dump(), "application/json");
  AddStandardLinks(res, AccountPath(id) + "/login");
  AddLink(res, {.href = AccountPath(id) + "/login",
                .rel = "service",
                .title = "account-login",
                .profile = "/schema/account/login-request.json"});
  AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
  return res;
}

Reply Login(Call& call) {
  service::Accounts& accounts = call.s().accounts;
  const std::string& id = call.param("id");
  const std::string& peer = call.ctx.limit_peer;
  if (int64_t wait = accounts.LoginRetryAfter(id, peer); wait > 0) {
    return TooManyLogins(call, wait);
  }
  const json& doc = *call.body;
  auto session = accounts.Login(id, doc["challengeHash"].get_ref<const std::string&>(),
                                doc["mfa"]["totp"].get_ref<const std::string&>(), peer);
  if (!session.ok()) {
    if (session.status().code() == Code::kUnauthenticated) {
      return call.Error(401, "unauthorized", "login failed");
    }
    if (session.status().code() == Code::kResourceExhausted) {
      return TooManyLogins(call, accounts.LoginRetryAfter(id, peer));
    }
    return call.Error(session.status());
  }
  Response res = JsonResponse(
      call.req, 200, ConcatExact({R"({"sessionId":")", session->id, R"("})"}), "application/json");
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
  SetLoginCookies(res, call.ctx, session->id, accounts.options().session_lifetime_seconds);
  return res;
}

Reply Account(Call& call, const Router& table) {
  const std::string& id = call.param("id");
  auto email = call.s().accounts.AccountEmail(id);
  if (!email.ok()) {
    return call.Error(email.status());
  }
  std::string_view address = email->RevealString(SecretAccess::Grant());
  if (!IsPlainJsonText(address)) {
    return call.Error(Internal("unexpected characters in the e-mail address"));
  }
  Response res = JsonResponse(call.req, 200, ConcatExact({R"({"email":")", address, R"("})"}),
                              "application/json");
  AddStandardLinks(res, AccountPath(id));
  // The services of this account: the links the route table advertises on accounts.
  for (Link link : table.AdvertisedLinks(Advertised::Where::kAccount)) {
    if (size_t at = link.href.find("{id}"); at != std::string::npos) {
      link.href.replace(at, 4, id);
    }
    AddLink(res, link);
  }
  return res;
}

// Logout always answers 204 and clears the cookie; a session of this account is ended.
Reply Logout(Call& call) {
  service::Accounts& accounts = call.s().accounts;
  if (auto cookie = CookieValue(call.req, "login");
      cookie && !cookie->empty() && cookie->size() <= 64) {
    if (auto refused = CrossSiteRefusal(call.req, call.s().public_url)) {
      return call.Error(403, "forbidden", *refused);
    }
    auto session = accounts.GetSession(*cookie);
    if (session.ok() && session->account_id == call.param("id")) {
      if (Status st = accounts.Logout(*cookie); !st.ok()) {
        return call.Error(st);
      }
    }
  }
  Response res{http::status::no_content, call.req.version()};
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  SetLoginCookies(res, call.ctx, "", 0);
  res.set(http::field::location, "/");
  return res;
}

}  // namespace

std::vector<RouteSpec> AccountRoutes(const Services&, const Router& table) {
  // The challenge and the login itself are the credential; logout needs none (it ends the
  // cookie's session when there is one).
  const AuthSpec anyone{.anonymous = true};
  std::vector<RouteSpec> r;
  r.push_back({.method = http::verb::get,
               .pattern = "/account/{id}/login",
               .auth = anyone,
               .audit = AuditSpec::None(),
               .handler = Challenge});
  r.push_back({.method = http::verb::post,
               .pattern = "/account/{id}/login",
               .auth = anyone,
               .body = {BodyKind::kJson, "account/login-request.json"},
               .audit = AuditSpec::Event("login"),
               .links = {{.link = {.href = "/account/{accountId}/login",
                                   .rel = "service",
                                   .title = "account-login",
                                   .profile = "/schema/account/login-request.json",
                                   .templated = true}}},
               .handler = Login});
  r.push_back({.method = http::verb::get,
               .pattern = "/account/{id}",
               .auth = {.scope = "account.read"},
               .audit = AuditSpec::None(),
               .handler = [&table](Call& c) { return Account(c, table); }});
  for (http::verb method : {http::verb::get, http::verb::post}) {
    RouteSpec logout{.method = method,
                     .pattern = "/account/{id}/logout",
                     .auth = anyone,
                     .audit = AuditSpec::Event("logout"),
                     .handler = Logout};
    if (method == http::verb::post) {
      logout.links = {{.where = Advertised::Where::kAccount,
                       .link = {.href = "/account/{id}/logout",
                                .rel = "service",
                                .title = "account-logout",
                                .profile = "/schema/account/logout-request.json"}}};
    }
    r.push_back(std::move(logout));
  }
  return r;
}

}  // namespace otd::api
