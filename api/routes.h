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
#include "service/accounts.h"
#include "service/tokens.h"
#include "service/vault.h"

namespace otd::api {

// Everything the handlers use. The router keeps references to it: it must outlive the server.
struct Services {
  service::Vault& vault;
  service::Accounts& accounts;
  service::AccessCodes& access_codes;
  service::Tokens& tokens;
  const SchemaValidator& schemas;
  const Clock& clock;
  Logger& log;
  Limits limits;
  int64_t signature_past_seconds = 300;   // X-OpenToken-Date may be this old
  int64_t signature_future_seconds = 60;  // or this far ahead
};

void RegisterRoutes(Router& router, const Services& services);
void RegisterAccountRoutes(Router& router, const Services& services);
void RegisterTokenRoutes(Router& router, const Services& services);

// The `login` cookie's session must exist and belong to the account in the path ({id}).
// Returns the error reply (401 no/unknown session, 403 another account's) or nothing.
std::optional<Response> RequireLogin(const Services& s, const Request& req, const RequestContext& ctx);
// An OT1-HMAC-SHA256-HEX signed request from an access code of `account_id`
// (doc/api/signed-requests.md). Every failure is the same 401.
std::optional<Response> VerifySignature(const Services& s, const Request& req,
                                        const RequestContext& ctx, const std::string& account_id);

// The service links of an account resource (account.md).
std::vector<Link> AccountServiceLinks(const std::string& account_id);

}  // namespace otd::api
