#pragma once
// The admin-only metrics listeners (config section `metrics`): `GET /metrics` answers the
// registry in the Prometheus text exposition format, version 0.0.4. Nothing else is served there
// (the router answers 404 for any other path, 405 for other methods on /metrics), and the public
// listeners never serve /metrics: the daemon registers these routes only on the metrics routers.
//
// Two listeners may serve them: the Unix socket (metrics.unix; its file mode is the access
// control) and, optionally, plain HTTP over TCP (metrics.tcp; loopback by default). The TCP one
// may require a bearer token (metrics.tcp.bearer_token_file): a scrape without
// `Authorization: Bearer <token>`, with another token or with several Authorization fields is
// answered 401 with `WWW-Authenticate: Bearer realm="opentokend-metrics"` and no metrics. The
// comparison is constant-time (the length aside).

#include <optional>
#include <string>
#include <string_view>

#include "api/router.h"
#include "common/metrics.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace otd::api {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// `registry` must outlive the router. With `bearer_token` (non-empty), every scrape must carry it.
void RegisterMetricsRoutes(Router& router, metrics::Registry& registry,
                           std::optional<SecretBytes> bearer_token = std::nullopt);

// Reads a bearer token file: the first line, without the line end and surrounding blanks, at
// least 16 and at most 4096 bytes of visible ASCII. The file must be a regular file that neither
// group nor others may read or write (mode 0600 or 0400). Errors (kInvalidArgument) name
// `key` and say what is wrong, never the token.
Result<SecretBytes> LoadBearerTokenFile(const std::string& path, std::string_view key);

}  // namespace otd::api
