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
  nlohmann::json body = {{"code", std::string(code)},
                         {"logref", ctx.request_id},
                         {"message", std::string(message)}};
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

}  // namespace otd::api
