#pragma once
// The API's route table (api/route.h), one file per resource:
//
//   discovery_routes.cc     GET /, /healthCheck, /schema/**, /openapi.json,
//                           /signature-information
//   registration_routes.cc  /registration...
//   account_routes.cc       /account/{id}, login, logout
//   access_code_routes.cc   /account/{id}/accessCode...
//   token_routes.cc         /account/{id}/token...
//   access_token_routes.cc  /access-tokens... (Losant surface)
//   email_token_routes.cc   /v1/access_tokens... (pkmnapi surface)
//   console_routes.cc       /console/... (the web console's static files; only when
//                           Services::console_enabled)
//
// Each returns its routes; BuildApiRouter adds them all. `table` is the router being built: a
// handler may read the finished table at request time (the discovery links).

#include <memory>
#include <string_view>
#include <vector>

#include "api/route.h"
#include "api/router.h"
#include "api/services.h"

namespace otd::api {

// How to sign a request (linked from every 401 of a signed route, rel="related",
// title="signature-information"): the canonical string, the date format and window, the
// server's clock.
inline constexpr std::string_view kSignatureInformationPath = "/signature-information";

// The OpenAPI 3.1 description of the API (schema/openapi.json), linked from GET / with
// rel="service-desc".
inline constexpr std::string_view kOpenApiPath = "/openapi.json";

// Where the web console is served (console_routes.cc), and its pages' own policy: everything from
// this origin only, no inline script or style, no plugins, never framed, forms post here only,
// and no string may become markup or script (Trusted Types: the console builds nodes, never HTML).
inline constexpr std::string_view kConsolePath = "/console/";
inline constexpr std::string_view kConsoleContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; require-trusted-types-for 'script'";

std::vector<RouteSpec> DiscoveryRoutes(const Services& s, const Router& table);
std::vector<RouteSpec> RegistrationRoutes(const Services& s);
std::vector<RouteSpec> AccountRoutes(const Services& s, const Router& table);
std::vector<RouteSpec> AccessCodeRoutes(const Services& s);
std::vector<RouteSpec> TokenRoutes(const Services& s);
std::vector<RouteSpec> AccessTokenRoutes(const Services& s);
std::vector<RouteSpec> EmailTokenRoutes(const Services& s);
std::vector<RouteSpec> ConsoleRoutes(const Services& s);

// Every route of the API. `services` must outlive the router.
std::unique_ptr<Router> BuildApiRouter(const Services& services);

}  // namespace otd::api
