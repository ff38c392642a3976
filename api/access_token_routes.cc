// Access tokens, the collection API (seeds/003, Losant style: `/access-tokens`, errors
// {"type", "message"}). The caller's account is the session's or the token's, never one named in
// the request. The rules live in service::AccessTokens; reference/access-tokens-spec.md §3 and
// docs/decisions.md say where we deviate from the original.

#include <algorithm>

#include <nlohmann/json.hpp>

#include "api/errors.h"
#include "api/links.h"
#include "api/request_helpers.h"
#include "api/routes.h"
#include "common/ascii.h"
#include "common/dates.h"

namespace otd::api {

namespace {

using nlohmann::json;

constexpr std::string_view kCollectionPath = "/access-tokens";

bool IsTokenId(std::string_view id) {
  return id.size() == 24 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

json TokenJson(const service::AccessTokenInfo& i) {
  json j = {{"id", i.id},
            {"accessTokenId", i.id},
            {"accountId", i.account_id},
            {"name", i.name},
            {"scope", i.scope},
            {"status", i.active ? "active" : "inactive"},
            {"creationDate", IsoUtc(i.created_at, true)},
            {"lastUpdated", IsoUtc(i.updated_at, true)},
            {"expirationDate", IsoUtc(i.expires_at, true)},
            {"source", i.source}};
  if (!i.description.empty()) {
    j["description"] = i.description;
  }
  if (i.last_used > 0) {
    j["lastUsed"] = IsoUtc(i.last_used, true);
  }
  return j;
}

std::string TokenPath(const std::string& id) { return std::string(kCollectionPath) + "/" + id; }

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Response TokenReply(const Call& call, unsigned status, const json& body, const std::string& id) {
  Response res = JsonResponse(call.req, status, Dump(body), "application/json");
  AddStandardLinks(res, TokenPath(id));
  AddLink(res,
          {.href = std::string(kCollectionPath), .rel = "up", .title = "account-accessTokens"});
  return res;
}

// The {accessTokenId} of the path, lower-cased, or the 400 to answer.
std::optional<std::string> ItemId(const Call& call, std::optional<Response>* error) {
  const std::string& id = call.param("accessTokenId");
  if (!IsTokenId(id)) {
    *error = call.Error(400, "Validation", "accessTokenId: must be 24 hexadecimal characters");
    return std::nullopt;
  }
  return AsciiLowerCopy(id);
}

Reply List(Call& call) {
  auto list = call.s().access_tokens.List(call.caller->account_id);
  if (!list.ok()) {
    return call.Error(list.status());
  }
  json items = json::array();
  for (const auto& i : *list) {
    items.push_back(TokenJson(i));
  }
  Response res = JsonResponse(call.req, 200, Dump({{"items", items}, {"count", list->size()}}),
                              "application/json");
  AddStandardLinks(res, std::string(kCollectionPath));
  AddLink(res, {.href = std::string(kCollectionPath),
                .rel = "service",
                .title = "account-accessTokens",
                .profile = "/schema/access-tokens/access-token-post.json"});
  return res;
}

Reply Create(Call& call) {
  const json& doc = *call.body;
  service::AccessTokenSpec spec;
  spec.name = doc["name"];
  if (doc.contains("description")) {
    spec.description = doc["description"];
  }
  if (doc.contains("scope")) {
    spec.scope = doc["scope"].get<std::vector<std::string>>();
  }
  if (doc.contains("status")) {
    spec.active = doc["status"] == "active";
  }
  if (doc.contains("expirationDate")) {
    auto t = ParseRfc3339(doc["expirationDate"].get_ref<const std::string&>());
    if (!t) {
      return call.Error(400, "Validation", "/expirationDate: not a valid date-time");
    }
    spec.expires_at = *t;
  }
  auto created =
      call.s().access_tokens.Create(call.caller->account_id, spec, call.caller->BearerOrNull());
  if (!created.ok()) {
    return call.Error(created.status());
  }
  json body = TokenJson(created->info);
  body["token"] = std::string(created->token.RevealString(SecretAccess::Grant()));
  Response res = TokenReply(call, 201, body, created->info.id);
  WipeJson(body);
  res.set(http::field::location, TokenPath(created->info.id));
  Reply reply(std::move(res));
  reply.object = created->info.id;
  return reply;
}

Reply Get(Call& call) {
  std::optional<Response> error;
  auto id = ItemId(call, &error);
  if (!id) {
    return std::move(*error);
  }
  auto info = call.s().access_tokens.Get(call.caller->account_id, *id);
  if (!info.ok()) {
    return call.Error(info.status());
  }
  return TokenReply(call, 200, TokenJson(*info), info->id);
}

Reply Update(Call& call) {
  std::optional<Response> error;
  auto id = ItemId(call, &error);
  if (!id) {
    return std::move(*error);
  }
  const json& doc = *call.body;
  std::optional<std::string> name;
  std::optional<bool> active;
  if (doc.contains("name")) {
    name = doc["name"].get<std::string>();
  }
  if (doc.contains("status")) {
    active = doc["status"] == "active";
  }
  auto info = call.s().access_tokens.Update(call.caller->account_id, *id, name, active,
                                            call.caller->BearerOrNull());
  if (!info.ok()) {
    return call.Error(info.status());
  }
  return TokenReply(call, 200, TokenJson(*info), info->id);
}

Reply Delete(Call& call) {
  std::optional<Response> error;
  auto id = ItemId(call, &error);
  if (!id) {
    return std::move(*error);
  }
  if (Status st = call.s().access_tokens.Delete(call.caller->account_id, *id); !st.ok()) {
    return call.Error(st);
  }
  Response res = JsonResponse(call.req, 200, R"({"success":true})", "application/json");
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  AddLink(res,
          {.href = std::string(kCollectionPath), .rel = "up", .title = "account-accessTokens"});
  return res;
}

}  // namespace

std::vector<RouteSpec> AccessTokenRoutes(const Services&) {
  // Only the Losant clients' default query parameters are accepted (and ignored).
  const std::vector<std::string_view> query = {"_actions", "_links", "_embedded"};
  auto auth = [](std::string_view scope) {
    return AuthSpec{.scope = scope, .account_in_path = false};
  };
  const Link service_link{.href = std::string(kCollectionPath),
                          .rel = "service",
                          .title = "account-accessTokens",
                          .profile = "/schema/access-tokens/access-token-post.json"};
  const std::string item = std::string(kCollectionPath) + "/{accessTokenId}";
  std::vector<RouteSpec> r;
  r.push_back({.method = http::verb::get,
               .pattern = std::string(kCollectionPath),
               .dialect = Dialect::kAccessTokens,
               .auth = auth("accessTokens.read"),
               .query = query,
               .audit = AuditSpec::None(),
               .handler = List});
  r.push_back({.method = http::verb::post,
               .pattern = std::string(kCollectionPath),
               .dialect = Dialect::kAccessTokens,
               .auth = auth("accessTokens.create"),
               .query = query,
               .body = {BodyKind::kJson, "access-tokens/access-token-post.json"},
               .audit = AuditSpec::Event("access_token_created"),
               .links = {{.link = service_link},
                         {.where = Advertised::Where::kAccount, .link = service_link}},
               .handler = Create});
  r.push_back({.method = http::verb::get,
               .pattern = item,
               .dialect = Dialect::kAccessTokens,
               .auth = auth("accessTokens.read"),
               .query = query,
               .audit = AuditSpec::None(),
               .handler = Get});
  r.push_back({.method = http::verb::patch,
               .pattern = item,
               .dialect = Dialect::kAccessTokens,
               .auth = auth("accessTokens.update"),
               .query = query,
               .body = {BodyKind::kJson, "access-tokens/access-token-patch.json"},
               .audit = AuditSpec::Event("access_token_updated", "accessTokenId"),
               .handler = Update});
  r.push_back({.method = http::verb::delete_,
               .pattern = item,
               .dialect = Dialect::kAccessTokens,
               .auth = auth("accessTokens.delete"),
               .query = query,
               .audit = AuditSpec::Event("access_token_revoked", "accessTokenId"),
               .handler = Delete});
  return r;
}

}  // namespace otd::api
