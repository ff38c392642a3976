// Access code pairs (seeds/000) and tokens (seeds/001, doc/api/signed-requests.md).

#include <ctime>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "api/browser_policy.h"
#include "api/errors.h"
#include "api/links.h"
#include "api/ot1.h"
#include "api/request_helpers.h"
#include "api/routes.h"

namespace otd::api {

namespace {

using nlohmann::json;

std::string AccountPath(const std::string& id) { return "/account/" + id; }

Response Unsigned(const Request& req, const RequestContext& ctx) {
  Response res = VndError(req, ctx, 401, "unauthorized", "signature verification failed");
  res.set(http::field::www_authenticate, std::string(ot1::kScheme));
  // links.md: how to sign (the canonical string, the date window, the server's clock).
  AddLink(res, {.href = std::string(kSignatureInformationPath), .rel = "related",
                .title = "signature-information"});
  return res;
}

// Parses a query string of `name=value` pairs; only `allowed` names, each at most once.
std::optional<std::map<std::string, std::string>> ParseQuery(std::string_view q,
                                                             std::initializer_list<std::string_view> allowed) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string name(pair.substr(0, eq));
    std::string value(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end() || out.count(name) > 0) {
      return std::nullopt;
    }
    out[name] = value;
  }
  return out;
}

// Parses an ISO 8601 UTC date "YYYY-MM-DDTHH:MM:SSZ" (the schema's date-string, UTC only).
std::optional<int64_t> ParseIsoDate(std::string_view v) { 
  auto r = ot1::ParseOt1Date(v);
  if (!r.ok()) {
    return std::nullopt;
  }
  return *r;
}

bool IsPrintableHeaderValue(std::string_view v) {
  if (v.empty() || v.size() > 256) {
    return false;
  }
  for (unsigned char c : v) {
    if (c < 0x20 || c >= 0x7f) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<Response> VerifySignature(const Services& s, const Request& req, const RequestContext& ctx,
                                        const std::string& account_id) {
  // The reasons are fixed texts (api/ot1.cc): never the secret, the signature or a header value.
  auto reject = [&](std::string_view reason) {
    s.log.Info("signature_rejected", {{"request_id", ctx.request_id}});
    s.log.Debug("signature_rejected_reason", {{"request_id", ctx.request_id}, {"reason", reason}});
    return Unsigned(req, ctx);
  };
  int count = 0;
  std::string_view auth_value;
  for (const auto& f : req) {
    if (f.name() == http::field::authorization) {
      ++count;
      auth_value = f.value();
    }
  }
  if (count != 1) {
    return reject(count == 0 ? "no Authorization header" : "several Authorization headers");
  }
  auto auth = ot1::ParseAuthorization(auth_value);
  if (!auth.ok()) {
    return reject(auth.status().message());
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
  if (Status w = ot1::CheckDateWindow(*date, s.clock.NowSeconds(), s.signature_past_seconds,
                                      s.signature_future_seconds);
      !w.ok()) {
    return reject(w.message());
  }
  Status v = s.access_codes.Verify(account_id, auth->access_code,
                                   canonical->Reveal(SecretAccess::Grant()), auth->signature);
  if (v.code() == Code::kUnauthenticated) {
    return reject("access code or signature");
  }
  if (!v.ok()) {
    return VndErrorFromStatus(req, ctx, v);
  }
  return std::nullopt;
}

void RegisterTokenRoutes(Router& router, const Services& s) {
  // --- access code pairs (login cookie, or a bearer with the accessCodes scopes) ---
  router.Add(http::verb::post, "/account/{id}/accessCode", [&s](const Request& req, RequestContext& ctx) {
    const std::string id = ctx.params["id"];
    if (auto err = RequireScope(s, req, ctx, "accessCodes.create")) {
      return std::move(*err);
    }
    std::string description;
    if (!req.body().empty() || !req[http::field::content_type].empty()) {
      JsonBody body = ReadJsonBody(req, ctx, s.schemas, "account/access-code-request.json", s.limits);
      if (body.error) {
        return std::move(*body.error);
      }
      if (body.doc->contains("description")) {
        description = (*body.doc)["description"];
        if (description.size() > 256) {
          return VndError(req, ctx, 400, "bad-request", "/description: longer than 256 characters");
        }
      }
    }
    auto created = s.access_codes.Create(id, description);
    if (!created.ok()) {
      return VndErrorFromStatus(req, ctx, created.status());
    }
    // The secret is shown this once; the reply is built without reallocation copies.
    Response res = JsonResponse(
        req, 201,
        ConcatExact({R"({"code":")", created->code, R"(","expires":")", IsoUtc(created->expires_at, true),
                     R"(","secret":")", created->secret.RevealString(SecretAccess::Grant()), R"("})"}),
        "application/json");
    const std::string self = AccountPath(id) + "/accessCode/" + created->code;
    AddStandardLinks(res, self);
    AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
    res.set(http::field::location, self);
    return res;
  });

  router.Add(http::verb::get, "/account/{id}/accessCode", [&s](const Request& req, RequestContext& ctx) {
    const std::string id = ctx.params["id"];
    if (auto err = RequireScope(s, req, ctx, "accessCodes.read")) {
      return std::move(*err);
    }
    auto list = s.access_codes.List(id);
    if (!list.ok()) {
      return VndErrorFromStatus(req, ctx, list.status());
    }
    json items = json::array();
    for (const auto& i : *list) {
      items.push_back({{"code", i.code}, {"description", i.description},
                       {"created", IsoUtc(i.created_at, true)}, {"expires", IsoUtc(i.expires_at, true)},
                       {"href", AccountPath(id) + "/accessCode/" + i.code}});
    }
    Response res = JsonResponse(req, 200, json{{"items", items}, {"count", list->size()}}.dump(),
                                "application/json");
    AddStandardLinks(res, AccountPath(id) + "/accessCode");
    AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
    // Each item carries its own `href`: one Link header per pair (up to 100) would exceed the
    // header limits of common clients.
    return res;
  });

  router.Add(http::verb::delete_, "/account/{id}/accessCode/{code}", [&s](const Request& req, RequestContext& ctx) {
    const std::string id = ctx.params["id"];
    if (auto err = RequireScope(s, req, ctx, "accessCodes.delete")) {
      return std::move(*err);
    }
    Status st = s.access_codes.Revoke(id, ctx.params["code"]);
    if (!st.ok()) {
      return VndErrorFromStatus(req, ctx, st);
    }
    Response res{http::status::no_content, req.version()};
    AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
    AddLink(res, {.href = AccountPath(id) + "/accessCode", .rel = "up", .title = "account-accessCode"});
    return res;
  });

  // --- tokens (OT1-signed; public tokens readable without a signature) ---
  // Tokenize: OT1-signed, or a bearer with tokens.create (tokenize only: a bearer never reads
  // token data back, GET and DELETE below stay OT1-only).
  router.Add(http::verb::post, "/account/{id}/token", [&s](const Request& req, RequestContext& ctx) {
    const std::string id = ctx.params["id"];
    if (HasBearer(req)) {
      if (auto err = RequireScope(s, req, ctx, "tokens.create")) {
        return std::move(*err);
      }
    } else if (auto err = VerifySignature(s, req, ctx, id)) {
      return std::move(*err);
    }
    auto query = ParseQuery(ctx.query, {"public", "expires"});
    if (!query) {
      return VndError(req, ctx, 400, "bad-request", "unknown or repeated query parameter");
    }
    bool is_public = false;
    if (auto it = query->find("public"); it != query->end()) {
      if (it->second != "true" && it->second != "false") {
        return VndError(req, ctx, 400, "bad-request", "public: must be true or false");
      }
      is_public = it->second == "true";
    }
    if (is_public && HasBearer(req)) {
      // A public token is readable by anyone: only a signed request may create one.
      return VndError(req, ctx, 403, "forbidden", "public tokens need a signed request");
    }
    int64_t expires = 0;
    if (auto it = query->find("expires"); it != query->end()) {
      auto t = ParseIsoDate(it->second);
      if (!t) {
        return VndError(req, ctx, 400, "bad-request", "expires: must be a date like 2030-01-31T12:00:00Z");
      }
      expires = *t;
    }
    std::string_view content_type = req[http::field::content_type];
    if (!IsPrintableHeaderValue(content_type)) {
      return VndError(req, ctx, 400, "bad-request", "Content-Type: must be a printable value of at most 256 bytes");
    }
    auto token = s.tokens.Prepare(id, content_type, AsBytes(req.body()), is_public, expires);
    if (!token.ok()) {
      return VndErrorFromStatus(req, ctx, token.status());
    }
    const std::string self = AccountPath(id) + "/token/" + token->id;
    Response res{http::status::created, req.version()};
    AddStandardLinks(res, self);
    AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
    res.set(http::field::location, self);
    // 201 only once the record is durable; the worker does not wait for the commit.
    auto prepared = std::make_shared<service::PreparedToken>(std::move(*token));
    ctx.deferred = Deferred{
        .start = [&s, prepared](std::function<void(Status)> done) {
          s.tokens.Commit(std::move(*prepared), std::move(done));
        },
        .finish = [&req, &ctx](Status st, Response created) {
          return st.ok() ? std::move(created) : VndErrorFromStatus(req, ctx, st);
        }};
    return res;
  });

  router.Add(http::verb::get, "/account/{id}/token/{tokenId}", [&s](const Request& req, RequestContext& ctx) {
    const std::string id = ctx.params["id"];
    const bool is_signed = !req[http::field::authorization].empty();
    if (is_signed) {
      if (auto err = VerifySignature(s, req, ctx, id)) {
        return std::move(*err);
      }
    }
    auto token = s.tokens.Get(id, ctx.params["tokenId"]);
    if (!token.ok()) {
      if (!is_signed && token.status().code() != Code::kUnavailable) {
        return Unsigned(req, ctx);  // unsigned: unknown and private look the same
      }
      return VndErrorFromStatus(req, ctx, token.status());
    }
    if (!is_signed && !token->is_public) {
      return Unsigned(req, ctx);
    }
    s.log.Info("detokenized", {{"request_id", ctx.request_id}, {"public", token->is_public}});
    const std::string self = AccountPath(id) + "/token/" + ctx.params["tokenId"];
    if (req[http::field::if_none_match] == token->etag) {
      Response res{http::status::not_modified, req.version()};
      res.set(http::field::etag, token->etag);
      AddStandardLinks(res, self);
      return res;
    }
    Response res{http::status::ok, req.version()};
    res.set(http::field::content_type, token->content_type);
    AddPayloadDisposition(res, token->content_type);
    res.set(http::field::etag, token->etag);
    res.body().assign(token->payload.RevealString(SecretAccess::Grant()));
    res.prepare_payload();
    AddStandardLinks(res, self);
    AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
    return res;
  });

  router.Add(http::verb::delete_, "/account/{id}/token/{tokenId}", [&s](const Request& req, RequestContext& ctx) {
    const std::string id = ctx.params["id"];
    if (auto err = VerifySignature(s, req, ctx, id)) {
      return std::move(*err);
    }
    Status st = s.tokens.Delete(id, ctx.params["tokenId"]);
    if (!st.ok()) {
      return VndErrorFromStatus(req, ctx, st);
    }
    Response res{http::status::no_content, req.version()};
    AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
    AddLink(res, {.href = AccountPath(id), .rel = "up", .title = "account"});
    return res;
  });
}

}  // namespace otd::api
