#include "api/routes.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "api/audit_hook.h"
#include "api/browser_policy.h"
#include "api/errors.h"
#include "api/links.h"
#include "api/ot1.h"
#include "api/request_helpers.h"
#include "api/schemas.h"

namespace otd::api {

namespace {

Response Discovery(const Request& req, RequestContext&) {
  Response res{http::status::no_content, req.version()};
  AddStandardLinks(res, "/");
  for (const auto& link : DiscoveryLinks()) {
    AddLink(res, link);
  }
  return res;
}

Response HealthCheck(service::Vault& vault, const Request& req, RequestContext& ctx) {
  service::VaultHealth h = vault.Health();
  if (!h.ok()) {
    Response res = VndError(req, ctx, 503, "service-unavailable", "unhealthy");
    res.set(http::field::retry_after, "5");
    AddLink(res, {.href = "/healthCheck", .rel = "self"});
    return res;
  }
  Response res = JsonResponse(req, 200, R"({"status":"healthy"})", "application/json");
  AddStandardLinks(res, "/healthCheck");
  return res;
}

Response Schema(const Request& req, RequestContext& ctx) {
  const std::string& path = ctx.params["**"];
  const SchemaFile* f = FindSchema(path);
  if (f == nullptr) {
    return VndError(req, ctx, 404, "not-found", "not found");
  }
  Response res = JsonResponse(req, 200, std::string(f->content));
  AddStandardLinks(res, "/schema/" + path);
  return res;
}

Response SignatureInformation(const Services& s, const Request& req) {
  const nlohmann::json body = {
      {"scheme", std::string(ot1::kScheme)},
      {"authorization", std::string(ot1::kScheme) +
                            "; access-code=<code>; signed-headers=host content-type "
                            "x-opentoken-date; signature=<64 lower-case hex digits>"},
      {"signature", "hex(HMAC-SHA256(secret, canonical request))"},
      {"canonicalRequest",
       "METHOD\nPATH\nQUERY\n<name>:<value>\n (one line per signed header, in the order of "
       "signed-headers; names lower-case, values trimmed, host lower-case)\n\nBODY"},
      {"requiredSignedHeaders", {"host", "content-type", "x-opentoken-date"}},
      {"dateHeader", "X-OpenToken-Date"},
      {"dateFormat", "yyyy-mm-ddThh:mm:ssZ (UTC)"},
      {"datePastSeconds", s.signature_past_seconds},
      {"dateFutureSeconds", s.signature_future_seconds},
      {"serverTime", IsoUtc(s.clock.NowSeconds(), false)},
      {"documentation", "doc/api/signed-requests.md of the OpenToken documents"}};
  Response res = JsonResponse(req, 200, body.dump(), "application/json");
  AddStandardLinks(res, std::string(kSignatureInformationPath));
  return res;
}

}  // namespace

bool HasBearer(const Request& req) {
  std::string_view v = req[http::field::authorization];
  if (v.size() < 7 || v[6] != ' ') {
    return false;
  }
  std::string scheme(v.substr(0, 6));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return scheme == "bearer";
}

Result<Caller> ResolveCaller(const Services& s, const Request& req) {
  size_t authorizations = 0;
  for (const auto& f : req) {
    if (f.name() == http::field::authorization) {
      ++authorizations;
    }
  }
  auto cookie = CookieValue(req, "login");
  if (authorizations > 1) {
    return Unauthenticated("send exactly one Authorization header");
  }
  if (authorizations == 1) {
    if (!HasBearer(req)) {
      return Unauthenticated("the Authorization scheme must be Bearer");
    }
    if (cookie) {
      return InvalidArgument("send either a Bearer token or the login cookie, not both");
    }
    std::string_view token = req[http::field::authorization].substr(7);
    OTD_ASSIGN_OR_RETURN(service::AccessTokenInfo info, s.access_tokens.Authenticate(token));
    Caller c{.account_id = info.account_id, .bearer = std::move(info)};
    return c;
  }
  if (!cookie || cookie->empty() || cookie->size() > 64) {
    return Unauthenticated("login required");
  }
  // A browser sends the cookie with requests other sites make it send: refuse those.
  if (auto refused = CrossSiteRefusal(req, s.public_url)) {
    return PermissionDenied(*refused);
  }
  auto session = s.accounts.GetSession(*cookie);
  if (!session.ok()) {
    return session.status().code() == Code::kNotFound ? Unauthenticated("login required")
                                                       : session.status();
  }
  return Caller{.account_id = session->account_id, .bearer = std::nullopt};
}

std::optional<Response> RequireScope(const Services& s, const Request& req, const RequestContext& ctx,
                                     std::string_view scope) {
  auto caller = ResolveCaller(s, req);
  if (!caller.ok()) {
    if (caller.status().code() == Code::kUnauthenticated) {
      Response res = VndError(req, ctx, 401, "unauthorized",
                              HasBearer(req) ? "invalid access token" : "login required");
      if (HasBearer(req)) {
        res.set(http::field::www_authenticate, R"(Bearer realm="opentokend", error="invalid_token")");
      }
      return res;
    }
    return VndErrorFromStatus(req, ctx, caller.status());
  }
  if (caller->account_id != ctx.params.at("id")) {
    return VndError(req, ctx, 403, "forbidden", "not allowed for this account");
  }
  if (!caller->Allows(scope)) {
    return VndError(req, ctx, 403, "forbidden", "the access token's scope does not allow this");
  }
  return std::nullopt;
}

std::vector<Link> AccountServiceLinks(const std::string& account_id) {
  const std::string base = "/account/" + account_id;
  return {
      {.href = base + "/accessCode",
       .rel = "service",
       .title = "account-accessCode",
       .profile = "/schema/account/access-code-request.json"},
      {.href = base + "/logout",
       .rel = "service",
       .title = "account-logout",
       .profile = "/schema/account/logout-request.json"},
      {.href = "/access-tokens",
       .rel = "service",
       .title = "account-accessTokens",
       .profile = "/schema/access-tokens/access-token-post.json"},
      {.href = base + "/token{?public}",
       .rel = "service",
       .title = "account-token-create",
       .profile = "/schema/account/token-create-request.json",
       .templated = true},
  };
}

void RegisterRoutes(Router& router, const Services& services) {
  router.Add(http::verb::get, "/", Discovery);
  router.Add(http::verb::get, "/healthCheck",
             [&vault = services.vault](const Request& req, RequestContext& ctx) {
               return HealthCheck(vault, req, ctx);
             });
  router.Add(http::verb::get, "/schema/**", Schema);
  router.Add(http::verb::get, std::string(kSignatureInformationPath),
             [&services](const Request& req, RequestContext&) {
               return SignatureInformation(services, req);
             });
  RegisterAccountRoutes(router, services);
  RegisterTokenRoutes(router, services);
  RegisterAccessTokenRoutes(router, services);
  if (services.audit != nullptr) {
    WrapAuditedRoutes(router, *services.audit);
  }
}

}  // namespace otd::api
