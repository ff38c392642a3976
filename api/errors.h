#pragma once
// Error responses. The OpenToken surface uses application/vnd.error+json:
//   {"code": "...", "logref": "<request id>", "message": "..."}
// Only this file maps Status codes to HTTP statuses. Unknown/internal errors give 500 with no
// detail. Messages never contain secrets, ids or bodies.

#include <string_view>

#include "api/http.h"
#include "common/status.h"

namespace otd::api {

unsigned HttpStatusFor(Code code);
// Builds a vnd.error response; `code` is a short machine-readable string such as "not-found".
Response VndError(const Request& req, const RequestContext& ctx, unsigned status,
                  std::string_view code, std::string_view message);
// Maps a Status (kInternal and unknown codes lose their message).
Response VndErrorFromStatus(const Request& req, const RequestContext& ctx, const Status& s);

// A JSON response with the standard links.
Response JsonResponse(const Request& req, unsigned status, std::string body,
                      std::string_view content_type = "application/json; charset=utf-8");

}  // namespace otd::api
