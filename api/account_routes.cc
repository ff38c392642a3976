// Registration, login, account and logout endpoints (doc/api/registration.md, account.md,
// logout.md). Handlers translate HTTP to service::Accounts calls; replies follow the documents.

#include <openssl/crypto.h>

#include <nlohmann/json.hpp>

#include "api/browser_policy.h"
#include "api/errors.h"
#include "api/links.h"
#include "api/qr_png.h"
#include "api/request_helpers.h"
#include "api/routes.h"
#include "crypto/encoding.h"
#include "crypto/totp.h"

namespace otd::api {

namespace {

using nlohmann::json;

json PasswordHashConfig(const std::string& salt) {
  return {{"algorithm", "sha512"},
          {"derivedLength", service::kPasswordDerivedLength},
          {"encoding", "base64"},
          {"iterations", service::kPasswordIterations},
          {"salt", salt},
          {"type", "pbkdf2"}};
}

std::string RegistrationPath(const std::string& id) { return "/registration/" + id; }
std::string AccountPath(const std::string& id) { return "/account/" + id; }

void AddRegistrationLinks(Response& res, const std::string& id) {
  AddStandardLinks(res, RegistrationPath(id));
  AddLink(res, {.href = RegistrationPath(id),
                .rel = "edit",
                .title = "registration-secure",
                .profile = "/schema/registration/secure-request.json"});
  AddLink(res, {.href = RegistrationPath(id) + "/qr", .rel = "item", .title = "registration-secure-qr"});
}

// The registration resource (registration.md). It carries the TOTP seed three times, so it is
// built in buffers of exact size (no reallocation copies) and wiped by the server once written.
Response RegistrationResponse(const Request& req, const RequestContext& ctx,
                              const service::Registration& r, const std::string& issuer) {
  auto base32 = crypto::Base32EncodeSecret(r.totp_seed, crypto::Base32Padding::kUnpadded);
  auto hex = crypto::HexEncodeSecret(r.totp_seed);
  auto uri = crypto::OtpauthUriSecret(issuer, r.email.RevealString(SecretAccess::Grant()), r.totp_seed);
  if (!base32.ok() || !hex.ok() || !uri.ok()) {
    return VndErrorFromStatus(req, ctx, Internal("cannot encode the TOTP key"));
  }
  std::string_view b32 = base32->RevealString(SecretAccess::Grant());
  std::string_view hx = hex->RevealString(SecretAccess::Grant());
  std::string_view u = uri->RevealString(SecretAccess::Grant());
  if (!IsPlainJsonText(r.password_salt) || !IsPlainJsonText(u)) {
    return VndErrorFromStatus(req, ctx, Internal("unexpected characters in the registration"));
  }
  Response res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/json");
  res.body() = ConcatExact({R"({"passwordHashConfig":{"algorithm":"sha512","derivedLength":)",
                            std::to_string(service::kPasswordDerivedLength),
                            R"(,"encoding":"base64","iterations":)",
                            std::to_string(service::kPasswordIterations), R"(,"salt":")",
                            r.password_salt, R"(","type":"pbkdf2"},"mfa":{"totp":{"keyBase32":")", b32,
                            R"(","keyHex":")", hx, R"(","keyUri":")", u, R"("}}})"});
  res.prepare_payload();
  AddRegistrationLinks(res, r.id);
  res.set(http::field::location, RegistrationPath(r.id));
  return res;
}

Response StatusError(const Request& req, const RequestContext& ctx, const Status& s) {
  return VndErrorFromStatus(req, ctx, s);
}

// A registration step refused by the admission limits (service/registration_limits.h): 429 when
// the caller is over a rate or its pending cap, 503 when the service has no room for more
// registrations (the cause is not the caller's); both with Retry-After.
Response RegistrationRefused(const Request& req, const RequestContext& ctx, const Status& s,
                             int64_t wait) {
  Response res = s.code() == Code::kResourceExhausted
                     ? VndError(req, ctx, 429, "too-many-requests", s.message())
                     : VndError(req, ctx, 503, "service-unavailable",
                                "no new registrations can be taken now; try again later");
  res.set(http::field::retry_after, std::to_string(std::max<int64_t>(1, wait)));
  return res;
}

Response TooManyRegistrationSteps(const Request& req, const RequestContext& ctx, int64_t wait) {
  return RegistrationRefused(
      req, ctx, ResourceExhausted("too many registration steps; wait before trying again"), wait);
}

std::string CookieHeader(const RequestContext& ctx, const std::string& value, int64_t max_age) {
  std::string c = "login=" + value + "; Path=/account/; Max-Age=" + std::to_string(max_age) +
                  "; HttpOnly; SameSite=Strict";
  if (ctx.transport == Transport::kTls) {
    c += "; Secure";
  }
  return c;
}

}  // namespace

void RegisterAccountRoutes(Router& router, const Services& s) {
  service::Accounts& accounts = s.accounts;
  const SchemaValidator& schemas = s.schemas;
  const Limits limits = s.limits;

  router.Add(http::verb::post, "/registration",
             [&accounts, &schemas, limits](const Request& req, RequestContext& ctx) {
               if (int64_t wait = accounts.RegistrationRetryAfter(ctx.peer); wait > 0) {
                 return TooManyRegistrationSteps(req, ctx, wait);
               }
               JsonBody body = ReadJsonBody(req, ctx, schemas, "registration/register-request.json", limits);
               if (body.error) {
                 return std::move(*body.error);
               }
               auto& email_text = (*body.doc)["email"].get_ref<std::string&>();
               if (email_text.size() > 254) {
                 WipeJson(*body.doc);
                 return VndError(req, ctx, 400, "bad-request", "/email: longer than 254 characters");
               }
               SecretBytes email = SecretBytes::CopyFrom(email_text);
               WipeJson(*body.doc);
               int64_t wait = 0;
               auto reg = accounts.Register(email, ctx.peer, &wait);
               if (!reg.ok()) {
                 return wait > 0 ? RegistrationRefused(req, ctx, reg.status(), wait)
                                 : StatusError(req, ctx, reg.status());
               }
               return RegistrationResponse(req, ctx, *reg, accounts.options().totp_issuer);
             });

  router.Add(http::verb::get, "/registration/{id}", [&accounts](const Request& req, RequestContext& ctx) {
    auto reg = accounts.GetRegistration(ctx.params["id"]);
    if (!reg.ok()) {
      return StatusError(req, ctx, reg.status());
    }
    return RegistrationResponse(req, ctx, *reg, accounts.options().totp_issuer);
  });

  router.Add(http::verb::get, "/registration/{id}/qr", [&accounts](const Request& req, RequestContext& ctx) {
    auto reg = accounts.GetRegistration(ctx.params["id"]);
    if (!reg.ok()) {
      return StatusError(req, ctx, reg.status());
    }
    auto uri = crypto::OtpauthUriSecret(accounts.options().totp_issuer,
                                        reg->email.RevealString(SecretAccess::Grant()), reg->totp_seed);
    if (!uri.ok()) {
      return StatusError(req, ctx, uri.status());
    }
    auto png = QrCodePng(uri->RevealString(SecretAccess::Grant()));
    if (!png.ok()) {
      return StatusError(req, ctx, png.status());
    }
    Response res = JsonResponse(req, 200, std::move(png).value(), "image/png");
    AddStandardLinks(res, "/registration/" + ctx.params["id"] + "/qr");
    AddLink(res, {.href = "/registration/" + ctx.params["id"], .rel = "up", .title = "registration"});
    return res;
  });

  router.Add(http::verb::post, "/registration/{id}",
             [&accounts, &schemas, limits](const Request& req, RequestContext& ctx) {
               if (int64_t wait = accounts.RegistrationRetryAfter(ctx.peer); wait > 0) {
                 return TooManyRegistrationSteps(req, ctx, wait);
               }
               JsonBody body = ReadJsonBody(req, ctx, schemas, "registration/secure-request.json", limits);
               if (body.error) {
                 return std::move(*body.error);
               }
               json& doc = *body.doc;
               SecretBytes password_hash = SecretBytes::CopyFrom(doc["passwordHash"].get_ref<const std::string&>());
               std::string current = doc["mfa"]["totp"]["current"];
               std::string previous = doc["mfa"]["totp"]["previous"];
               WipeJson(doc);
               int64_t wait = 0;
               Status st = accounts.SecureRegistration(ctx.params["id"], password_hash, current,
                                                       previous, ctx.peer, &wait);
               if (!st.ok()) {
                 return wait > 0 ? RegistrationRefused(req, ctx, st, wait)
                                 : StatusError(req, ctx, st);
               }
               Response res{http::status::no_content, req.version()};
               AddStandardLinks(res, "/registration/" + ctx.params["id"]);
               return res;
             });

  router.Add(http::verb::get, "/registration/{id}/confirm/{code}",
             [&accounts](const Request& req, RequestContext& ctx) {
               auto account = accounts.ConfirmRegistration(ctx.params["id"], ctx.params["code"]);
               if (!account.ok()) {
                 return StatusError(req, ctx, account.status());
               }
               json body = {{"accountId", *account}};
               Response res = JsonResponse(req, 201, body.dump(), "application/json");
               AddStandardLinks(res, AccountPath(*account));
               AddLink(res, {.href = AccountPath(*account) + "/login",
                             .rel = "login",
                             .title = "account-login",
                             .profile = "/schema/account/login-request.json"});
               res.set(http::field::location, AccountPath(*account));
               return res;
             });

  router.Add(http::verb::get, "/account/{id}/login", [&accounts](const Request& req, RequestContext& ctx) {
    const std::string& id = ctx.params["id"];
    auto challenge = accounts.IssueChallenge(id);
    if (!challenge.ok()) {
      return StatusError(req, ctx, challenge.status());
    }
    json body = {{"challengeHashConfig",
                  {{"algorithm", "sha512"}, {"encoding", "hex"}, {"salt", challenge->challenge_salt}}},
                 {"passwordHashConfig", PasswordHashConfig(challenge->password_salt)}};
    Response res = JsonResponse(req, 200, body.dump(), "application/json");
    AddStandardLinks(res, AccountPath(id) + "/login");
    AddLink(res, {.href = AccountPath(id) + "/login",
                  .rel = "service",
                  .title = "account-login",
                  .profile = "/schema/account/login-request.json"});
    AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
    return res;
  });

  router.Add(http::verb::post, "/account/{id}/login",
             [&accounts, &schemas, limits](const Request& req, RequestContext& ctx) {
               const std::string& id = ctx.params["id"];
               if (int64_t wait = accounts.LoginRetryAfter(id, ctx.peer); wait > 0) {
                 Response res = VndError(req, ctx, 429, "too-many-requests",
                                         "too many failed logins; try again later");
                 res.set(http::field::retry_after, std::to_string(wait));
                 return res;
               }
               JsonBody body = ReadJsonBody(req, ctx, schemas, "account/login-request.json", limits);
               if (body.error) {
                 return std::move(*body.error);
               }
               std::string challenge_hash = (*body.doc)["challengeHash"];
               std::string totp = (*body.doc)["mfa"]["totp"];
               WipeJson(*body.doc);
               auto session = accounts.Login(id, challenge_hash, totp, ctx.peer);
               if (!session.ok()) {
                 if (session.status().code() == Code::kUnauthenticated) {
                   return VndError(req, ctx, 401, "unauthorized", "login failed");
                 }
                 if (session.status().code() == Code::kResourceExhausted) {
                   Response res = VndError(req, ctx, 429, "too-many-requests",
                                           "too many failed logins; try again later");
                   res.set(http::field::retry_after,
                           std::to_string(std::max<int64_t>(1, accounts.LoginRetryAfter(id, ctx.peer))));
                   return res;
                 }
                 return StatusError(req, ctx, session.status());
               }
               Response res = JsonResponse(req, 200, ConcatExact({R"({"sessionId":")", session->id, R"("})"}),
                                           "application/json");
               AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
               AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
               res.set(http::field::set_cookie,
                       CookieHeader(ctx, session->id, accounts.options().session_lifetime_seconds));
               return res;
             });

  router.Add(http::verb::get, "/account/{id}", [&accounts, &s](const Request& req, RequestContext& ctx) {
    if (auto err = RequireScope(s, req, ctx, "account.read")) {
      return std::move(*err);
    }
    const std::string& id = ctx.params["id"];
    auto email = accounts.AccountEmail(id);
    if (!email.ok()) {
      return StatusError(req, ctx, email.status());
    }
    std::string_view address = email->RevealString(SecretAccess::Grant());
    if (!IsPlainJsonText(address)) {
      return StatusError(req, ctx, Internal("unexpected characters in the e-mail address"));
    }
    Response res = JsonResponse(req, 200, ConcatExact({R"({"email":")", address, R"("})"}),
                                "application/json");
    AddStandardLinks(res, AccountPath(id));
    for (const auto& link : AccountServiceLinks(id)) {
      AddLink(res, link);
    }
    return res;
  });

  auto logout = [&accounts, &s](const Request& req, RequestContext& ctx) {
    if (auto cookie = CookieValue(req, "login"); cookie && !cookie->empty() && cookie->size() <= 64) {
      if (auto refused = CrossSiteRefusal(req, s.public_url)) {
        return VndError(req, ctx, 403, "forbidden", *refused);
      }
      auto session = accounts.GetSession(*cookie);
      if (session.ok() && session->account_id == ctx.params["id"]) {
        Status st = accounts.Logout(*cookie);
        if (!st.ok()) {
          return StatusError(req, ctx, st);
        }
      }
    }
    Response res{http::status::no_content, req.version()};
    AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
    res.set(http::field::set_cookie, CookieHeader(ctx, "", 0));
    res.set(http::field::location, "/");
    return res;
  };
  router.Add(http::verb::get, "/account/{id}/logout", logout);
  router.Add(http::verb::post, "/account/{id}/logout", logout);
}

}  // namespace otd::api
