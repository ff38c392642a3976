#include "api/routes.h"

#include "api/errors.h"
#include "api/links.h"
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

}  // namespace

std::optional<Response> RequireLogin(const Services& s, const Request& req, const RequestContext& ctx) {
  auto cookie = CookieValue(req, "login");
  if (!cookie || cookie->empty() || cookie->size() > 64) {
    return VndError(req, ctx, 401, "unauthorized", "login required");
  }
  auto session = s.accounts.GetSession(*cookie);
  if (!session.ok()) {
    return session.status().code() == Code::kNotFound
               ? VndError(req, ctx, 401, "unauthorized", "login required")
               : VndErrorFromStatus(req, ctx, session.status());
  }
  if (session->account_id != ctx.params.at("id")) {
    return VndError(req, ctx, 403, "forbidden", "not allowed for this account");
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
  RegisterAccountRoutes(router, services);
  RegisterTokenRoutes(router, services);
}

}  // namespace otd::api
