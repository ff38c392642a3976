#pragma once
// The audit trail's hook into the API (issue 8): one table says which routes are security events;
// WrapAuditedRoutes() wraps their handlers so that each answer is recorded in the audit log with
// the route's event name, the outcome, the status and the keyed hashes of the ids in the path (or
// of the id a creation returned in Location). Detokenize fails closed: its answer leaves only
// after its audit entry is durable; if the entry cannot be written the client gets 503 and the
// token data is wiped from the answer.

#include <string_view>

#include "api/router.h"
#include "service/audit.h"

namespace otd::api {

struct AuditedRoute {
  http::verb method;
  std::string_view pattern;
  std::string_view event;
  bool fail_closed = false;  // answer only after the entry is durable (detokenize)
};

// The routes that are audited (see docs/api-notes.md "Audit trail").
std::span<const AuditedRoute> AuditedRoutes();

// "ok" (2xx/3xx), "denied" (401/403), "not_found" (404), "rate_limited" (429), "rejected"
// (other 4xx), "failed" (5xx).
std::string_view AuditOutcome(unsigned status);

void WrapAuditedRoutes(Router& router, service::AuditLog& audit);

}  // namespace otd::api
