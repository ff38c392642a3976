#include "api/auth.h"

#include "api/browser_policy.h"
#include "api/errors.h"
#include "api/ot1.h"
#include "api/request_helpers.h"
#include "api/routes.h"
#include "common/ascii.h"
#include "common/check.h"
#include "common/clock.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "service/access_codes.h"

namespace otd::api {

namespace {

size_t CountAuthorization(const Request& req, std::string_view* last) {
  size_t n = 0;
  for (const auto& f : req) {
    if (f.name() == http::field::authorization) {
      ++n;
      *last = f.value();
    }
  }
  return n;
}

// The login session or the bearer token of the request. kInvalidArgument for both at once (one
// credential per request), kUnauthenticated for none, several Authorization headers, another
// scheme, a malformed/unknown/expired/inactive token or an unknown session, kPermissionDenied
// for a cross-site state change with the cookie. Plain Statuses: each dialect shapes them.
Result<Caller> ResolveSessionOrBearer(const Services& s, const Request& req) {
  std::string_view ignored;
  const size_t authorizations = CountAuthorization(req, &ignored);
  auto cookie = CookieValue(req, "login");
  if (authorizations > 1) {
    return Unauthenticated("send exactly one Authorization header");
  }
  if (authorizations == 1) {
    if (!HasBearer(req)) {
      return Unauthenticated("the Authorization scheme must be Bearer");
    }
    if (cookie) {
      return InvalidArgument("send either a Bearer token or the login cookie, not both");
    }
    std::string_view token = req[http::field::authorization].substr(7);
    OTD_ASSIGN_OR_RETURN(service::AccessTokenInfo info, s.access_tokens.Authenticate(token));
    Caller c;
    c.account_id = info.account_id;
    c.bearer = std::move(info);
    return c;
  }
  if (!cookie || cookie->empty() || cookie->size() > 64) {
    return Unauthenticated("login required");
  }
  // A browser sends the cookie with requests other sites make it send: refuse those.
  if (auto refused = CrossSiteRefusal(req, s.public_url)) {
    return PermissionDenied(*refused);
  }
  auto session = s.accounts.GetSession(*cookie);
  if (!session.ok()) {
    return session.status().code() == Code::kNotFound ? Unauthenticated("login required")
                                                      : session.status();
  }
  return Caller{.account_id = session->account_id, .bearer = std::nullopt};
}

std::string_view ForbiddenCode(Dialect d) {
  return d == Dialect::kAccessTokens ? "Forbidden" : "forbidden";
}

Authenticated SessionOrBearer(const AuthSpec& spec, Dialect dialect, const Services& s,
                              const Request& req, const RequestContext& ctx) {
  Authenticated out;
  auto caller = ResolveSessionOrBearer(s, req);
  if (!caller.ok()) {
    if (dialect == Dialect::kOpenToken && caller.status().code() == Code::kUnauthenticated) {
      const bool bearer = HasBearer(req);
      Response res = VndError(req, ctx, 401, "unauthorized",
                              bearer ? "invalid access token" : "login required");
      if (bearer) {
        res.set(http::field::www_authenticate,
                R"(Bearer realm="opentokend", error="invalid_token")");
      }
      out.error = std::move(res);
    } else {
      out.error = DialectErrorFromStatus(dialect, req, ctx, caller.status());
    }
    return out;
  }
  if (spec.account_in_path && caller->account_id != ctx.params.at("id")) {
    out.error = DialectError(dialect, req, ctx, 403, ForbiddenCode(dialect),
                             "not allowed for this account");
    return out;
  }
  if (!caller->Allows(spec.scope)) {
    out.error = DialectError(dialect, req, ctx, 403, ForbiddenCode(dialect),
                             "the access token's scope does not allow this");
    return out;
  }
  out.caller = std::move(caller).value();
  return out;
}

// doc/api/signed-requests.md: an access code of the account in the path signed the request.
// Each failed check answers its own message (issue 17): the texts come from api/ot1.cc and
// service/access_codes.h and never hold the secret, the expected signature or a header value.
Authenticated Signature(const AuthSpec& spec, const Services& s, const Request& req,
                        const RequestContext& ctx) {
  Authenticated out;
  const std::string& account_id = ctx.params.at("id");
  auto reject = [&](std::string_view message, std::string_view canonical_sha256 = {}) {
    s.log.Info("signature_rejected", {{"request_id", ctx.request_id}});
    if (canonical_sha256.empty()) {
      s.log.Debug("signature_rejected_reason",
                  {{"request_id", ctx.request_id}, {"reason", message}});
    } else {
      // A client author compares this with the SHA-256 of the canonical request they signed.
      s.log.Debug("signature_rejected_reason", {{"request_id", ctx.request_id},
                                                {"reason", message},
                                                {"canonical_sha256", canonical_sha256}});
    }
    out.error = SignatureRequired(req, ctx, message);
    return out;
  };
  std::string_view auth_value;
  const size_t count = CountAuthorization(req, &auth_value);
  if (count == 0) {
    return reject("no Authorization header: this request must be signed (OT1-HMAC-SHA256-HEX)");
  }
  if (count > 1) {
    return reject("malformed Authorization header: send exactly one Authorization header");
  }
  auto auth = ot1::ParseAuthorization(auth_value);
  if (!auth.ok()) {
    return reject(auth.status().message());
  }
  if (req.find("X-OpenToken-Date") == req.end()) {
    return reject("X-OpenToken-Date header is missing");
  }
  ot1::RequestView view;
  view.method = req.method_string();
  view.target = req.target();
  for (const auto& f : req) {
    view.headers.emplace_back(f.name_string(), f.value());
  }
  view.body = req.body();
  auto canonical = ot1::CanonicalContent(*auth, view);
  if (!canonical.ok()) {
    return reject(canonical.status().message());
  }
  auto date = ot1::ParseOt1Date(req["X-OpenToken-Date"]);
  if (!date.ok()) {
    return reject(date.status().message());
  }
  const int64_t now = s.clock.NowSeconds();
  if (Status w =
          ot1::CheckDateWindow(*date, now, s.signature_past_seconds, s.signature_future_seconds);
      !w.ok()) {
    // The window and the server's clock are public (GET /signature-information).
    return reject(w.message() + " (accepted: " + std::to_string(s.signature_past_seconds) +
                  " s behind to " + std::to_string(s.signature_future_seconds) +
                  " s ahead of the server's clock, now " + IsoUtc(now, false) + ")");
  }
  std::optional<service::Vault::ReadAhead> ahead;
  if (spec.read_ahead) {
    const std::string no_token;
    auto read = s.tokens.SignedReadAhead(account_id, auth->access_code,
                                         spec.read_ahead_token.empty()
                                             ? no_token
                                             : ctx.params.at(std::string(spec.read_ahead_token)));
    if (!read.ok()) {
      out.error = VndErrorFromStatus(req, ctx, read.status());
      return out;
    }
    ahead = std::move(read).value();
  }
  const ByteView canonical_bytes = canonical->Reveal(SecretAccess::Grant());
  Status v = s.access_codes.Verify(account_id, auth->access_code, canonical_bytes, auth->signature,
                                   ahead ? &*ahead : nullptr);
  if (v.code() == Code::kUnauthenticated) {
    if (v.message() != service::kSignatureMismatch) {
      return reject(v.message());
    }
    auto digest = crypto::Sha256(canonical_bytes);
    return reject(v.message(), digest.ok() ? crypto::HexEncode(*digest) : "unavailable");
  }
  if (!v.ok()) {
    out.error = VndErrorFromStatus(req, ctx, v);
    return out;
  }
  out.caller = Caller{.account_id = account_id, .signed_request = true};
  out.read_ahead = std::move(ahead);
  return out;
}

}  // namespace

bool HasBearer(const Request& req) {
  return AsciiStartsWithIgnoreCase(req[http::field::authorization], "Bearer ");
}

Response SignatureRequired(const Request& req, const RequestContext& ctx,
                           std::string_view message) {
  Response res = VndError(req, ctx, 401, "unauthorized", message);
  res.set(http::field::www_authenticate, std::string(ot1::kScheme));
  // links.md: how to sign (the canonical string, the date window, the server's clock).
  AddLink(res, {.href = std::string(kSignatureInformationPath),
                .rel = "related",
                .title = "signature-information"});
  return res;
}

Authenticated Authenticate(const AuthSpec& spec, Dialect dialect, const Services& s,
                           const Request& req, const RequestContext& ctx) {
  if (spec.refuse_authorization && !req[http::field::authorization].empty()) {
    return {.error = DialectError(dialect, req, ctx, 403, "error_access_tokens_forbidden",
                                  "Authorization header must not be set")};
  }
  const bool sent_authorization = !req[http::field::authorization].empty();
  if (spec.signature) {
    // Tokenize also takes a bearer (its scope); detokenize also answers anonymous callers.
    if (!spec.scope.empty() && HasBearer(req)) {
      return SessionOrBearer(spec, dialect, s, req, ctx);
    }
    if (spec.anonymous && !sent_authorization) {
      return {};
    }
    OTD_CHECK(dialect == Dialect::kOpenToken);
    return Signature(spec, s, req, ctx);
  }
  if (!spec.scope.empty()) {
    return SessionOrBearer(spec, dialect, s, req, ctx);
  }
  OTD_CHECK(spec.anonymous);
  return {};
}

}  // namespace otd::api
