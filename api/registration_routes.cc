// Registration (doc/api/registration.md): start, the resource and its QR code, the secure step
// (password hash + two TOTP codes, mails the confirmation link), the confirmation.

#include <algorithm>

#include "api/errors.h"
#include "api/links.h"
#include "api/qr_png.h"
#include "api/request_helpers.h"
#include "api/routes.h"
#include "crypto/encoding.h"
#include "crypto/totp.h"

namespace otd::api {

namespace {

std::string RegistrationPath(const std::string& id) { return "/registration/" + id; }

void AddRegistrationLinks(Response& res, const std::string& id) {
  AddStandardLinks(res, RegistrationPath(id));
  AddLink(res, {.href = RegistrationPath(id),
                .rel = "edit",
                .title = "registration-secure",
                .profile = "/schema/registration/secure-request.json"});
  AddLink(res,
          {.href = RegistrationPath(id) + "/qr", .rel = "item", .title = "registration-secure-qr"});
}

// The registration resource (registration.md). It carries the TOTP seed three times, so it is
// built in buffers of exact size (no reallocation copies) and wiped by the server once written.
Response RegistrationResponse(const Call& call, const service::Registration& r) {
  const std::string& issuer = call.s().accounts.options().totp_issuer;
  auto base32 = crypto::Base32EncodeSecret(r.totp_seed, crypto::Base32Padding::kUnpadded);
  auto hex = crypto::HexEncodeSecret(r.totp_seed);
  auto uri =
      crypto::OtpauthUriSecret(issuer, r.email.RevealString(SecretAccess::Grant()), r.totp_seed);
  if (!base32.ok() || !hex.ok() || !uri.ok()) {
    return call.Error(Internal("cannot encode the TOTP key"));
  }
  std::string_view b32 = base32->RevealString(SecretAccess::Grant());
  std::string_view hx = hex->RevealString(SecretAccess::Grant());
  std::string_view u = uri->RevealString(SecretAccess::Grant());
  if (!IsPlainJsonText(r.password_salt) || !IsPlainJsonText(u)) {
    return call.Error(Internal("unexpected characters in the registration"));
  }
  Response res{http::status::ok, call.req.version()};
  res.set(http::field::content_type, "application/json");
  res.body() = ConcatExact({R"({"passwordHashConfig":{"algorithm":"sha512","derivedLength":)",
                            std::to_string(service::kPasswordDerivedLength),
                            R"(,"encoding":"base64","iterations":)",
                            std::to_string(service::kPasswordIterations), R"(,"salt":")",
                            r.password_salt, R"(","type":"pbkdf2"},"mfa":{"totp":{"keyBase32":")",
                            b32, R"(","keyHex":")", hx, R"(","keyUri":")", u, R"("}}})"});
  res.prepare_payload();
  AddRegistrationLinks(res, r.id);
  res.set(http::field::location, RegistrationPath(r.id));
  return res;
}

// A registration step refused by the admission limits (service/registration_limits.h): 429 when
// the caller is over a rate or its pending cap, 503 when the service has no room for more
// registrations (the cause is not the caller's); both with Retry-After.
Response RegistrationRefused(const Call& call, const Status& s, int64_t wait) {
  Response res = s.code() == Code::kResourceExhausted
                     ? call.Error(429, "too-many-requests", s.message())
                     : call.Error(503, "service-unavailable",
                                  "no new registrations can be taken now; try again later");
  res.set(http::field::retry_after, std::to_string(std::max<int64_t>(1, wait)));
  return res;
}

Response TooManyRegistrationSteps(const Call& call, int64_t wait) {
  return RegistrationRefused(
      call, ResourceExhausted("too many registration steps; wait before trying again"), wait);
}

Reply Register(Call& call) {
  service::Accounts& accounts = call.s().accounts;
  if (int64_t wait = accounts.RegistrationRetryAfter(call.ctx.limit_peer); wait > 0) {
    return TooManyRegistrationSteps(call, wait);
  }
  const auto& email_text = (*call.body)["email"].get_ref<const std::string&>();
  if (email_text.size() > 254) {
    return call.Error(400, "bad-request", "/email: longer than 254 characters");
  }
  SecretBytes email = SecretBytes::CopyFrom(email_text);
  int64_t wait = 0;
  auto reg = accounts.Register(email, call.ctx.limit_peer, &wait);
  if (!reg.ok()) {
    return wait > 0 ? RegistrationRefused(call, reg.status(), wait) : call.Error(reg.status());
  }
  Reply reply = RegistrationResponse(call, *reg);
  reply.object = reg->id;
  return reply;
}

Reply GetRegistration(Call& call) {
  auto reg = call.s().accounts.GetRegistration(call.param("id"));
  if (!reg.ok()) {
    return call.Error(reg.status());
  }
  return RegistrationResponse(call, *reg);
}

Reply RegistrationQr(Call& call) {
  const service::Accounts& accounts = call.s().accounts;
  const std::string& id = call.param("id");
  auto reg = call.s().accounts.GetRegistration(id);
  if (!reg.ok()) {
    return call.Error(reg.status());
  }
  auto uri =
      crypto::OtpauthUriSecret(accounts.options().totp_issuer,
                               reg->email.RevealString(SecretAccess::Grant()), reg->totp_seed);
  if (!uri.ok()) {
    return call.Error(uri.status());
  }
  auto png = QrCodePng(uri->RevealString(SecretAccess::Grant()));
  if (!png.ok()) {
    return call.Error(png.status());
  }
  Response res = JsonResponse(call.req, 200, std::move(png).value(), "image/png");
  AddStandardLinks(res, RegistrationPath(id) + "/qr");
  AddLink(res, {.href = RegistrationPath(id), .rel = "up", .title = "registration"});
  return res;
}

Reply Secure(Call& call) {
  service::Accounts& accounts = call.s().accounts;
  if (int64_t wait = accounts.RegistrationRetryAfter(call.ctx.limit_peer); wait > 0) {
    return TooManyRegistrationSteps(call, wait);
  }
  const nlohmann::json& doc = *call.body;
  SecretBytes password_hash =
      SecretBytes::CopyFrom(doc["passwordHash"].get_ref<const std::string&>());
  const std::string& current = doc["mfa"]["totp"]["current"].get_ref<const std::string&>();
  const std::string& previous = doc["mfa"]["totp"]["previous"].get_ref<const std::string&>();
  int64_t wait = 0;
  Status st = accounts.SecureRegistration(call.param("id"), password_hash, current, previous,
                                          call.ctx.limit_peer, &wait);
  if (!st.ok()) {
    return wait > 0 ? RegistrationRefused(call, st, wait) : call.Error(st);
  }
  Response res{http::status::no_content, call.req.version()};
  AddStandardLinks(res, RegistrationPath(call.param("id")));
  return res;
}

// A browser opening the mailed link (a top-level navigation: `Sec-Fetch-Mode: navigate`, or
// without Fetch metadata an Accept naming text/html), as opposed to an API client.
bool IsBrowserNavigation(const Request& req) {
  const std::string_view mode = req["Sec-Fetch-Mode"];
  if (!mode.empty()) {
    return mode == "navigate";
  }
  return req[http::field::accept].find("text/html") != std::string_view::npos;
}

Reply Confirm(Call& call) {
  if (call.s().console_enabled && IsBrowserNavigation(call.req)) {
    // The mailed link lands on the console's confirm page, which makes this same request with
    // fetch() and shows the outcome; the code is not used here (a mail scanner that follows
    // the link does not consume it either). The fragment never reaches a server or a Referer.
    Response res{http::status::see_other, call.req.version()};
    res.set(http::field::location, std::string(kConsolePath) + "#/registration/" +
                                       call.param("id") + "/confirm/" + call.param("code"));
    Reply reply(std::move(res));
    reply.audited = false;  // nothing was confirmed (the console's request will be audited)
    return reply;
  }
  auto account = call.s().accounts.ConfirmRegistration(call.param("id"), call.param("code"));
  if (!account.ok()) {
    return call.Error(account.status());
  }
  const std::string path = "/account/" + *account;
  Response res = JsonResponse(call.req, 201, nlohmann::json{{"accountId", *account}}.dump(),
                              "application/json");
  AddStandardLinks(res, path);
  AddLink(res, {.href = path + "/login",
                .rel = "login",
                .title = "account-login",
                .profile = "/schema/account/login-request.json"});
  res.set(http::field::location, path);
  return res;
}

}  // namespace

std::vector<RouteSpec> RegistrationRoutes(const Services&) {
  // Possession of the registration id (and of the mailed code) is the credential.
  const AuthSpec anyone{.anonymous = true};
  std::vector<RouteSpec> r;
  r.push_back({.method = http::verb::post,
               .pattern = "/registration",
               .auth = anyone,
               .body = {BodyKind::kJson, "registration/register-request.json"},
               .audit = AuditSpec::Event("registration_started"),
               .links = {{.link = {.href = "/registration",
                                   .rel = "service",
                                   .title = "registration-register",
                                   .profile = "/schema/registration/register-request.json"}}},
               .handler = Register});
  r.push_back({.method = http::verb::get,
               .pattern = "/registration/{id}",
               .auth = anyone,
               .audit = AuditSpec::None(),
               .handler = GetRegistration});
  r.push_back({.method = http::verb::get,
               .pattern = "/registration/{id}/qr",
               .auth = anyone,
               .audit = AuditSpec::None(),
               .handler = RegistrationQr});
  r.push_back({.method = http::verb::post,
               .pattern = "/registration/{id}",
               .auth = anyone,
               .body = {BodyKind::kJson, "registration/secure-request.json"},
               .audit = AuditSpec::Event("registration_secured", "id"),
               .handler = Secure});
  r.push_back({.method = http::verb::get,
               .pattern = "/registration/{id}/confirm/{code}",
               .auth = anyone,
               .audit = AuditSpec::Event("registration_confirmed", "id"),
               .handler = Confirm});
  return r;
}

}  // namespace otd::api
