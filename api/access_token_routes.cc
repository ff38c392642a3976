// Access tokens: the collection API (seeds/003, Losant style: `/access-tokens`, errors
// {"type", "message"}) and the e-mail API (seeds/002, pkmnapi style: `/v1/access_tokens`,
// JSON:API-like bodies, errors {"data": {"id", "type": "errors", "attributes": {"message"}}}).
// The rules live in service::AccessTokens; reference/access-tokens-spec.md §3 and
// docs/decisions.md say where we deviate from the originals.

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "api/errors.h"
#include "api/links.h"
#include "api/request_helpers.h"
#include "api/routes.h"

namespace otd::api {

namespace {

using nlohmann::json;

constexpr std::string_view kCollectionPath = "/access-tokens";
constexpr std::string_view kEmailPath = "/v1/access_tokens";

// An RFC 3339 date-time already checked by the schema ("format": "date-time"): fractions are
// truncated to whole seconds, offsets applied. nullopt if it does not parse after all.
std::optional<int64_t> ParseRfc3339(std::string_view v) {
  std::tm tm{};
  int year = 0, mon = 0, day = 0, hour = 0, min = 0, sec = 0;
  int consumed = 0;
  std::string s(v);
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &year, &mon, &day, &hour, &min, &sec,
                  &consumed) != 6) {
    return std::nullopt;
  }
  std::string_view rest = v.substr(static_cast<size_t>(consumed));
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') {
      rest.remove_prefix(1);
    }
  }
  int64_t offset = 0;
  if (rest == "Z" || rest == "z") {
    offset = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int oh = (rest[1] - '0') * 10 + (rest[2] - '0');
    int om = (rest[4] - '0') * 10 + (rest[5] - '0');
    offset = (rest[0] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  } else {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = std::min(sec, 59);
  return static_cast<int64_t>(timegm(&tm)) - offset;
}

bool IsTokenId(std::string_view id) {
  return id.size() == 24 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

std::string LowerHex(std::string_view id) {
  std::string out(id);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// A request body: Content-Type, size, strict JSON, schema, unknown members. On failure `status`
// and the message (never an input value) say what to answer.
struct Body {
  std::optional<json> doc;
  unsigned status = 400;
  std::string message;
};

Body ReadBody(const Request& req, const Services& s, std::string_view schema_path) {
  Body b;
  if (MediaType(req[http::field::content_type]) != "application/json") {
    b.status = 415;
    b.message = "the request body must be application/json";
    return b;
  }
  if (req.body().size() > s.limits.max_json_body_bytes) {
    b.status = 413;
    b.message = "request body is too large";
    return b;
  }
  JsonLimits jl;
  jl.max_depth = s.limits.max_json_depth;
  jl.max_string_bytes = s.limits.max_json_body_bytes;
  auto parsed = ParseAndValidate(req.body(), schema_path, s.schemas, jl);
  if (!parsed.ok()) {
    b.message = parsed.status().message();
    return b;
  }
  b.doc = std::move(parsed).value();
  return b;
}

// --- collection style (Losant) ---------------------------------------------------------------

Response LosantError(const Request& req, unsigned status, std::string_view type, std::string_view message) {
  json body = {{"type", std::string(type)}, {"message", std::string(message)}};
  Response res = JsonResponse(req, status, body.dump(-1, ' ', false, json::error_handler_t::replace),
                              "application/json");
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  if (status == 401) {
    res.set(http::field::www_authenticate, R"(Bearer realm="opentokend", error="invalid_token")");
  }
  return res;
}

Response LosantErrorFromStatus(const Request& req, const Status& st) {
  switch (st.code()) {
    case Code::kInvalidArgument: return LosantError(req, 400, "Validation", st.message());
    case Code::kUnauthenticated: return LosantError(req, 401, "Unauthorized", "invalid or missing credentials");
    case Code::kPermissionDenied: return LosantError(req, 403, "Forbidden", st.message());
    case Code::kNotFound:
    case Code::kDataLoss: return LosantError(req, 404, "NotFound", "Access token was not found");
    case Code::kUnavailable:
    case Code::kResourceExhausted:
      return LosantError(req, 503, "ServiceUnavailable", "service temporarily unavailable");
    default: return LosantError(req, 500, "InternalError", "internal error");
  }
}

// Only the Losant clients' default query parameters are accepted (and ignored).
bool QueryAllowed(std::string_view q) {
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    std::string_view name = pair.substr(0, pair.find('='));
    if (name != "_actions" && name != "_links" && name != "_embedded") {
      return false;
    }
  }
  return true;
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

Response TokenReply(const Request& req, unsigned status, const json& body, const std::string& id) {
  Response res = JsonResponse(req, status, body.dump(-1, ' ', false, json::error_handler_t::replace),
                              "application/json");
  AddStandardLinks(res, TokenPath(id));
  AddLink(res, {.href = std::string(kCollectionPath), .rel = "up", .title = "account-accessTokens"});
  return res;
}

// The caller and, when `scope` is not empty, its right to `scope`; or the error reply.
struct Authorized {
  std::optional<Caller> caller;
  std::optional<Response> error;
};

Authorized Authorize(const Services& s, const Request& req, const RequestContext& ctx,
                     std::string_view scope) {
  Authorized a;
  if (!QueryAllowed(ctx.query)) {
    a.error = LosantError(req, 400, "Validation", "unknown query parameter");
    return a;
  }
  auto caller = ResolveCaller(s, req);
  if (!caller.ok()) {
    a.error = LosantErrorFromStatus(req, caller.status());
    return a;
  }
  if (!caller->Allows(scope)) {
    a.error = LosantError(req, 403, "Forbidden", "the access token's scope does not allow this");
    return a;
  }
  a.caller = std::move(caller).value();
  return a;
}

void RegisterCollectionRoutes(Router& router, const Services& s) {
  router.Add(http::verb::get, std::string(kCollectionPath), [&s](const Request& req, RequestContext& ctx) {
    Authorized a = Authorize(s, req, ctx, "accessTokens.read");
    if (a.error) {
      return std::move(*a.error);
    }
    auto list = s.access_tokens.List(a.caller->account_id);
    if (!list.ok()) {
      return LosantErrorFromStatus(req, list.status());
    }
    json items = json::array();
    for (const auto& i : *list) {
      items.push_back(TokenJson(i));
    }
    json body = {{"items", items}, {"count", list->size()}};
    Response res = JsonResponse(req, 200, body.dump(-1, ' ', false, json::error_handler_t::replace),
                                "application/json");
    AddStandardLinks(res, std::string(kCollectionPath));
    AddLink(res, {.href = std::string(kCollectionPath),
                  .rel = "service",
                  .title = "account-accessTokens",
                  .profile = "/schema/access-tokens/access-token-post.json"});
    return res;
  });

  router.Add(http::verb::post, std::string(kCollectionPath), [&s](const Request& req, RequestContext& ctx) {
    Authorized a = Authorize(s, req, ctx, "accessTokens.create");
    if (a.error) {
      return std::move(*a.error);
    }
    Body b = ReadBody(req, s, "access-tokens/access-token-post.json");
    if (!b.doc) {
      return LosantError(req, b.status, "Validation", b.message);
    }
    const json& doc = *b.doc;
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
      auto t = ParseRfc3339(doc["expirationDate"].get<std::string>());
      if (!t) {
        return LosantError(req, 400, "Validation", "/expirationDate: not a valid date-time");
      }
      spec.expires_at = *t;
    }
    const service::AccessTokenInfo* creator = a.caller->bearer ? &*a.caller->bearer : nullptr;
    auto created = s.access_tokens.Create(a.caller->account_id, spec, creator);
    if (!created.ok()) {
      return LosantErrorFromStatus(req, created.status());
    }
    json body = TokenJson(created->info);
    body["token"] = std::string(created->token.RevealString(SecretAccess::Grant()));
    Response res = TokenReply(req, 201, body, created->info.id);
    WipeJson(body);
    res.set(http::field::location, TokenPath(created->info.id));
    return res;
  });

  const std::string item = std::string(kCollectionPath) + "/{accessTokenId}";
  router.Add(http::verb::get, item, [&s](const Request& req, RequestContext& ctx) {
    Authorized a = Authorize(s, req, ctx, "accessTokens.read");
    if (a.error) {
      return std::move(*a.error);
    }
    const std::string& id = ctx.params["accessTokenId"];
    if (!IsTokenId(id)) {
      return LosantError(req, 400, "Validation", "accessTokenId: must be 24 hexadecimal characters");
    }
    auto info = s.access_tokens.Get(a.caller->account_id, LowerHex(id));
    if (!info.ok()) {
      return LosantErrorFromStatus(req, info.status());
    }
    return TokenReply(req, 200, TokenJson(*info), info->id);
  });

  router.Add(http::verb::patch, item, [&s](const Request& req, RequestContext& ctx) {
    Authorized a = Authorize(s, req, ctx, "accessTokens.update");
    if (a.error) {
      return std::move(*a.error);
    }
    const std::string& id = ctx.params["accessTokenId"];
    if (!IsTokenId(id)) {
      return LosantError(req, 400, "Validation", "accessTokenId: must be 24 hexadecimal characters");
    }
    Body b = ReadBody(req, s, "access-tokens/access-token-patch.json");
    if (!b.doc) {
      return LosantError(req, b.status, "Validation", b.message);
    }
    std::optional<std::string> name;
    std::optional<bool> active;
    if (b.doc->contains("name")) {
      name = (*b.doc)["name"].get<std::string>();
    }
    if (b.doc->contains("status")) {
      active = (*b.doc)["status"] == "active";
    }
    const service::AccessTokenInfo* caller = a.caller->bearer ? &*a.caller->bearer : nullptr;
    auto info = s.access_tokens.Update(a.caller->account_id, LowerHex(id), name, active, caller);
    if (!info.ok()) {
      return LosantErrorFromStatus(req, info.status());
    }
    return TokenReply(req, 200, TokenJson(*info), info->id);
  });

  router.Add(http::verb::delete_, item, [&s](const Request& req, RequestContext& ctx) {
    Authorized a = Authorize(s, req, ctx, "accessTokens.delete");
    if (a.error) {
      return std::move(*a.error);
    }
    const std::string& id = ctx.params["accessTokenId"];
    if (!IsTokenId(id)) {
      return LosantError(req, 400, "Validation", "accessTokenId: must be 24 hexadecimal characters");
    }
    Status st = s.access_tokens.Delete(a.caller->account_id, LowerHex(id));
    if (!st.ok()) {
      return LosantErrorFromStatus(req, st);
    }
    Response res = JsonResponse(req, 200, R"({"success":true})", "application/json");
    AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
    AddLink(res, {.href = std::string(kCollectionPath), .rel = "up", .title = "account-accessTokens"});
    return res;
  });
}

// --- e-mail style (pkmnapi) ------------------------------------------------------------------

Response PkmnError(const Request& req, unsigned status, std::string_view id, std::string_view message) {
  json body = {{"data", {{"id", std::string(id)},
                         {"type", "errors"},
                         {"attributes", {{"message", std::string(message)}}}}}};
  Response res = JsonResponse(req, status, body.dump(-1, ' ', false, json::error_handler_t::replace),
                              "application/json");
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  return res;
}

Response TooMany(const Request& req, int64_t wait) {
  wait = std::max<int64_t>(1, wait);
  Response res = PkmnError(req, 429, "error_too_many_requests",
                           "Too many requests. Please try again in " + std::to_string(wait) + " seconds.");
  res.set(http::field::retry_after, std::to_string(wait));
  return res;
}

Response PkmnErrorFromStatus(const Request& req, const Status& st) {
  switch (st.code()) {
    case Code::kInvalidArgument: return PkmnError(req, 400, "error_access_tokens_invalid", st.message());
    case Code::kUnavailable:
      return PkmnError(req, 503, "error_access_tokens_email", "The service cannot send mail now; try again later");
    default: return PkmnError(req, 500, "error_internal_server", "An unknown error has occurred");
  }
}

// The checks every e-mail endpoint makes first; the e-mail address (wiped by the caller) or the
// error reply.
struct EmailRequest {
  std::optional<json> doc;
  std::optional<Response> error;
};

EmailRequest ReadEmailRequest(const Request& req, const Services& s, std::string_view schema_path) {
  EmailRequest out;
  if (!req[http::field::authorization].empty()) {
    out.error = PkmnError(req, 403, "error_access_tokens_forbidden", "Authorization header must not be set");
    return out;
  }
  Body b = ReadBody(req, s, schema_path);
  if (!b.doc) {
    out.error = PkmnError(req, b.status, "error_access_tokens_invalid", b.message);
    return out;
  }
  if ((*b.doc)["data"]["attributes"]["email_address"].get_ref<const std::string&>().size() > 254) {
    WipeJson(*b.doc);
    out.error = PkmnError(req, 400, "error_access_tokens_invalid",
                          "/data/attributes/email_address: longer than 254 characters");
    return out;
  }
  out.doc = std::move(b.doc);
  return out;
}

// pkmnapi answers `Location: {API_DOMAIN}/v1/access_tokens`: absolute when public_url is set.
Response Created(const Request& req, const Services& s) {
  Response res = JsonResponse(req, 201, "{}", "application/json");
  res.set(http::field::location, s.public_url + std::string(kEmailPath));
  AddStandardLinks(res, std::string(kEmailPath));
  return res;
}

void RegisterEmailRoutes(Router& router, const Services& s) {
  auto issue = [&s](bool deletion) {
    return [&s, deletion](const Request& req, RequestContext& ctx) {
      EmailRequest r = ReadEmailRequest(req, s, "v1/access-tokens-request.json");
      if (r.error) {
        return std::move(*r.error);
      }
      std::string email = (*r.doc)["data"]["attributes"]["email_address"];
      WipeJson(*r.doc);
      if (int64_t wait = s.access_tokens.EmailRetryAfter(email, ctx.peer); wait > 0) {
        OPENSSL_cleanse(email.data(), email.size());
        return TooMany(req, wait);
      }
      Status st = deletion ? s.access_tokens.EmailDeletionCode(email, ctx.peer)
                           : s.access_tokens.EmailToken(email, ctx.peer);
      const int64_t wait = st.code() == Code::kResourceExhausted
                               ? s.access_tokens.EmailRetryAfter(email, ctx.peer)
                               : 0;
      OPENSSL_cleanse(email.data(), email.size());
      if (st.code() == Code::kResourceExhausted) {
        return TooMany(req, wait);
      }
      if (!st.ok()) {
        return PkmnErrorFromStatus(req, st);
      }
      return Created(req, s);
    };
  };
  router.Add(http::verb::post, std::string(kEmailPath), issue(false));
  router.Add(http::verb::post, std::string(kEmailPath) + "/delete", issue(true));

  router.Add(http::verb::delete_, std::string(kEmailPath), [&s](const Request& req, RequestContext& ctx) {
    EmailRequest r = ReadEmailRequest(req, s, "v1/access-tokens-delete-request.json");
    if (r.error) {
      return std::move(*r.error);
    }
    std::string email = (*r.doc)["data"]["attributes"]["email_address"];
    std::string code = (*r.doc)["data"]["attributes"]["code"];
    WipeJson(*r.doc);
    Status st = s.access_tokens.DeleteEmailToken(email, code, ctx.peer);
    OPENSSL_cleanse(email.data(), email.size());
    OPENSSL_cleanse(code.data(), code.size());
    if (st.code() == Code::kResourceExhausted) {
      return TooMany(req, 60);
    }
    if (!st.ok()) {
      return PkmnErrorFromStatus(req, st);
    }
    Response res{http::status::no_content, req.version()};
    AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
    return res;
  });
}

}  // namespace

void RegisterAccessTokenRoutes(Router& router, const Services& s) {
  RegisterCollectionRoutes(router, s);
  RegisterEmailRoutes(router, s);
}

}  // namespace otd::api
