// Access code pairs (seeds/000): create (the secret is shown once), list (no secrets), revoke.
// A login session or a bearer with the accessCodes scopes.

#include <algorithm>

#include <nlohmann/json.hpp>

#include "api/errors.h"
#include "api/links.h"
#include "api/request_helpers.h"
#include "api/routes.h"

namespace otd::api {

namespace {

using nlohmann::json;

std::string AccountPath(const std::string& id) { return "/account/" + id; }

// An access code pair as listed: never its secret.
json ItemJson(const std::string& account, const service::AccessCodeInfo& i) {
  return {{"code", i.code},
          {"description", i.description},
          {"created", IsoUtc(i.created_at, true)},
          {"expires", IsoUtc(i.expires_at, true)},
          {"href", AccountPath(account) + "/accessCode/" + i.code}};
}

Reply Create(Call& call) {
  const std::string& id = call.param("id");
  std::string description;
  if (call.body && call.body->contains("description")) {
    description = (*call.body)["description"];
    if (description.size() > 256) {
      return call.Error(400, "bad-request", "/description: longer than 256 characters");
    }
  }
  auto created = call.s().access_codes.Create(id, description);
  if (!created.ok()) {
    return call.Error(created.status());
  }
  // The secret is shown this once; the reply is built without reallocation copies.
  Response res =
      JsonResponse(call.req, 201,
                   ConcatExact({R"({"code":")", created->code, R"(","expires":")",
                                IsoUtc(created->expires_at, true), R"(","secret":")",
                                created->secret.RevealString(SecretAccess::Grant()), R"("})"}),
                   "application/json");
  const std::string self = AccountPath(id) + "/accessCode/" + created->code;
  AddStandardLinks(res, self);
  AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
  res.set(http::field::location, self);
  Reply reply(std::move(res));
  reply.object = created->code;
  return reply;
}

Reply List(Call& call) {
  const std::string& id = call.param("id");
  auto list = call.s().access_codes.List(id);
  if (!list.ok()) {
    return call.Error(list.status());
  }
  json items = json::array();
  for (const auto& i : *list) {
    items.push_back(ItemJson(id, i));
  }
  Response res = JsonResponse(call.req, 200, json{{"items", items}, {"count", list->size()}}.dump(),
                              "application/json");
  AddStandardLinks(res, AccountPath(id) + "/accessCode");
  AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
  // Each item carries its own `href`: one Link header per pair (up to 100) would exceed the
  // header limits of common clients.
  return res;
}

Reply Get(Call& call) {
  const std::string& id = call.param("id");
  auto list = call.s().access_codes.List(id);
  if (!list.ok()) {
    return call.Error(list.status());
  }
  const std::string& code = call.param("code");
  auto it = std::find_if(list->begin(), list->end(),
                         [&](const service::AccessCodeInfo& i) { return i.code == code; });
  if (it == list->end()) {
    return call.Error(NotFound("no such access code"));
  }
  const std::string self = AccountPath(id) + "/accessCode/" + code;
  Response res = JsonResponse(call.req, 200, ItemJson(id, *it).dump(), "application/json");
  AddStandardLinks(res, self);
  AddLink(res,
          {.href = AccountPath(id) + "/accessCode", .rel = "up", .title = "account-accessCode"});
  return res;
}

Reply Revoke(Call& call) {
  const std::string& id = call.param("id");
  if (Status st = call.s().access_codes.Revoke(id, call.param("code")); !st.ok()) {
    return call.Error(st);
  }
  Response res{http::status::no_content, call.req.version()};
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  AddLink(res,
          {.href = AccountPath(id) + "/accessCode", .rel = "up", .title = "account-accessCode"});
  return res;
}

}  // namespace

std::vector<RouteSpec> AccessCodeRoutes(const Services&) {
  std::vector<RouteSpec> r;
  r.push_back({.method = http::verb::post,
               .pattern = "/account/{id}/accessCode",
               .auth = {.scope = "accessCodes.create"},
               .body = {BodyKind::kOptionalJson, "account/access-code-request.json"},
               .audit = AuditSpec::Event("access_code_created"),
               .links = {{.where = Advertised::Where::kAccount,
                          .link = {.href = "/account/{id}/accessCode",
                                   .rel = "service",
                                   .title = "account-accessCode",
                                   .profile = "/schema/account/access-code-request.json"}}},
               .handler = Create});
  r.push_back({.method = http::verb::get,
               .pattern = "/account/{id}/accessCode",
               .auth = {.scope = "accessCodes.read"},
               .audit = AuditSpec::None(),
               .handler = List});
  r.push_back({.method = http::verb::get,
               .pattern = "/account/{id}/accessCode/{code}",
               .auth = {.scope = "accessCodes.read"},
               .audit = AuditSpec::None(),
               .handler = Get});
  r.push_back({.method = http::verb::delete_,
               .pattern = "/account/{id}/accessCode/{code}",
               .auth = {.scope = "accessCodes.delete"},
               .audit = AuditSpec::Event("access_code_revoked", "code"),
               .handler = Revoke});
  return r;
}

}  // namespace otd::api
