// Self-discovery (doc/api/self-discovery.md, links.md), health (health-check.md), the served
// schemas, the OpenAPI description (issue 17), and how to sign a request.

#include <nlohmann/json.hpp>

#include "api/errors.h"
#include "api/links.h"
#include "api/ot1.h"
#include "api/routes.h"
#include "api/schemas.h"

namespace otd::api {

namespace {

Reply Discovery(const Call& call, const Router& table) {
  Response res{http::status::no_content, call.req.version()};
  AddStandardLinks(res, "/");
  for (const Link& link : table.AdvertisedLinks(Advertised::Where::kDiscovery)) {
    AddLink(res, link);
  }
  return res;
}

Reply HealthCheck(const Call& call) {
  service::VaultHealth h = call.s().vault.keys().Health();
  if (!h.ok()) {
    Response res = call.Error(503, "service-unavailable", "unhealthy");
    res.set(http::field::retry_after, "5");
    AddLink(res, {.href = "/healthCheck", .rel = "self"});
    return res;
  }
  Response res = JsonResponse(call.req, 200, R"({"status":"healthy"})", "application/json");
  AddStandardLinks(res, "/healthCheck");
  return res;
}

Reply Schema(const Call& call) {
  const std::string& path = call.param("**");
  const SchemaFile* f = FindSchema(path);
  if (f == nullptr) {
    return call.Error(404, "not-found", "not found");
  }
  Response res = JsonResponse(call.req, 200, std::string(f->content));
  AddStandardLinks(res, "/schema/" + path);
  return res;
}

// schema/openapi.json: every route of the table (api/routes_test.cc checks both ways).
Reply OpenApi(const Call& call) {
  Response res = JsonResponse(call.req, 200, std::string(OpenApiDocument()),
                              "application/vnd.oai.openapi+json;version=3.1");
  AddStandardLinks(res, std::string(kOpenApiPath));
  return res;
}

Reply SignatureInformation(const Call& call) {
  const Services& s = call.s();
  const nlohmann::json body = {
      {"scheme", std::string(ot1::kScheme)},
      {"authorization", std::string(ot1::kScheme) +
                            "; access-code=<code>; signed-headers=host content-type "
                            "x-opentoken-date; signature=<64 lower-case hex digits>"},
      {"signature", "hex(HMAC-SHA256(secret, canonical request))"},
      {"canonicalRequest",
       "METHOD\\nPATH\\nQUERY\\n<name>:<value>\\n (one line per signed header, in the order of "
       "signed-headers; names lower-case, values trimmed, host lower-case)\\n\\nBODY"},
      {"requiredSignedHeaders", {"host", "content-type", "x-opentoken-date"}},
      {"dateHeader", "X-OpenToken-Date"},
      {"dateFormat",
       "RFC 3339 date-time: yyyy-mm-ddThh:mm:ss[.fraction] then Z or +hh:mm/-hh:mm (e.g. "
       "2026-12-06T08:00:00Z, or JavaScript's toISOString() 2026-12-06T08:00:00.123Z)"},
      {"datePastSeconds", s.signature_past_seconds},
      {"dateFutureSeconds", s.signature_future_seconds},
      {"serverTime", IsoUtc(s.clock.NowSeconds(), false)},
      {"documentation", "doc/api/signed-requests.md of the OpenToken documents"}};
  Response res = JsonResponse(call.req, 200, body.dump(), "application/json");
  AddStandardLinks(res, std::string(kSignatureInformationPath));
  return res;
}

}  // namespace

std::vector<RouteSpec> DiscoveryRoutes(const Services&, const Router& table) {
  const AuthSpec anyone{.anonymous = true};
  std::vector<RouteSpec> r;
  r.push_back({.method = http::verb::get,
               .pattern = "/",
               .auth = anyone,
               .audit = AuditSpec::None(),
               .handler = [&table](Call& c) { return Discovery(c, table); }});
  r.push_back(
      {.method = http::verb::get,
       .pattern = "/healthCheck",
       .auth = anyone,
       .audit = AuditSpec::None(),
       .links = {{.link = {.href = "/healthCheck", .rel = "service", .title = "health-check"}}},
       .handler = HealthCheck});
  r.push_back({.method = http::verb::get,
               .pattern = "/schema/**",
               .auth = anyone,
               .audit = AuditSpec::None(),
               .handler = Schema});
  r.push_back({.method = http::verb::get,
               .pattern = std::string(kOpenApiPath),
               .auth = anyone,
               .audit = AuditSpec::None(),
               .links = {{.link = {.href = std::string(kOpenApiPath),
                                   .rel = "service-desc",
                                   .title = "openapi"}}},
               .handler = OpenApi});
  r.push_back({.method = http::verb::get,
               .pattern = std::string(kSignatureInformationPath),
               .auth = anyone,
               .audit = AuditSpec::None(),
               .handler = SignatureInformation});
  return r;
}

}  // namespace otd::api
