#pragma once
// Registers every endpoint of the API on a router. Handlers translate HTTP to service calls; the
// services own the rules.

#include "api/router.h"
#include "service/vault.h"

namespace otd::api {

struct Services {
  service::Vault& vault;
};

void RegisterRoutes(Router& router, Services services);

}  // namespace otd::api
