// Tokens (seeds/001, doc/api/signed-requests.md): tokenize (OT1-signed, or a bearer with
// tokens.create for private tokens), detokenize (OT1-signed; public tokens also without a
// signature), delete (OT1-signed).

#include <memory>

#include "api/auth.h"
#include "api/browser_policy.h"
#include "api/errors.h"
#include "api/links.h"
#include "api/routes.h"
#include "common/bytes.h"
#include "common/dates.h"

namespace otd::api {

namespace {

std::string AccountPath(const std::string& id) { return "/account/" + id; }

bool IsPrintableHeaderValue(std::string_view v) {
  if (v.empty() || v.size() > 256) {
    return false;
  }
  for (uint8_t c : AsBytes(v)) {
    if (c < 0x20 || c >= 0x7f) {
      return false;
    }
  }
  return true;
}

Reply Tokenize(Call& call) {
  const std::string& id = call.param("id");
  bool is_public = false;
  if (auto it = call.query.find("public"); it != call.query.end()) {
    if (it->second != "true" && it->second != "false") {
      return call.Error(400, "bad-request", "public: must be true or false");
    }
    is_public = it->second == "true";
  }
  if (is_public && call.caller && call.caller->bearer) {
    // A public token is readable by anyone: only a signed request may create one.
    return call.Error(403, "forbidden", "public tokens need a signed request");
  }
  int64_t expires = 0;
  if (auto it = call.query.find("expires"); it != call.query.end()) {
    auto t = ParseUtcSeconds(it->second);
    if (!t) {
      return call.Error(400, "bad-request", "expires: must be a date like 2030-01-31T12:00:00Z");
    }
    expires = *t;
  }
  std::string_view content_type = call.req[http::field::content_type];
  if (!IsPrintableHeaderValue(content_type)) {
    return call.Error(400, "bad-request",
                      "Content-Type: must be a printable value of at most 256 bytes");
  }
  auto token = call.s().tokens.Prepare(id, content_type, AsBytes(call.req.body()), is_public,
                                       expires, call.read_ahead ? &*call.read_ahead : nullptr);
  if (!token.ok()) {
    return call.Error(token.status());
  }
  const std::string self = AccountPath(id) + "/token/" + token->id;
  Response res{http::status::created, call.req.version()};
  AddStandardLinks(res, self);
  AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
  res.set(http::field::location, self);
  Reply reply(std::move(res));
  reply.object = token->id;
  // 201 only once the record is durable; the worker does not wait for the commit.
  auto prepared = std::make_shared<service::PreparedToken>(std::move(*token));
  service::Tokens& tokens = call.s().tokens;
  reply.write = DurableWrite{.start = [&tokens, prepared](std::function<void(Status)> done) {
    tokens.Commit(std::move(*prepared), std::move(done));
  }};
  return reply;
}

// The same for an unknown and a private token, so an unsigned GET cannot tell them apart.
constexpr std::string_view kUnsignedPrivateOrUnknown =
    "no Authorization header: this token is not public (or does not exist); sign the request "
    "(OT1-HMAC-SHA256-HEX)";

Reply Detokenize(Call& call) {
  const Services& s = call.s();
  const std::string& id = call.param("id");
  const std::string& token_id = call.param("tokenId");
  const bool is_signed = call.caller.has_value();
  auto token = s.tokens.Get(id, token_id, call.read_ahead ? &*call.read_ahead : nullptr);
  if (!token.ok()) {
    if (!is_signed && token.status().code() != Code::kUnavailable) {
      // Unsigned: unknown and private look alike.
      return SignatureRequired(call.req, call.ctx, kUnsignedPrivateOrUnknown);
    }
    return call.Error(token.status());
  }
  if (!is_signed && !token->is_public) {
    return SignatureRequired(call.req, call.ctx, kUnsignedPrivateOrUnknown);
  }
  s.log.Info("detokenized", {{"request_id", call.ctx.request_id}, {"public", token->is_public}});
  const std::string self = AccountPath(id) + "/token/" + token_id;
  if (call.req[http::field::if_none_match] == token->etag) {
    Response res{http::status::not_modified, call.req.version()};
    res.set(http::field::etag, token->etag);
    AddStandardLinks(res, self);
    return res;
  }
  Response res{http::status::ok, call.req.version()};
  res.set(http::field::content_type, token->content_type);
  AddPayloadDisposition(res, token->content_type);
  res.set(http::field::etag, token->etag);
  res.body().assign(token->payload.RevealString(SecretAccess::Grant()));
  res.prepare_payload();
  AddStandardLinks(res, self);
  AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
  return res;
}

Reply Delete(Call& call) {
  const std::string& id = call.param("id");
  if (Status st = call.s().tokens.Delete(id, call.param("tokenId")); !st.ok()) {
    return call.Error(st);
  }
  Response res{http::status::no_content, call.req.version()};
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
  return res;
}

}  // namespace

std::vector<RouteSpec> TokenRoutes(const Services&) {
  const Link create_link{.href = "/account/{accountId}/token{?public}",
                         .rel = "service",
                         .title = "account-token-create",
                         .profile = "/schema/account/token-create-request.json",
                         .templated = true};
  Link account_create_link = create_link;
  account_create_link.href = "/account/{id}/token{?public}";
  std::vector<RouteSpec> r;
  // A bearer tokenizes only (tokens.create); reading or deleting token data always takes a
  // signature (no scope detokenizes).
  r.push_back({.method = http::verb::post,
               .pattern = "/account/{id}/token",
               .auth = {.scope = "tokens.create", .signature = true, .read_ahead = true},
               .query = std::vector<std::string_view>{"public", "expires"},
               .body = {BodyKind::kRaw, {}},
               .audit = AuditSpec::Event("tokenize"),
               .links = {{.link = create_link},
                         {.where = Advertised::Where::kAccount, .link = account_create_link}},
               .handler = Tokenize});
  r.push_back({.method = http::verb::get,
               .pattern = "/account/{id}/token/{tokenId}",
               .auth = {.signature = true,
                        .anonymous = true,
                        .read_ahead = true,
                        .read_ahead_token = "tokenId"},
               .audit = AuditSpec::FailClosed("detokenize", "tokenId"),
               .handler = Detokenize});
  r.push_back({.method = http::verb::delete_,
               .pattern = "/account/{id}/token/{tokenId}",
               .auth = {.signature = true},
               .audit = AuditSpec::Event("token_deleted", "tokenId"),
               .handler = Delete});
  return r;
}

}  // namespace otd::api
