#pragma once
// GET /status on the admin-only metrics listener (issue 18 part 3): what `opentoken-admin status`
// asks the running daemon, without the PIN (the socket's file mode is the access control, as for
// /metrics). Never on the public listeners: the daemon registers it on the metrics router only.
//
// Answer: application/json, 200 when healthy, 503 when not (same body):
//   {"status": "healthy"|"unhealthy", "version", "git", "started" (Unix s), "uptime_seconds",
//    "node_id" (string or null), "storage_backend",
//    "checks": {"token": bool, "store": bool, "keys": bool}, "detail" (only when unhealthy,
//    operator-safe), "key_versions": {"kek", "index"} (when readable),
//    "listeners": [{"transport": "unix", "path", "purpose"?} | {"transport": "tls", "address",
//    "port"}]}
// The fields are stable (new ones may be added); docs: README, Operations, status.
//
// Thread safety: the handler reads `keys` (thread-safe) and immutable facts.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "common/clock.h"
#include "service/key_hierarchy.h"

namespace otd::api {

// What the daemon knows about itself and does not change while it runs.
struct StatusFacts {
  std::string version;
  std::string git;
  std::string node_id;  // empty: none
  std::string storage_backend;
  int64_t started = 0;  // Unix seconds
  nlohmann::json listeners = nlohmann::json::array();
};

// `keys` and `clock` must outlive the router.
void RegisterStatusRoute(Router& router, service::KeyHierarchy& keys, const Clock& clock,
                         StatusFacts facts);

}  // namespace otd::api
