#include "api/status_endpoint.h"

#include <utility>

namespace otd::api {

void RegisterStatusRoute(Router& router, service::KeyHierarchy& keys, const Clock& clock,
                         StatusFacts facts) {
  router.Add({.method = http::verb::get,
              .pattern = "/status",
              .auth = {.anonymous = true},  // the socket's file mode is the access control
              .audit = AuditSpec::None(),
              .handler = [&keys, &clock, facts = std::move(facts)](Call& call) -> Reply {
                const service::VaultHealth h = keys.Health();
                nlohmann::json body = {
                    {"status", h.ok() ? "healthy" : "unhealthy"},
                    {"version", facts.version},
                    {"git", facts.git},
                    {"started", facts.started},
                    {"uptime_seconds", clock.NowSeconds() - facts.started},
                    {"node_id", facts.node_id.empty() ? nlohmann::json(nullptr)
                                                      : nlohmann::json(facts.node_id)},
                    {"storage_backend", facts.storage_backend},
                    {"checks", {{"token", h.token_ok}, {"store", h.store_ok}, {"keys", h.keys_ok}}},
                    {"listeners", facts.listeners}};
                if (!h.ok()) {
                  body["detail"] = h.detail;
                }
                if (h.token_ok && h.store_ok) {
                  if (auto v = keys.CurrentVersions(); v.ok()) {
                    body["key_versions"] = {{"kek", v->kek}, {"index", v->index}};
                  }
                }
                Response res{h.ok() ? http::status::ok : http::status::service_unavailable,
                             call.req.version()};
                res.set(http::field::content_type, "application/json");
                res.set(http::field::cache_control, "no-store");
                res.body() = body.dump() + "\n";
                res.prepare_payload();
                return res;
              }});
}

}  // namespace otd::api
