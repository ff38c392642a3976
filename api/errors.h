#pragma once
// Error responses. The OpenToken surface uses application/vnd.error+json:
//   {"code": "...", "logref": "<request id>", "message": "..."}
// Only this file maps Status codes to HTTP statuses. Unknown/internal errors give 500 with no
// detail. Messages never contain secrets, ids or bodies.

#include <string_view>

#include "api/http.h"
#include "common/status.h"

namespace otd::api {

// The error shape of a surface (docs/decisions.md "Error dialect per surface").
enum class Dialect {
  kOpenToken,     // application/vnd.error+json {"code", "logref", "message"}
  kAccessTokens,  // /access-tokens (Losant): {"type", "message"}
  kEmail,         // /v1/access_tokens (pkmnapi): {"data": {"id", "type": "errors", ...}}
};

unsigned HttpStatusFor(Code code);
// Builds a vnd.error response; `code` is a short machine-readable string such as "not-found".
Response VndError(const Request& req, const RequestContext& ctx, unsigned status,
                  std::string_view code, std::string_view message);
// Maps a Status (kInternal and unknown codes lose their message).
Response VndErrorFromStatus(const Request& req, const RequestContext& ctx, const Status& s);

// Losant's shape (/access-tokens): {"type", "message"}; 401 carries WWW-Authenticate: Bearer.
Response LosantError(const Request& req, unsigned status, std::string_view type,
                     std::string_view message);
Response LosantErrorFromStatus(const Request& req, const Status& st);
// pkmnapi's shape (/v1/access_tokens): {"data": {"id", "type": "errors", "attributes":
// {"message"}}}.
Response PkmnError(const Request& req, unsigned status, std::string_view id,
                   std::string_view message);
Response PkmnErrorFromStatus(const Request& req, const Status& st);

// The error of `dialect`: `code` is the vnd.error code, the Losant type or the pkmnapi id.
Response DialectError(Dialect dialect, const Request& req, const RequestContext& ctx,
                      unsigned status, std::string_view code, std::string_view message);
Response DialectErrorFromStatus(Dialect dialect, const Request& req, const RequestContext& ctx,
                                const Status& st);

// A JSON response with the standard links.
Response JsonResponse(const Request& req, unsigned status, std::string body,
                      std::string_view content_type = "application/json; charset=utf-8");

}  // namespace otd::api
