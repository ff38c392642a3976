#pragma once
// Everything the route handlers use. The router keeps a reference to it: it must outlive the
// server.

#include <cstdint>
#include <string>

#include "api/limits.h"
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
  // the base of absolute URLs in answers and the origin cookie-authenticated requests may come
  // from.
  std::string public_url;
  // The web console under /console/ (console_routes.cc; config console.enabled). Also makes a
  // browser that opens a mailed confirmation link land on the console's confirm page.
  bool console_enabled = false;
  // The audit trail (service/audit.h); null: no audit (unit tests only).
  service::AuditLog* audit = nullptr;
};

}  // namespace otd::api
