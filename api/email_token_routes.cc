// Access tokens by e-mail (seeds/002, pkmnapi style: `/v1/access_tokens`, JSON:API-like bodies,
// errors {"data": {"id", "type": "errors", "attributes": {"message"}}}). No credentials: the
// mailbox is the credential. The two POSTs only queue (service::AccessTokens), so known and
// unknown addresses get the same answer in the same time.

#include <algorithm>

#include "api/errors.h"
#include "api/links.h"
#include "api/routes.h"

namespace otd::api {

namespace {

constexpr std::string_view kEmailPath = "/v1/access_tokens";

Response TooMany(const Call& call, int64_t wait) {
  wait = std::max<int64_t>(1, wait);
  Response res =
      call.Error(429, "error_too_many_requests",
                 "Too many requests. Please try again in " + std::to_string(wait) + " seconds.");
  res.set(http::field::retry_after, std::to_string(wait));
  return res;
}

// The address of a validated body, or the 400 to answer.
const std::string* Address(const Call& call, std::optional<Response>* error) {
  const std::string& email =
      (*call.body)["data"]["attributes"]["email_address"].get_ref<const std::string&>();
  if (email.size() > 254) {
    *error = call.Error(400, "error_access_tokens_invalid",
                        "/data/attributes/email_address: longer than 254 characters");
    return nullptr;
  }
  return &email;
}

// POST /v1/access_tokens (mail a token) and POST /v1/access_tokens/delete (mail a deletion
// code). pkmnapi answers `Location: {API_DOMAIN}/v1/access_tokens`: absolute when public_url is
// set.
Reply Queue(Call& call, bool deletion) {
  const Services& s = call.s();
  std::optional<Response> error;
  const std::string* email = Address(call, &error);
  if (email == nullptr) {
    return std::move(*error);
  }
  if (int64_t wait = s.access_tokens.EmailRetryAfter(*email, call.ctx.limit_peer); wait > 0) {
    return TooMany(call, wait);
  }
  Status st = deletion ? s.access_tokens.EmailDeletionCode(*email, call.ctx.limit_peer)
                       : s.access_tokens.EmailToken(*email, call.ctx.limit_peer);
  if (st.code() == Code::kResourceExhausted) {
    return TooMany(call, s.access_tokens.EmailRetryAfter(*email, call.ctx.limit_peer));
  }
  if (!st.ok()) {
    return call.Error(st);
  }
  Response res = JsonResponse(call.req, 201, "{}", "application/json");
  res.set(http::field::location, s.public_url + std::string(kEmailPath));
  AddStandardLinks(res, std::string(kEmailPath));
  return res;
}

// DELETE /v1/access_tokens: the mailed code revokes the address's e-mailed tokens.
Reply Revoke(Call& call) {
  std::optional<Response> error;
  const std::string* email = Address(call, &error);
  if (email == nullptr) {
    return std::move(*error);
  }
  const std::string& code =
      (*call.body)["data"]["attributes"]["code"].get_ref<const std::string&>();
  Status st = call.s().access_tokens.DeleteEmailToken(*email, code, call.ctx.limit_peer);
  if (st.code() == Code::kResourceExhausted) {
    return TooMany(call, 60);
  }
  if (!st.ok()) {
    return call.Error(st);
  }
  Response res{http::status::no_content, call.req.version()};
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  return res;
}

}  // namespace

std::vector<RouteSpec> EmailTokenRoutes(const Services&) {
  const AuthSpec mailbox{.anonymous = true, .refuse_authorization = true};
  const std::string path(kEmailPath);
  std::vector<RouteSpec> r;
  r.push_back({.method = http::verb::post,
               .pattern = path,
               .dialect = Dialect::kEmail,
               .auth = mailbox,
               .body = {BodyKind::kJson, "v1/access-tokens-request.json"},
               .audit = AuditSpec::Event("access_token_mailed"),
               .links = {{.link = {.href = path,
                                   .rel = "service",
                                   .title = "access-tokens-email",
                                   .profile = "/schema/v1/access-tokens-request.json"}}},
               .handler = [](Call& c) { return Queue(c, /*deletion=*/false); }});
  r.push_back({.method = http::verb::post,
               .pattern = path + "/delete",
               .dialect = Dialect::kEmail,
               .auth = mailbox,
               .body = {BodyKind::kJson, "v1/access-tokens-request.json"},
               .audit = AuditSpec::Event("access_token_deletion_code_mailed"),
               .links = {{.link = {.href = path + "/delete",
                                   .rel = "service",
                                   .title = "access-tokens-email-delete",
                                   .profile = "/schema/v1/access-tokens-request.json"}}},
               .handler = [](Call& c) { return Queue(c, /*deletion=*/true); }});
  r.push_back({.method = http::verb::delete_,
               .pattern = path,
               .dialect = Dialect::kEmail,
               .auth = mailbox,
               .body = {BodyKind::kJson, "v1/access-tokens-delete-request.json"},
               .audit = AuditSpec::Event("access_token_mail_revoked"),
               .handler = Revoke});
  return r;
}

}  // namespace otd::api
