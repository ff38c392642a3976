#pragma once
// Registers every endpoint of the API on a router. Handlers translate HTTP to service calls; the
// services own the rules.

#include <string>
#include <vector>

#include "api/limits.h"
#include "api/links.h"
#include "api/router.h"
#include "api/validation.h"
#include "common/clock.h"
#include "common/log.h"
#include "service/access_codes.h"
#include "service/access_tokens.h"
#include "service/accounts.h"
#include "service/audit.h"
#include "service/tokens.h"
#include "service/vault.h"

namespace otd::api {

// Everything the handlers use. The router keeps references to it: it must outlive the server.
struct Services {
  service::Vault& vault;
  service::Accounts& accounts;
  service::AccessCodes& access_codes;
  service::Tokens& tokens;
  service::AccessTokens& access_tokens;
  const SchemaValidator& schemas;
  const Clock& clock;
  Logger& log;
  Limits limits;
  int64_t signature_past_seconds = 300;   // X-OpenToken-Date may be this old
  int64_t signature_future_seconds = 60;  // or this far ahead
  // The configured `public_url` (scheme://host[:port], no trailing slash), empty when not set:
  // the base of absolute URLs in answers and the origin cookie-authenticated requests may come from.
  std::string public_url;
  // The audit trail (service/audit.h; api/audit_hook.h); null: no audit (unit tests only).
  service::AuditLog* audit = nullptr;
};

// How to sign a request (linked from every 401 of a signed route, rel="related",
// title="signature-information"): the canonical string, the date format and window, the
// server's clock.
inline constexpr std::string_view kSignatureInformationPath = "/signature-information";

void RegisterRoutes(Router& router, const Services& services);
void RegisterAccountRoutes(Router& router, const Services& services);
void RegisterTokenRoutes(Router& router, const Services& services);
void RegisterAccessTokenRoutes(Router& router, const Services& services);

// Who is calling an account-management endpoint: a login session (full rights on its account) or
// an access token (`Authorization: Bearer otk_...`, rights limited to its scope).
struct Caller {
  std::string account_id;
  std::optional<service::AccessTokenInfo> bearer;  // nullopt: a login session
  bool Allows(std::string_view scope) const {
    return !bearer || service::ScopeAllows(bearer->scope, scope);
  }
};

// True when the request carries an `Authorization: Bearer ...` header (scheme case-insensitive).
bool HasBearer(const Request& req);
// Resolves the caller. A Bearer header wins over the cookie only if the cookie is absent: both
// together are kInvalidArgument (one credential per request). kUnauthenticated for no credential,
// several Authorization headers, a malformed/unknown/expired/inactive token or an unknown session.
// Errors are plain Statuses so each surface can use its own error shape.
Result<Caller> ResolveCaller(const Services& s, const Request& req);

// The caller (login cookie or bearer) must be the account in the path ({id}) and, for a bearer,
// hold `scope`. Returns the vnd.error reply (400 two credentials, 401 none or invalid, 403 another
// account's or scope missing) or nothing. A login session passes every scope, as before.
std::optional<Response> RequireScope(const Services& s, const Request& req, const RequestContext& ctx,
                                     std::string_view scope);
// An OT1-HMAC-SHA256-HEX signed request from an access code of `account_id`
// (doc/api/signed-requests.md). Every failure is the same 401.
std::optional<Response> VerifySignature(const Services& s, const Request& req,
                                        const RequestContext& ctx, const std::string& account_id);

// The service links of an account resource (account.md).
std::vector<Link> AccountServiceLinks(const std::string& account_id);

}  // namespace otd::api
