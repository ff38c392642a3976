// The API flows of Client: registration, login, access codes, tokens, access tokens, e-mail flow.
#include <cctype>
#include <regex>
#include <string>
#include <string_view>

#include "opentoken/client.h"

namespace opentoken {
namespace {

using nlohmann::json;

Error Unexpected(std::string what) {
  return Error{Error::Kind::kTransport, 0, "unexpected reply: " + std::move(what), {}};
}

Error BadInput(std::string what) { return Error{Error::Kind::kUsage, 0, std::move(what), {}}; }

// Ids the API hands out are URL-safe; refuse anything else before it reaches a path.
bool IsId(std::string_view s) {
  if (s.empty() || s.size() > 128) {
    return false;
  }
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::string LastSegment(std::string_view href) {
  const size_t slash = href.rfind('/');
  return std::string(slash == std::string_view::npos ? href : href.substr(slash + 1));
}

Result<json> ParseJson(const Response& r) {
  json doc = json::parse(r.body, nullptr, false);
  if (doc.is_discarded()) {
    return Unexpected("HTTP " + std::to_string(r.status) + " without a JSON body");
  }
  return doc;
}

std::string AccountPath(std::string_view account) { return "/account/" + std::string(account); }

// Undoes quoted-printable soft line breaks and =XX escapes (enough to find a link).
std::string DecodeQuotedPrintable(std::string_view in) {
  std::string out;
  auto hex = [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0 ? c - '0'
                                                            : (std::toupper(c) - 'A' + 10);
  };
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '=' && i + 1 < in.size() && (in[i + 1] == '\n' || in[i + 1] == '\r')) {
      i += (in[i + 1] == '\r' && i + 2 < in.size() && in[i + 2] == '\n') ? 2 : 1;
      continue;
    }
    if (in[i] == '=' && i + 2 < in.size() &&
        std::isxdigit(static_cast<unsigned char>(in[i + 1])) != 0 &&
        std::isxdigit(static_cast<unsigned char>(in[i + 2])) != 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
      continue;
    }
    out.push_back(in[i]);
  }
  return out;
}

}  // namespace

std::string FindConfirmationPath(std::string_view mail) {
  static const std::regex kLink(R"(/registration/[A-Za-z0-9_-]+/confirm/[A-Za-z0-9_-]+)");
  const std::string decoded = DecodeQuotedPrintable(mail);
  std::smatch m;
  if (std::regex_search(decoded, m, kLink)) {
    return m.str(0);
  }
  return {};
}

Result<Response> Client::SendSigned(std::string method, std::string target,
                                    std::string content_type, std::string body,
                                    const AccessCodePair& pair) const {
  Headers base = {{"Host", HostHeader()}, {"Content-Type", std::move(content_type)}};
  Result<Headers> headers = Sign(method, target, base, body, pair.code, pair.secret);
  if (!headers.ok()) {
    Wipe(body);
    return headers.error();
  }
  Request req{std::move(method), std::move(target), std::move(*headers), std::move(body)};
  return Send(std::move(req), /*authenticate=*/false);
}

Result<json> Client::JsonCall(std::string method, std::string target, const json* body,
                              int want_status, bool authenticate) const {
  Request req{std::move(method), std::move(target), {}, {}};
  if (body != nullptr) {
    req.headers.emplace_back("Content-Type", "application/json");
    req.body = body->dump();
  }
  Result<Response> r = Send(std::move(req), authenticate);
  if (!r.ok()) {
    return r.error();
  }
  if (r->status != want_status) {
    if (r->status >= 200 && r->status < 300) {
      return Unexpected("HTTP " + std::to_string(r->status) + ", expected " +
                        std::to_string(want_status));
    }
    return HttpError(*r);
  }
  if (r->body.empty()) {
    return json::object();
  }
  return ParseJson(*r);
}

Result<Registration> Client::Register(std::string_view email) const {
  Result<Response> root = Send(Request{"GET", "/", {}, {}}, false);
  if (!root.ok()) {
    return root.error();
  }
  std::string href = root->FindLink("service", "registration-register");
  if (href.empty()) {
    href = "/registration";
  }
  const json body = {{"email", email}};
  Request req{"POST", href, {{"Content-Type", "application/json"}}, body.dump()};
  Result<Response> r = Send(std::move(req), false);
  if (!r.ok()) {
    return r.error();
  }
  if (r->status != 200 && r->status != 201) {
    return HttpError(*r);
  }
  Result<json> doc = ParseJson(*r);
  if (!doc.ok()) {
    return doc.error();
  }
  Registration reg;
  reg.href = r->FindLink("edit", "registration-secure");
  if (reg.href.empty()) {
    reg.href = r->Get("Location");
  }
  const json& d = *doc;
  if (reg.href.rfind("/registration/", 0) != 0 || !d.contains("mfa") ||
      !d["mfa"].contains("totp") || !d.contains("passwordHashConfig")) {
    return Unexpected("registration reply without its link, TOTP key or hash parameters");
  }
  const json& totp = d["mfa"]["totp"];
  reg.key_base32 = totp.value("keyBase32", "");
  reg.key_hex = totp.value("keyHex", "");
  reg.key_uri = totp.value("keyUri", "");
  reg.password_hash_config = d["passwordHashConfig"];
  if (reg.key_hex.empty()) {
    return Unexpected("registration reply without mfa.totp.keyHex");
  }
  return reg;
}

Status Client::Secure(const Registration& reg, const Secret& password, std::int64_t now) const {
  Result<Secret> hash = PasswordHash(reg.password_hash_config, password);
  if (!hash.ok()) {
    return hash.error();
  }
  Result<std::string> key = HexDecode(reg.key_hex);
  if (!key.ok()) {
    return Unexpected("mfa.totp.keyHex is not hex");
  }
  json body = {
      {"mfa", {{"totp", {{"current", Totp(*key, now)}, {"previous", Totp(*key, now, -1)}}}}},
      {"passwordHash", hash->Reveal()}};
  Wipe(*key);
  Request req{"POST", reg.href, {{"Content-Type", "application/json"}}, body.dump()};
  body["passwordHash"] = "";
  Result<Response> r = Send(std::move(req), false);
  if (!r.ok()) {
    return r.error();
  }
  if (r->status != 204 && r->status != 200) {
    return HttpError(*r);
  }
  return Ok();
}

Result<std::string> Client::ConfirmPath(std::string_view link_or_code,
                                        std::string_view registration_href) {
  const size_t at = link_or_code.find("/registration/");
  if (at != std::string_view::npos) {
    std::string path(link_or_code.substr(at));
    while (!path.empty() && (path.back() == '\r' || path.back() == '\n' || path.back() == ' ')) {
      path.pop_back();
    }
    const std::string_view rest = std::string_view(path).substr(14);
    const size_t mid = rest.find("/confirm/");
    if (mid == std::string_view::npos || !IsId(rest.substr(0, mid)) ||
        !IsId(rest.substr(mid + 9))) {
      return BadInput("not a confirmation link: expected .../registration/ID/confirm/CODE");
    }
    return path;
  }
  if (!IsId(link_or_code)) {
    return BadInput("not a confirmation link or code");
  }
  if (registration_href.empty()) {
    return BadInput(
        "a bare code needs the registration it belongs to (register first from this "
        "profile, or give the whole link)");
  }
  return std::string(registration_href) + "/confirm/" + std::string(link_or_code);
}

Result<std::string> Client::Confirm(std::string_view confirm_path) const {
  Result<json> doc = JsonCall("GET", std::string(confirm_path), nullptr, 201, false);
  if (!doc.ok()) {
    return doc.error();
  }
  if (!doc->contains("accountId") || !(*doc)["accountId"].is_string()) {
    return Unexpected("confirmation without accountId");
  }
  return (*doc)["accountId"].get<std::string>();
}

Status Client::Login(std::string_view account, const Secret& password, std::string_view totp_code) {
  if (!IsId(account)) {
    return BadInput("not an account id");
  }
  const std::string href = AccountPath(account) + "/login";
  Result<json> challenge = JsonCall("GET", href, nullptr, 200, false);
  if (!challenge.ok()) {
    return challenge.error();
  }
  if (!challenge->contains("passwordHashConfig") || !challenge->contains("challengeHashConfig")) {
    return Unexpected("login challenge without its hash parameters");
  }
  Result<Secret> pw_hash = PasswordHash((*challenge)["passwordHashConfig"], password);
  if (!pw_hash.ok()) {
    return pw_hash.error();
  }
  Result<Secret> ch = ChallengeHash(*pw_hash, (*challenge)["challengeHashConfig"]);
  if (!ch.ok()) {
    return ch.error();
  }
  json body = {{"challengeHash", ch->Reveal()}, {"mfa", {{"totp", totp_code}}}};
  Request req{"POST", href, {{"Content-Type", "application/json"}}, body.dump()};
  Result<Response> r = Send(std::move(req), false);
  if (!r.ok()) {
    return r.error();
  }
  if (r->status != 200) {
    return HttpError(*r);
  }
  std::string set_cookie = r->Get("Set-Cookie");
  if (set_cookie.rfind("login=", 0) != 0) {
    return Unexpected("login without the session cookie");
  }
  const size_t end = set_cookie.find(';');
  SetCookie(Secret(set_cookie.substr(6, end == std::string::npos ? std::string::npos : end - 6)));
  Wipe(set_cookie);
  return Ok();
}

Status Client::Logout(std::string_view account) const {
  if (!IsId(account)) {
    return BadInput("not an account id");
  }
  Result<Response> r = Send(Request{"POST", AccountPath(account) + "/logout", {}, {}});
  if (!r.ok()) {
    return r.error();
  }
  if (r->status != 204 && r->status != 200) {
    return HttpError(*r);
  }
  return Ok();
}

Result<json> Client::Account(std::string_view account) const {
  if (!IsId(account)) {
    return BadInput("not an account id");
  }
  return JsonCall("GET", AccountPath(account), nullptr, 200);
}

Result<AccessCodePair> Client::CreateAccessCode(std::string_view account,
                                                std::string_view description) const {
  if (!IsId(account)) {
    return BadInput("not an account id");
  }
  json body = json::object();
  if (!description.empty()) {
    body["description"] = description;
  }
  Result<json> doc = JsonCall("POST", AccountPath(account) + "/accessCode", &body, 201);
  if (!doc.ok()) {
    return doc.error();
  }
  if (!doc->contains("code") || !doc->contains("secret") || !(*doc)["secret"].is_string()) {
    return Unexpected("access code reply without code and secret");
  }
  AccessCodePair pair{(*doc)["code"].get<std::string>(),
                      Secret((*doc)["secret"].get<std::string>())};
  std::string& s = (*doc)["secret"].get_ref<std::string&>();
  Wipe(s);
  return pair;
}

Result<json> Client::ListAccessCodes(std::string_view account) const {
  if (!IsId(account)) {
    return BadInput("not an account id");
  }
  return JsonCall("GET", AccountPath(account) + "/accessCode", nullptr, 200);
}

Status Client::RevokeAccessCode(std::string_view account, std::string_view code) const {
  if (!IsId(account) || !IsId(code)) {
    return BadInput("not an account id or access code");
  }
  Result<json> r =
      JsonCall("DELETE", AccountPath(account) + "/accessCode/" + std::string(code), nullptr, 204);
  if (!r.ok()) {
    return r.error();
  }
  return Ok();
}

Result<std::string> Client::Tokenize(std::string_view account, const AccessCodePair& pair,
                                     std::string_view data, const TokenOptions& options) const {
  if (!IsId(account)) {
    return BadInput("not an account id");
  }
  std::string target = AccountPath(account) + "/token";
  std::string sep = "?";
  if (options.is_public) {
    target += "?public=true";
    sep = "&";
  }
  if (!options.expires.empty()) {
    target += sep + "expires=" + options.expires;
  }
  Result<Response> r = SendSigned("POST", target, options.content_type, std::string(data), pair);
  if (!r.ok()) {
    return r.error();
  }
  if (r->status != 201) {
    return HttpError(*r);
  }
  const std::string location = r->Get("Location");
  if (location.find("/token/") == std::string::npos) {
    return Unexpected("tokenize reply without a token Location");
  }
  return LastSegment(location);
}

Result<Detokenized> Client::Detokenize(std::string_view account, const AccessCodePair& pair,
                                       std::string_view token_id) const {
  if (!IsId(account) || !IsId(token_id)) {
    return BadInput("not an account or token id");
  }
  // A GET signs Content-Type too (the scheme makes it mandatory); its value does not matter.
  Result<Response> r = SendSigned("GET", AccountPath(account) + "/token/" + std::string(token_id),
                                  "application/octet-stream", {}, pair);
  if (!r.ok()) {
    return r.error();
  }
  if (r->status != 200) {
    return HttpError(*r);
  }
  Detokenized out{Secret(std::move(r->body)), r->Get("Content-Type")};
  return out;
}

Status Client::DeleteToken(std::string_view account, const AccessCodePair& pair,
                           std::string_view token_id) const {
  if (!IsId(account) || !IsId(token_id)) {
    return BadInput("not an account or token id");
  }
  Result<Response> r =
      SendSigned("DELETE", AccountPath(account) + "/token/" + std::string(token_id),
                 "application/octet-stream", {}, pair);
  if (!r.ok()) {
    return r.error();
  }
  if (r->status != 204) {
    return HttpError(*r);
  }
  return Ok();
}

Result<json> Client::CreateAccessToken(const json& body) const {
  return JsonCall("POST", "/access-tokens", &body, 201);
}

Result<json> Client::ListAccessTokens() const {
  return JsonCall("GET", "/access-tokens", nullptr, 200);
}

Result<json> Client::GetAccessToken(std::string_view id) const {
  if (!IsId(id)) {
    return BadInput("not an access token id");
  }
  return JsonCall("GET", "/access-tokens/" + std::string(id), nullptr, 200);
}

Result<json> Client::UpdateAccessToken(std::string_view id, const json& body) const {
  if (!IsId(id)) {
    return BadInput("not an access token id");
  }
  return JsonCall("PATCH", "/access-tokens/" + std::string(id), &body, 200);
}

Status Client::DeleteAccessToken(std::string_view id) const {
  if (!IsId(id)) {
    return BadInput("not an access token id");
  }
  Result<json> r = JsonCall("DELETE", "/access-tokens/" + std::string(id), nullptr, 200);
  if (!r.ok()) {
    return r.error();
  }
  return Ok();
}

namespace {
json EmailBody(std::string_view email, const Secret* code) {
  json attributes = {{"email_address", email}};
  if (code != nullptr) {
    attributes["code"] = code->Reveal();
  }
  return {{"data", {{"type", "access_tokens"}, {"attributes", attributes}}}};
}
}  // namespace

Status Client::RequestEmailedToken(std::string_view email) const {
  const json body = EmailBody(email, nullptr);
  Result<json> r = JsonCall("POST", "/v1/access_tokens", &body, 201, false);
  if (!r.ok()) {
    return r.error();
  }
  return Ok();
}

Status Client::RequestEmailedTokenDeletion(std::string_view email) const {
  const json body = EmailBody(email, nullptr);
  Result<json> r = JsonCall("POST", "/v1/access_tokens/delete", &body, 201, false);
  if (!r.ok()) {
    return r.error();
  }
  return Ok();
}

Status Client::DeleteEmailedTokens(std::string_view email, const Secret& code) const {
  json body = EmailBody(email, &code);
  Result<json> r = JsonCall("DELETE", "/v1/access_tokens", &body, 204, false);
  body.clear();
  if (!r.ok()) {
    return r.error();
  }
  return Ok();
}

}  // namespace opentoken
