#include "api/metrics_endpoint.h"

#include <string>

namespace otd::api {

void RegisterMetricsRoutes(Router& router, metrics::Registry& registry) {
  router.Add({.method = http::verb::get,
              .pattern = "/metrics",
              .auth = {.anonymous = true},  // the socket's file mode is the access control
              .audit = AuditSpec::None(),
              .handler = [&registry](Call& call) -> Reply {
                Response res{http::status::ok, call.req.version()};
                res.set(http::field::content_type, kMetricsContentType);
                res.body() = registry.Render();
                res.prepare_payload();
                return res;
              }});
}

}  // namespace otd::api
