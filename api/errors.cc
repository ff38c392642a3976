#include "api/errors.h"

#include <nlohmann/json.hpp>

#include "api/links.h"

namespace otd::api {

unsigned HttpStatusFor(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kDataLoss: return 404;  // a record that does not open is reported as absent
    case Code::kAlreadyExists: return 409;
    case Code::kFailedPrecondition: return 409;
    case Code::kResourceExhausted: return 503;
    case Code::kUnavailable: return 503;
    case Code::kInternal: return 500;
  }
  return 500;
}

namespace {

std::string_view CodeSlug(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return "bad-request";
    case Code::kUnauthenticated: return "unauthorized";
    case Code::kPermissionDenied: return "forbidden";
    case Code::kNotFound:
    case Code::kDataLoss: return "not-found";
    case Code::kAlreadyExists: return "conflict";
    case Code::kFailedPrecondition: return "conflict";
    case Code::kResourceExhausted:
    case Code::kUnavailable: return "service-unavailable";
    default: return "internal-error";
  }
}

}  // namespace

Response VndError(const Request& req, const RequestContext& ctx, unsigned status,
                  std::string_view code, std::string_view message) {
  nlohmann::json body = {
      {"code", std::string(code)}, {"logref", ctx.request_id}, {"message", std::string(message)}};
  Response res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, "application/vnd.error+json");
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  res.body() = body.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  res.prepare_payload();
  return res;
}

Response VndErrorFromStatus(const Request& req, const RequestContext& ctx, const Status& s) {
  unsigned status = HttpStatusFor(s.code());
  std::string_view message = s.message();
  if (s.code() == Code::kInternal) {
    message = "internal error";
  } else if (s.code() == Code::kDataLoss) {
    message = "not found";
  } else if (s.code() == Code::kUnavailable || s.code() == Code::kResourceExhausted) {
    message = "service temporarily unavailable";
  }
  return VndError(req, ctx, status, CodeSlug(s.code()), message);
}

Response JsonResponse(const Request& req, unsigned status, std::string body,
                      std::string_view content_type) {
  Response res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response LosantError(const Request& req, unsigned status, std::string_view type,
                     std::string_view message) {
  nlohmann::json body = {{"type", std::string(type)}, {"message", std::string(message)}};
  Response res =
      JsonResponse(req, status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                   "application/json");
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  if (status == 401) {
    res.set(http::field::www_authenticate, R"(Bearer realm="opentokend", error="invalid_token")");
  }
  return res;
}

Response LosantErrorFromStatus(const Request& req, const Status& st) {
  switch (st.code()) {
    case Code::kInvalidArgument: return LosantError(req, 400, "Validation", st.message());
    case Code::kUnauthenticated:
      return LosantError(req, 401, "Unauthorized", "invalid or missing credentials");
    case Code::kPermissionDenied: return LosantError(req, 403, "Forbidden", st.message());
    case Code::kNotFound:
    case Code::kDataLoss: return LosantError(req, 404, "NotFound", "Access token was not found");
    case Code::kUnavailable:
    case Code::kResourceExhausted:
      return LosantError(req, 503, "ServiceUnavailable", "service temporarily unavailable");
    default: return LosantError(req, 500, "InternalError", "internal error");
  }
}

Response PkmnError(const Request& req, unsigned status, std::string_view id,
                   std::string_view message) {
  nlohmann::json body = {{"data",
                          {{"id", std::string(id)},
                           {"type", "errors"},
                           {"attributes", {{"message", std::string(message)}}}}}};
  Response res =
      JsonResponse(req, status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                   "application/json");
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  return res;
}

Response PkmnErrorFromStatus(const Request& req, const Status& st) {
  switch (st.code()) {
    case Code::kInvalidArgument:
      return PkmnError(req, 400, "error_access_tokens_invalid", st.message());
    case Code::kUnavailable:
      return PkmnError(req, 503, "error_access_tokens_email",
                       "The service cannot send mail now; try again later");
    default: return PkmnError(req, 500, "error_internal_server", "An unknown error has occurred");
  }
}

Response DialectError(Dialect dialect, const Request& req, const RequestContext& ctx,
                      unsigned status, std::string_view code, std::string_view message) {
  switch (dialect) {
    case Dialect::kAccessTokens: return LosantError(req, status, code, message);
    case Dialect::kEmail: return PkmnError(req, status, code, message);
    case Dialect::kOpenToken: break;
  }
  return VndError(req, ctx, status, code, message);
}

Response DialectErrorFromStatus(Dialect dialect, const Request& req, const RequestContext& ctx,
                                const Status& st) {
  switch (dialect) {
    case Dialect::kAccessTokens: return LosantErrorFromStatus(req, st);
    case Dialect::kEmail: return PkmnErrorFromStatus(req, st);
    case Dialect::kOpenToken: break;
  }
  return VndErrorFromStatus(req, ctx, st);
}

}  // namespace otd::api
