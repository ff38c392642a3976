#include "api/routes.h"

namespace otd::api {

std::unique_ptr<Router> BuildApiRouter(const Services& services) {
  auto router = std::make_unique<Router>(&services);
  auto add = [&router](std::vector<RouteSpec> routes) {
    for (RouteSpec& r : routes) {
      router->Add(std::move(r));
    }
  };
  add(DiscoveryRoutes(services, *router));
  add(RegistrationRoutes(services));
  add(AccountRoutes(services, *router));
  add(AccessCodeRoutes(services));
  add(TokenRoutes(services));
  add(AccessTokenRoutes(services));
  add(EmailTokenRoutes(services));
  if (services.console_enabled) {
    add(ConsoleRoutes(services));
  }
  return router;
}

}  // namespace otd::api
