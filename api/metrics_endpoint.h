#pragma once
// The admin-only metrics listener (config section `metrics`): `GET /metrics` answers the
// registry in the Prometheus text exposition format, version 0.0.4. Nothing else is served there
// (the router answers 404 for any other path, 405 for other methods on /metrics), and the public
// listeners never serve /metrics: the daemon registers these routes only on the metrics router.

#include <string_view>

#include "api/router.h"
#include "common/metrics.h"

namespace otd::api {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// `registry` must outlive the router.
void RegisterMetricsRoutes(Router& router, metrics::Registry& registry);

}  // namespace otd::api
