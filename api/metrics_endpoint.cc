#include "api/metrics_endpoint.h"

#include <string>

namespace otd::api {

void RegisterMetricsRoutes(Router& router, metrics::Registry& registry) {
  router.Add(http::verb::get, "/metrics", [&registry](const Request& req, RequestContext&) {
    Response res{http::status::ok, req.version()};
    res.set(http::field::content_type, kMetricsContentType);
    res.body() = registry.Render();
    res.prepare_payload();
    return res;
  });
}

}  // namespace otd::api
