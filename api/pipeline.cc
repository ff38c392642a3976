#include "api/pipeline.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <memory>
#include <string>

#include "api/auth.h"
#include "api/errors.h"
#include "api/request_helpers.h"
#include "api/services.h"
#include "api/validation.h"
#include "common/check.h"

namespace otd::api {

namespace {

std::string_view BadRequestCode(Dialect d) {
  switch (d) {
    case Dialect::kAccessTokens: return "Validation";
    case Dialect::kEmail: return "error_access_tokens_invalid";
    case Dialect::kOpenToken: break;
  }
  return "bad-request";
}

// The code of a body refusal (415, 413, 400) in the dialect.
std::string_view BodyErrorCode(Dialect d, unsigned status) {
  if (d == Dialect::kOpenToken) {
    if (status == 415) {
      return "unsupported-media-type";
    }
    if (status == 413) {
      return "payload-too-large";
    }
  }
  return BadRequestCode(d);
}

// Parses `name=value&...`: only `allowed` names, each at most once.
std::optional<std::map<std::string, std::string>> ParseQuery(
    std::string_view q, const std::vector<std::string_view>& allowed) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string name(pair.substr(0, eq));
    std::string value(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end() || out.count(name) > 0) {
      return std::nullopt;
    }
    out[name] = std::move(value);
  }
  return out;
}

struct BodyError {
  unsigned status = 400;
  std::string message;  // never an input value
};

// Content-Type, size, strict JSON, schema, unknown members.
Result<nlohmann::json> ReadJson(const Request& req, const Services& s, std::string_view schema,
                                BodyError* error) {
  if (MediaType(req[http::field::content_type]) != "application/json") {
    *error = {415, "the request body must be application/json"};
    return InvalidArgument(error->message);
  }
  if (req.body().size() > s.limits.max_json_body_bytes) {
    *error = {413, "request body is too large"};
    return InvalidArgument(error->message);
  }
  JsonLimits jl;
  jl.max_depth = s.limits.max_json_depth;
  jl.max_string_bytes = s.limits.max_json_body_bytes;
  auto parsed = ParseAndValidate(req.body(), schema, s.schemas, jl);
  if (!parsed.ok()) {
    *error = {400, parsed.status().message()};
  }
  return parsed;
}

// The audit line of an answer: the route's event, the outcome of the status sent, the account
// in the path (registrations are not accounts yet), the object acted on. Owns its text, so that
// it can wait for a deferred answer.
struct OwnedEvent {
  std::string_view event;  // from the static route table
  std::string outcome;
  int status = 0;
  std::string account;
  std::string object;
  std::string detail;
  service::AuditEvent view() const {
    return {.event = event,
            .outcome = outcome,
            .status = status,
            .account = account,
            .object = object,
            .detail = detail};
  }
};

OwnedEvent EventFor(const RouteSpec& route, const RequestContext& ctx, const Response& res,
                    const std::string& object) {
  const unsigned status = res.result_int();
  std::string account;
  if (route.pattern.rfind("/account/{id}", 0) == 0) {
    account = ctx.params.at("id");
  }
  std::string obj = object;
  if (!route.audit.object_param.empty()) {
    auto it = ctx.params.find(std::string(route.audit.object_param));
    obj = it == ctx.params.end() ? std::string() : it->second;
  }
  return {.event = route.audit.event,
          .outcome = std::string(AuditOutcome(status)),
          .status = static_cast<int>(status),
          .account = std::move(account),
          .object = std::move(obj),
          .detail = "peer=" + ctx.peer + " transport=" + std::string(TransportName(ctx.transport)) +
                    (ctx.via.empty() ? "" : " via=" + ctx.via)};
}

}  // namespace

const Services& Call::s() const {
  OTD_CHECK(services != nullptr);
  return *services;
}

Response Call::Error(unsigned status, std::string_view code, std::string_view message) const {
  return DialectError(dialect, req, ctx, status, code, message);
}

Response Call::Error(const Status& st) const {
  return DialectErrorFromStatus(dialect, req, ctx, st);
}

std::string_view AuditOutcome(unsigned status) {
  if (status < 400) {
    return "ok";
  }
  if (status == 401 || status == 403) {
    return "denied";
  }
  if (status == 404) {
    return "not_found";
  }
  if (status == 429) {
    return "rate_limited";
  }
  if (status < 500) {
    return "rejected";
  }
  return "failed";
}

Reply Pipeline::Admit(const RouteSpec& route, const Request& req, RequestContext& ctx) const {
  Call call{.req = req, .ctx = ctx, .services = services_, .dialect = route.dialect};
  if (route.query) {
    auto q = ParseQuery(ctx.query, *route.query);
    if (!q) {
      return call.Error(400, BadRequestCode(route.dialect), "unknown or repeated query parameter");
    }
    call.query = std::move(*q);
  }
  if (services_ != nullptr) {
    Authenticated a = Authenticate(route.auth, route.dialect, *services_, req, ctx);
    if (a.error) {
      return std::move(*a.error);
    }
    call.caller = std::move(a.caller);
    call.read_ahead = std::move(a.read_ahead);
  } else {
    OTD_CHECK(route.auth.anonymous && route.auth.scope.empty() && !route.auth.signature);
  }
  const bool has_body = !req.body().empty() || !req[http::field::content_type].empty();
  if (route.body.kind == BodyKind::kJson ||
      (route.body.kind == BodyKind::kOptionalJson && has_body)) {
    BodyError error;
    auto doc = ReadJson(req, call.s(), route.body.schema, &error);
    if (!doc.ok()) {
      return call.Error(error.status, BodyErrorCode(route.dialect, error.status), error.message);
    }
    call.body = std::move(doc).value();
  }
  Reply reply = route.handler(call);
  if (call.body) {
    WipeJson(*call.body);  // the handler copied what it needed (secrets into SecretBytes)
  }
  return reply;
}

Response Pipeline::Finish(const RouteSpec& route, const Request& req, RequestContext& ctx,
                          Reply reply) const {
  service::AuditLog* audit = services_ != nullptr ? services_->audit : nullptr;
  const bool audited =
      audit != nullptr && route.audit.kind == AuditSpec::Kind::kEvent && reply.audited;
  const Dialect dialect = route.dialect;
  if (reply.write) {
    // The answer waits for the write. Its audit line is recorded with the status finally sent;
    // the identifiers are hashed here, on the worker (finish runs on an io thread).
    OTD_CHECK(!route.audit.fail_closed);
    std::shared_ptr<Result<service::AuditIds>> ids;
    std::string object = reply.object;
    if (audited) {
      const OwnedEvent planned = EventFor(route, ctx, reply.response, object);
      ids = std::make_shared<Result<service::AuditIds>>(
          audit->HashIds(planned.account, planned.object));
    }
    ctx.deferred = Deferred{.start = std::move(reply.write->start),
                            .finish = [audit, ids, object, dialect, &route, &req, &ctx](
                                          const Status& s, Response prepared) {
                              Response out = s.ok() ? std::move(prepared)
                                                    : DialectErrorFromStatus(dialect, req, ctx, s);
                              if (ids) {
                                // A failed creation names no object.
                                const OwnedEvent e =
                                    EventFor(route, ctx, out, s.ok() ? object : std::string());
                                Result<service::AuditIds> hashed = *ids;
                                if (hashed.ok() && e.object.empty()) {
                                  hashed->object.clear();
                                }
                                audit->RecordAsync(e.view(), hashed);
                              }
                              return out;
                            }};
    return std::move(reply.response);
  }
  if (!audited) {
    return std::move(reply.response);
  }
  auto event = std::make_shared<OwnedEvent>(EventFor(route, ctx, reply.response, reply.object));
  if (route.audit.fail_closed && reply.response.result_int() == 200) {
    // Fail closed: the data never leaves without its durable audit line. The worker does not
    // wait for the audit batch; the answer goes out when it is written.
    ctx.deferred =
        Deferred{.start =
                     [audit, event](std::function<void(Status)> done) {
                       audit->RecordThen(event->view(), std::move(done));
                     },
                 .finish =
                     [dialect, &req, &ctx](const Status& s, Response out) {
                       if (s.ok()) {
                         return out;
                       }
                       OPENSSL_cleanse(out.body().data(), out.body().size());
                       return DialectError(dialect, req, ctx, 503, "service-unavailable",
                                           "the audit trail is unavailable; try again later");
                     }};
    return std::move(reply.response);
  }
  audit->RecordAsync(event->view());
  return std::move(reply.response);
}

Response Pipeline::Run(const RouteSpec& route, const Request& req, RequestContext& ctx) const {
  return Finish(route, req, ctx, Admit(route, req, ctx));
}

}  // namespace otd::api
