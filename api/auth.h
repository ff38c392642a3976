#pragma once
// Credentials, in one place (api/route.h AuthSpec says which a route accepts):
//
//  * the `login` cookie: a session, full rights on its account; refused for a state-changing
//    request that another site made the browser send (api/browser_policy.h);
//  * `Authorization: Bearer otk_...`: an access token, rights limited to its scope;
//  * `Authorization: OT1-HMAC-SHA256-HEX; ...`: a request signed with an access code pair
//    (doc/api/signed-requests.md), checked inside the token;
//  * none, for routes that also answer anonymous callers.
//
// Every failure is an answer in the route's dialect: 400 (two credentials), 401 (none, unknown,
// expired, wrong signature: one message per kind; a signed route's 401 says which check failed,
// issue 17, and its debug log line holds the SHA-256 of the canonical request on a signature
// mismatch), 403 (another
// account's, a scope missing, cross-site, or any Authorization on the e-mail API).
//
// Thread safety: stateless; the services it calls are thread safe.

#include <optional>
#include <string>
#include <string_view>

#include "api/http.h"
#include "api/route.h"
#include "api/services.h"

namespace otd::api {

// The caller, or the error answer to send instead.
struct Authenticated {
  std::optional<Caller> caller;
  std::optional<Response> error;
  std::optional<service::Vault::ReadAhead> read_ahead;  // see AuthSpec::read_ahead_token
};

// Resolves the credential `spec` accepts for this request. An anonymous caller (spec.anonymous
// and no credential) is neither an error nor a caller.
Authenticated Authenticate(const AuthSpec& spec, Dialect dialect, const Services& s,
                           const Request& req, const RequestContext& ctx);

// True when the request carries an `Authorization: Bearer ...` header (scheme case-insensitive).
bool HasBearer(const Request& req);

// The 401 of a signed route: vnd.error with `message` (a fixed text for the client, never a
// secret), `WWW-Authenticate: OT1-HMAC-SHA256-HEX` and the `related`/`signature-information`
// link (links.md).
Response SignatureRequired(const Request& req, const RequestContext& ctx, std::string_view message);

}  // namespace otd::api
