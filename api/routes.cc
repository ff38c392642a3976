#include "api/routes.h"

#include "api/errors.h"
#include "api/links.h"
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

void RegisterRoutes(Router& router, Services services) {
  router.Add(http::verb::get, "/", Discovery);
  router.Add(http::verb::get, "/healthCheck",
             [&vault = services.vault](const Request& req, RequestContext& ctx) {
               return HealthCheck(vault, req, ctx);
             });
  router.Add(http::verb::get, "/schema/**", Schema);
}

}  // namespace otd::api
