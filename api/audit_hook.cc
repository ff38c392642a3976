#include "api/audit_hook.h"

#include <openssl/crypto.h>

#include <array>
#include <functional>
#include <memory>
#include <string>

#include "api/errors.h"

namespace otd::api {

namespace {

constexpr std::array kRoutes = {
    AuditedRoute{http::verb::post, "/registration", "registration_started"},
    AuditedRoute{http::verb::post, "/registration/{id}", "registration_secured"},
    AuditedRoute{http::verb::get, "/registration/{id}/confirm/{code}", "registration_confirmed"},
    AuditedRoute{http::verb::post, "/account/{id}/login", "login"},
    AuditedRoute{http::verb::get, "/account/{id}/logout", "logout"},
    AuditedRoute{http::verb::post, "/account/{id}/logout", "logout"},
    AuditedRoute{http::verb::post, "/account/{id}/accessCode", "access_code_created"},
    AuditedRoute{http::verb::delete_, "/account/{id}/accessCode/{code}", "access_code_revoked"},
    AuditedRoute{http::verb::post, "/account/{id}/token", "tokenize"},
    AuditedRoute{http::verb::get, "/account/{id}/token/{tokenId}", "detokenize", true},
    AuditedRoute{http::verb::delete_, "/account/{id}/token/{tokenId}", "token_deleted"},
    AuditedRoute{http::verb::post, "/access-tokens", "access_token_created"},
    AuditedRoute{http::verb::patch, "/access-tokens/{accessTokenId}", "access_token_updated"},
    AuditedRoute{http::verb::delete_, "/access-tokens/{accessTokenId}", "access_token_revoked"},
    AuditedRoute{http::verb::post, "/v1/access_tokens", "access_token_mailed"},
    AuditedRoute{http::verb::post, "/v1/access_tokens/delete", "access_token_deletion_code_mailed"},
    AuditedRoute{http::verb::delete_, "/v1/access_tokens", "access_token_mail_revoked"},
};

std::string Param(const RequestContext& ctx, const char* name) {
  auto it = ctx.params.find(name);
  return it == ctx.params.end() ? std::string() : it->second;
}

// The id of what the request acted on: the last path parameter, or for a creation the last
// segment of the Location it answered with.
std::string ObjectId(const RequestContext& ctx, const Response& res) {
  for (const char* name : {"tokenId", "code", "accessTokenId"}) {
    if (auto v = Param(ctx, name); !v.empty()) {
      return v;
    }
  }
  if (ctx.route.rfind("/registration/{id}", 0) == 0) {
    return Param(ctx, "id");
  }
  auto location = res.find(http::field::location);
  if (location != res.end()) {
    std::string_view l = location->value();
    return std::string(l.substr(l.rfind('/') + 1));
  }
  return {};
}

// An audit event that owns its text (service::AuditEvent only views it), so that it can wait for
// a deferred answer.
struct OwnedEvent {
  std::string_view event;  // from the static route table
  std::string outcome;
  int status = 0;
  std::string account;
  std::string object;
  std::string detail;
  service::AuditEvent view() const {
    return {.event = event, .outcome = outcome, .status = status, .account = account,
            .object = object, .detail = detail};
  }
};

OwnedEvent EventFor(const AuditedRoute& route, const RequestContext& ctx, const Response& res) {
  const unsigned status = res.result_int();
  // Accounts appear under /account/{id}; registrations are not accounts yet.
  return {.event = route.event,
          .outcome = std::string(AuditOutcome(status)),
          .status = static_cast<int>(status),
          .account = ctx.route.rfind("/account/{id}", 0) == 0 ? Param(ctx, "id") : std::string(),
          .object = ObjectId(ctx, res),
          .detail = "peer=" + ctx.peer + " transport=" + (ctx.transport == Transport::kUnix ? "unix" : "tls")};
}

}  // namespace

std::span<const AuditedRoute> AuditedRoutes() { return kRoutes; }

std::string_view AuditOutcome(unsigned status) {
  if (status < 400) return "ok";
  if (status == 401 || status == 403) return "denied";
  if (status == 404) return "not_found";
  if (status == 429) return "rate_limited";
  if (status < 500) return "rejected";
  return "failed";
}

void WrapAuditedRoutes(Router& router, service::AuditLog& audit) {
  router.WrapHandlers([&audit](http::verb method, const std::string& pattern, Handler h) -> Handler {
    const AuditedRoute* route = nullptr;
    for (const auto& r : kRoutes) {
      if (r.method == method && r.pattern == pattern) {
        route = &r;
      }
    }
    if (route == nullptr) {
      return h;
    }
    return [&audit, route, h = std::move(h)](const Request& req, RequestContext& ctx) {
      Response res = h(req, ctx);
      if (ctx.deferred) {
        // The answer waits for a durable write (tokenize: the store commit): audit the answer
        // that is finally sent. Its identifiers are hashed here, on the worker: finish runs on
        // an io thread, which never calls the token.
        const OwnedEvent planned = EventFor(*route, ctx, res);
        auto ids = std::make_shared<Result<service::AuditIds>>(audit.HashIds(planned.account, planned.object));
        ctx.deferred->finish = [&audit, route, &ctx, ids, inner = std::move(ctx.deferred->finish)](
                                   Status s, Response prepared) {
          Response out = inner(std::move(s), std::move(prepared));
          const OwnedEvent e = EventFor(*route, ctx, out);
          Result<service::AuditIds> hashed = *ids;
          if (hashed.ok() && e.object.empty()) {
            hashed->object.clear();  // a failed creation names no object, as before
          }
          audit.RecordAsync(e.view(), hashed);
          return out;
        };
        return res;
      }
      auto event = std::make_shared<OwnedEvent>(EventFor(*route, ctx, res));
      if (route->fail_closed && res.result_int() == 200) {
        // Fail closed: the data never leaves without its durable audit entry. The worker does
        // not wait for the audit batch; the answer goes out when it is written.
        ctx.deferred = Deferred{
            .start = [&audit, event](std::function<void(Status)> done) {
              audit.RecordThen(event->view(), std::move(done));
            },
            .finish = [&req, &ctx](Status s, Response out) {
              if (s.ok()) {
                return out;
              }
              OPENSSL_cleanse(out.body().data(), out.body().size());
              return VndError(req, ctx, 503, "service-unavailable",
                              "the audit trail is unavailable; try again later");
            }};
        return res;
      }
      audit.RecordAsync(event->view());
      return res;
    };
  });
}

}  // namespace otd::api
