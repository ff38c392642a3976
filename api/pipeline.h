#pragma once
// The one request pipeline (issue 15). For a matched route (api/route.h):
//
//   1. query:       only the declared parameters, each once (400)
//   2. credentials: what AuthSpec accepts (api/auth.h: 400/401/403)
//   3. body:        Content-Type, size, strict JSON, schema, no unknown fields (415/413/400)
//   4. handler:     a Reply (answer, the id acted on, maybe a durable write)
//   5. durable write, audit, answer:
//        - a write (tokenize's commit) runs on the store's writer; the answer leaves when it is
//          durable, or becomes the dialect's error for the failed Status;
//        - an audited route records every answer it gives, from any step, with the status sent;
//          a fail-closed route (detokenize) sends a 200 only once its audit line is durable
//          (503 and the body wiped when it cannot be written).
//      Steps that wait (the write, a fail-closed audit line) are handed to the server as
//      RequestContext::deferred: no worker waits for the disk, and the identifiers are hashed
//      for the audit line on the worker, so io threads never call the token.
//
// Errors at every step are answered in the route's dialect. Thread safety: Run is const and
// reentrant; the services are thread safe.

#include <string_view>

#include "api/http.h"
#include "api/route.h"

namespace otd::api {

struct Services;

// "ok" (2xx/3xx), "denied" (401/403), "not_found" (404), "rate_limited" (429), "rejected"
// (other 4xx), "failed" (5xx).
std::string_view AuditOutcome(unsigned status);

class Pipeline {
 public:
  // `services` null: only routes that need no service (anonymous, not audited; the metrics
  // listener) may run.
  explicit Pipeline(const Services* services) : services_(services) {}
  Response Run(const RouteSpec& route, const Request& req, RequestContext& ctx) const;

 private:
  Reply Admit(const RouteSpec& route, const Request& req, RequestContext& ctx) const;
  Response Finish(const RouteSpec& route, const Request& req, RequestContext& ctx,
                  Reply reply) const;
  const Services* services_;
};

}  // namespace otd::api
