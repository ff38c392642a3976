#pragma once
// One route of the API, declared once (issue 15): its method and pattern, the error dialect of
// its surface, the credentials it accepts, its query parameters and body, its audit decision, the
// links that advertise it, and its handler. The pipeline (api/pipeline.h) runs every route the
// same way:
//
//   query → credentials → body (schema) → handler → durable write → audit → answer
//
// so a handler starts with a known caller and a validated body, and returns a Reply: the answer,
// the id of what it acted on (for the audit line), and optionally a durable write (a store
// commit) that must finish before the answer leaves. Adding an authenticated route is one
// RouteSpec in the resource's *_routes.cc, its handler and, for a JSON body, its schema in
// schema/ (the discovery links, the audit trail and the route list are derived from the table).

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/errors.h"
#include "api/http.h"
#include "api/links.h"
#include "common/status.h"
#include "service/access_tokens.h"
#include "service/vault.h"

namespace otd::api {

struct Services;

// Which credentials a route accepts. The pipeline resolves them before the handler runs and
// answers 400/401/403 in the route's dialect when they are missing or wrong.
struct AuthSpec {
  // Non-empty: the `login` cookie (full rights on its account) or `Authorization: Bearer otk_...`
  // holding this scope. With `signature`, only a bearer (a signed request takes the other path).
  std::string_view scope;
  // The credential must be of the account in the path ({id}); false: the caller's own account
  // (/access-tokens).
  bool account_in_path = true;
  // An OT1-HMAC-SHA256-HEX signature by an access code of the account in the path.
  bool signature = false;
  // Also without any credential: the handler decides what an anonymous caller may see (a public
  // token, a registration by its id, the login challenge).
  bool anonymous = false;
  // Any Authorization header is refused with 403 (the e-mail API takes no credentials).
  bool refuse_authorization = false;
  // With `signature`: read the signing access code's record together with the account's data key
  // and, when `read_ahead_token` names a path parameter, that token's record (one store round
  // trip: service::Tokens::SignedReadAhead); the handler finds them in Call::read_ahead.
  bool read_ahead = false;
  std::string_view read_ahead_token;
};

// The caller as the pipeline resolved it.
struct Caller {
  std::string account_id;
  std::optional<service::AccessTokenInfo> bearer;  // set: an access token; else a login session
  bool signed_request = false;                     // an OT1 signature (no session, no bearer)
  bool Allows(std::string_view scope) const {
    return !bearer || service::ScopeAllows(bearer->scope, scope);
  }
  // The bearer making a call, or nullptr for a login session (service::AccessTokens' `creator`).
  const service::AccessTokenInfo* BearerOrNull() const { return bearer ? &*bearer : nullptr; }
};

enum class BodyKind {
  kIgnored,       // not read (GET, DELETE, POST without a body)
  kJson,          // application/json, strict, valid against `schema`, no unknown fields
  kOptionalJson,  // as kJson when a body or a Content-Type is sent, else none
  kRaw,           // any bytes, any Content-Type (token payloads), up to limits.max_body_bytes
};

struct BodySpec {
  BodyKind kind = BodyKind::kIgnored;
  std::string_view schema;  // path under /schema/ (kJson, kOptionalJson)
};

// Every route says whether it is a security event (a test checks that none is left undecided).
struct AuditSpec {
  enum class Kind { kUndecided, kNone, kEvent };
  Kind kind = Kind::kUndecided;
  std::string_view event;         // kEvent: the audit line's event name
  std::string_view object_param;  // the path parameter naming what it acts on ("" = the Reply's)
  bool fail_closed = false;       // a 200 leaves only after its audit line is durable
  static AuditSpec None() { return {.kind = Kind::kNone}; }
  static AuditSpec Event(std::string_view event, std::string_view object_param = {}) {
    return {.kind = Kind::kEvent, .event = event, .object_param = object_param};
  }
  static AuditSpec FailClosed(std::string_view event, std::string_view object_param) {
    return {
        .kind = Kind::kEvent, .event = event, .object_param = object_param, .fail_closed = true};
  }
};

// A link that advertises the route: on `GET /` (self-discovery) or on an account resource
// (`GET /account/{id}`, where "{id}" in href is the account).
struct Advertised {
  enum class Where { kDiscovery, kAccount };
  Where where = Where::kDiscovery;
  Link link;
};

// A write that must be durable before the answer leaves (tokenize: its store commit). `start`
// runs on the worker right after the handler; it hands the write to a writer thread and returns,
// and `done` is called once, from any thread, with the write's result. On failure the client
// gets the dialect's error for that Status instead of the prepared answer.
struct DurableWrite {
  std::function<void(std::function<void(Status)> done)> start;
};

struct Reply {
  Reply(Response r) : response(std::move(r)) {}  // NOLINT: a plain answer is a Reply
  Response response;
  std::string object;                 // what the request acted on, when no path parameter says
  std::optional<DurableWrite> write;  // see DurableWrite
  // false: the handler did not do what the route's audit event names (the confirmation link
  // handing a browser over to the console): no audit line.
  bool audited = true;
};

// What a handler gets: the request, the caller, the validated body, the parsed query, and the
// error helpers of the route's dialect.
struct Call {
  const Request& req;
  RequestContext& ctx;
  const Services* services;  // null only on the metrics listener
  Dialect dialect;
  std::optional<Caller> caller;
  std::optional<nlohmann::json> body;        // kJson/kOptionalJson: the validated document
  std::map<std::string, std::string> query;  // only the declared names, each at most once
  std::optional<service::Vault::ReadAhead> read_ahead;  // AuthSpec::read_ahead_token, when signed

  const Services& s() const;  // the services (a broken invariant where there are none)
  const std::string& param(const std::string& name) const { return ctx.params.at(name); }
  // An error answer in the route's dialect (`code`: the vnd.error code, Losant type or pkmnapi
  // id), and the same for a Status (internal errors lose their message).
  Response Error(unsigned status, std::string_view code, std::string_view message) const;
  Response Error(const Status& st) const;
};

using RouteHandler = std::function<Reply(Call&)>;

struct RouteSpec {
  http::verb method = http::verb::get;
  std::string pattern;
  Dialect dialect = Dialect::kOpenToken;
  AuthSpec auth;
  // Declared query parameters; nullopt: the query is not looked at. A name not declared, or one
  // given twice, is 400.
  std::optional<std::vector<std::string_view>> query;
  BodySpec body;
  AuditSpec audit;
  std::vector<Advertised> links;
  RouteHandler handler;
};

}  // namespace otd::api
