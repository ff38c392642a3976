#include "service/access_tokens.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "common/strict_json.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/random.h"
#include "service/email_index.h"
#include "service/fields.h"
#include "service/retry.h"
#include "service/tables.h"

namespace otd::service {

namespace {

using nlohmann::json;

constexpr std::string_view kCollections = tables::kAccessTokens;
constexpr std::string_view kLookup = tables::kAccessTokenLookup;
constexpr std::string_view kDeletionCodes = tables::kMailTokens;

enum : uint8_t {
  kTagCollection = 1,
  kTagAccountId = 2,
  kTagTokenId = 3,
  kTagCodeHash = 4,
  kTagExpiresAt = 5,
  kTagAttempts = 6,
};

constexpr std::string_view kSourceApi = "api";
constexpr std::string_view kSourceEmail = "email";
constexpr size_t kDeletionCodeChars = 32;  // 192 bits
constexpr std::string_view kContended = "this account's access tokens";

const Status& Denied() {
  static const Status s = Unauthenticated("invalid access token");
  return s;
}

// Every verb a scope grants (a family grants all of its verbs).
std::vector<std::string> Expand(std::string_view scope) {
  std::vector<std::string> out;
  for (const auto& s : KnownAccessTokenScopes()) {
    if (s == scope || (s.size() > scope.size() && s.compare(0, scope.size(), scope) == 0 &&
                       s[scope.size()] == '.')) {
      out.push_back(s);
    }
  }
  return out;
}

// The subset rule's scope half: `holder` has every verb that `scope` grants.
bool ScopeWithin(const std::vector<std::string>& scope, const AccessTokenInfo& holder) {
  for (const auto& s : scope) {
    for (const auto& verb : Expand(s)) {
      if (!ScopeAllows(holder.scope, verb)) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

const std::vector<std::string>& KnownAccessTokenScopes() {
  static const std::vector<std::string> kScopes = {"account",
                                                   "account.read",
                                                   "accessCodes",
                                                   "accessCodes.read",
                                                   "accessCodes.create",
                                                   "accessCodes.delete",
                                                   "accessTokens",
                                                   "accessTokens.read",
                                                   "accessTokens.create",
                                                   "accessTokens.update",
                                                   "accessTokens.delete",
                                                   "tokens",
                                                   "tokens.create"};
  return kScopes;
}

bool ScopeAllows(const std::vector<std::string>& scopes, std::string_view needed) {
  const std::string_view family = needed.substr(0, needed.find('.'));
  return std::any_of(scopes.begin(), scopes.end(),
                     [&](const std::string& s) { return s == needed || s == family; });
}

bool LooksLikeAccessToken(std::string_view text) {
  if (text.size() != kAccessTokenPrefix.size() + kAccessTokenRandomChars ||
      text.substr(0, kAccessTokenPrefix.size()) != kAccessTokenPrefix) {
    return false;
  }
  return std::all_of(
      text.begin() + static_cast<std::ptrdiff_t>(kAccessTokenPrefix.size()), text.end(),
      [](char c) { return crypto::kUrlSafeAlphabet.find(c) != std::string_view::npos; });
}

struct AccessTokens::Collection {
  struct Entry {
    AccessTokenInfo info;
    std::string lookup_hex;  // the store key of the token's lookup record
  };
  Bytes key;
  std::optional<Bytes> raw;
  std::vector<Entry> entries;

  std::string Encode() const {
    json list = json::array();
    for (const auto& e : entries) {
      const auto& i = e.info;
      list.push_back({{"id", i.id},
                      {"name", i.name},
                      {"description", i.description},
                      {"scope", i.scope},
                      {"active", i.active},
                      {"created", i.created_at},
                      {"updated", i.updated_at},
                      {"expires", i.expires_at},
                      {"lastUsed", i.last_used},
                      {"source", i.source},
                      {"lookup", e.lookup_hex}});
    }
    return list.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // The record authenticated, so a decoding failure is a broken invariant reported as kDataLoss.
  Status Decode(std::string_view account_id, const std::string& text) {
    auto parsed = ParseStrictJson(text, JsonLimits{.max_depth = 8, .max_string_bytes = 1 << 20});
    if (!parsed.ok() || !parsed->is_array()) {
      return DataLoss("access token collection is malformed");
    }
    try {
      for (const auto& j : *parsed) {
        Entry e;
        e.info.account_id = std::string(account_id);
        e.info.id = j.at("id").get<std::string>();
        e.info.name = j.at("name").get<std::string>();
        e.info.description = j.at("description").get<std::string>();
        e.info.scope = j.at("scope").get<std::vector<std::string>>();
        e.info.active = j.at("active").get<bool>();
        e.info.created_at = j.at("created").get<int64_t>();
        e.info.updated_at = j.at("updated").get<int64_t>();
        e.info.expires_at = j.at("expires").get<int64_t>();
        e.info.last_used = j.at("lastUsed").get<int64_t>();
        e.info.source = j.at("source").get<std::string>();
        e.lookup_hex = j.at("lookup").get<std::string>();
        entries.push_back(std::move(e));
      }
    } catch (const json::exception&) {
      return DataLoss("access token collection is malformed");
    }
    return Status::Ok();
  }

  Entry* Find(std::string_view id) {
    auto it = std::find_if(entries.begin(), entries.end(),
                           [&](const Entry& e) { return e.info.id == id; });
    return it == entries.end() ? nullptr : &*it;
  }
};

AccessTokens::AccessTokens(Vault& vault, store::Store& store, mail::Mailer& mailer,
                           MailRequestQueue& mail_requests, const Clock& clock, Logger& log,
                           AccessTokensOptions options)
    : vault_(vault),
      store_(store),
      mailer_(mailer),
      mail_requests_(mail_requests),
      clock_(clock),
      log_(log),
      options_(std::move(options)),
      shared_limits_(options_.shared_limits ? std::make_unique<SharedLimits>(
                                                  store, SharedLimits::KeyedHashes(vault.keys()))
                                            : nullptr),
      address_limiter_(clock, options_.address_rate_limit, shared_limits_.get(), "email-address"),
      peer_limiter_(clock, options_.peer_rate_limit, shared_limits_.get(), "email-peer"),
      delete_peer_limiter_(clock, options_.peer_rate_limit, shared_limits_.get(),
                           "email-delete-peer") {}

Result<AccessTokens::Collection> AccessTokens::Load(std::string_view account_id) {
  Collection c;
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kCollections, account_id, ""));
  c.key = std::move(found.key);
  c.raw = std::move(found.value);
  if (c.raw) {
    OTD_ASSIGN_OR_RETURN(SecretBytes plain,
                         vault_.sealer().Open(kCollections, account_id, "collection", *c.raw));
    OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(plain));
    OTD_ASSIGN_OR_RETURN(std::string text, r.Text(kTagCollection));
    OTD_RETURN_IF_ERROR(c.Decode(account_id, text));
  }
  return c;
}

Result<store::Mutation> AccessTokens::Store(std::string_view account_id, const Collection& c) {
  std::string text = c.Encode();
  SecretBytes plain = FieldWriter().Add(kTagCollection, text).Finish();
  OPENSSL_cleanse(text.data(), text.size());
  OTD_ASSIGN_OR_RETURN(Bytes sealed, vault_.sealer().Seal(kCollections, account_id, "collection",
                                                          plain.Reveal(SecretAccess::Grant())));
  store::Mutation m{.op = c.raw ? store::Op::kUpdate : store::Op::kInsert,
                    .table = std::string(kCollections),
                    .key = c.key,
                    .value = std::move(sealed)};
  if (c.raw) {
    m.expect = *c.raw;
  }
  return m;
}

namespace {

// The erase mutations of the lookup records of `entries`.
Status EraseLookups(const std::vector<std::string>& lookup_hex,
                    std::vector<store::Mutation>& batch) {
  for (const auto& h : lookup_hex) {
    OTD_ASSIGN_OR_RETURN(Bytes key, crypto::HexDecode(h));
    batch.push_back(
        {.op = store::Op::kErase, .table = std::string(kLookup), .key = std::move(key)});
  }
  return Status::Ok();
}

}  // namespace

Result<NewAccessToken> AccessTokens::Create(std::string_view account_id,
                                            const AccessTokenSpec& spec,
                                            const AccessTokenInfo* creator) {
  const int64_t now = clock_.NowSeconds();
  std::vector<std::string> scope;
  for (const auto& s : spec.scope) {
    const auto& known = KnownAccessTokenScopes();
    if (std::find(known.begin(), known.end(), s) == known.end()) {
      return InvalidArgument("scope: unknown scope");
    }
    if (std::find(scope.begin(), scope.end(), s) == scope.end()) {
      scope.push_back(s);
    }
  }
  int64_t expires = spec.expires_at;
  if (expires == 0) {
    expires = now + options_.default_lifetime_seconds;
    if (creator != nullptr) {
      expires = std::min(expires, creator->expires_at);
    }
  } else if (expires <= now) {
    return InvalidArgument("expirationDate: must be in the future");
  } else if (expires > now + options_.max_lifetime_seconds) {
    return InvalidArgument("expirationDate: further ahead than the maximum lifetime (" +
                           std::to_string(options_.max_lifetime_seconds) + " seconds)");
  }
  if (creator != nullptr) {
    if (!ScopeWithin(scope, *creator)) {
      return PermissionDenied("a token can only grant scopes it has itself");
    }
    if (expires > creator->expires_at) {
      return PermissionDenied("a token can only create tokens that expire no later than itself");
    }
  }

  AccessTokenInfo info;
  info.account_id = std::string(account_id);
  info.name = spec.name;
  info.description = spec.description;
  info.scope = std::move(scope);
  info.active = spec.active;
  info.expires_at = expires;
  info.source = std::string(kSourceApi);
  OTD_ASSIGN_OR_RETURN(NewAccessToken out, NewToken(std::move(info)));
  OTD_RETURN_IF_ERROR(Commit(out));
  log_.Info("access_token_created", {{"by", creator == nullptr ? "session" : "accessToken"}});
  return out;
}

Result<NewAccessToken> AccessTokens::NewToken(AccessTokenInfo info) {
  NewAccessToken out;
  Bytes id_bytes(12);
  OTD_RETURN_IF_ERROR(crypto::RandomBytes(id_bytes));
  info.id = crypto::HexEncode(id_bytes);
  info.created_at = clock_.NowSeconds();
  info.updated_at = info.created_at;
  out.info = std::move(info);
  OTD_ASSIGN_OR_RETURN(SecretBytes random, crypto::RandomUrlSafeSecret(kAccessTokenRandomChars));
  out.token = SecretBytes(kAccessTokenPrefix.size() + kAccessTokenRandomChars);
  auto dst = out.token.MutableReveal(SecretAccess::Grant());
  auto src = random.Reveal(SecretAccess::Grant());
  std::copy(kAccessTokenPrefix.begin(), kAccessTokenPrefix.end(), dst.begin());
  std::copy(src.begin(), src.end(),
            dst.begin() + static_cast<std::ptrdiff_t>(kAccessTokenPrefix.size()));
  return out;
}

Status AccessTokens::Commit(const NewAccessToken& t, std::optional<store::Mutation> also,
                            size_t email_cap) {
  const std::string& account_id = t.info.account_id;
  OTD_ASSIGN_OR_RETURN(
      Bytes lookup_key,
      vault_.keys().LookupKey(kLookup, "", t.token.RevealString(SecretAccess::Grant())));
  SecretBytes lookup_plain =
      FieldWriter().Add(kTagAccountId, account_id).Add(kTagTokenId, t.info.id).Finish();
  OTD_ASSIGN_OR_RETURN(
      Bytes sealed_lookup,
      vault_.sealer().SealSystem(kLookup, "lookup", lookup_plain.Reveal(SecretAccess::Grant())));
  return RetryOnConflict<Status>(kContended, [&]() -> Attempt<Status> {
    OTD_ASSIGN_OR_RETURN(Collection c, Load(account_id));
    const int64_t now = clock_.NowSeconds();
    std::vector<std::string> dropped;
    std::erase_if(c.entries, [&](const Collection::Entry& e) {
      bool drop = e.info.expires_at <= now;
      if (drop) {
        dropped.push_back(e.lookup_hex);
      }
      return drop;
    });
    if (c.entries.size() >= options_.max_per_account) {
      return InvalidArgument("this account has the maximum number of access tokens (" +
                             std::to_string(options_.max_per_account) + "); delete one first");
    }
    if (email_cap > 0 &&
        static_cast<size_t>(std::count_if(c.entries.begin(), c.entries.end(), [](const auto& e) {
          return e.info.source == kSourceEmail;
        })) >= email_cap) {
      return ResourceExhausted("this account has the maximum number of e-mailed access tokens");
    }
    c.entries.push_back({t.info, crypto::HexEncode(lookup_key)});
    std::vector<store::Mutation> batch;
    OTD_RETURN_IF_ERROR(EraseLookups(dropped, batch));
    batch.push_back({.op = store::Op::kInsert,
                     .table = std::string(kLookup),
                     .key = lookup_key,
                     .value = sealed_lookup,
                     .expires_at = t.info.expires_at});
    OTD_ASSIGN_OR_RETURN(store::Mutation m, Store(account_id, c));
    batch.push_back(std::move(m));
    if (also) {
      batch.push_back(*also);
    }
    Status s = store_.Apply(std::move(batch));
    if (!IsLostRace(s)) {
      return s;
    }
    if (also && also->expect) {
      // Was it `also` that no longer applies (then retrying cannot help)?
      OTD_ASSIGN_OR_RETURN(std::optional<Bytes> current, store_.Get(also->table, also->key));
      if (current != also->expect) {
        return FailedPrecondition("the batch's precondition no longer holds");
      }
    }
    return kRetry;
  });
}

Result<std::vector<AccessTokenInfo>> AccessTokens::List(std::string_view account_id) {
  OTD_ASSIGN_OR_RETURN(Collection c, Load(account_id));
  const int64_t now = clock_.NowSeconds();
  std::vector<AccessTokenInfo> out;
  for (auto& e : c.entries) {
    if (e.info.expires_at > now) {
      out.push_back(std::move(e.info));
    }
  }
  return out;
}

Result<AccessTokenInfo> AccessTokens::Get(std::string_view account_id, std::string_view id) {
  OTD_ASSIGN_OR_RETURN(Collection c, Load(account_id));
  Collection::Entry* e = c.Find(id);
  if (e == nullptr || e->info.expires_at <= clock_.NowSeconds()) {
    return NotFound("no such access token");
  }
  return std::move(e->info);
}

Result<AccessTokenInfo> AccessTokens::Update(std::string_view account_id, std::string_view id,
                                             const std::optional<std::string>& name,
                                             std::optional<bool> active,
                                             const AccessTokenInfo* caller) {
  return RetryOnConflict<Result<AccessTokenInfo>>(
      kContended, [&]() -> Attempt<Result<AccessTokenInfo>> {
        OTD_ASSIGN_OR_RETURN(Collection c, Load(account_id));
        const int64_t now = clock_.NowSeconds();
        Collection::Entry* e = c.Find(id);
        if (e == nullptr || e->info.expires_at <= now) {
          return NotFound("no such access token");
        }
        // The subset rule of Create: a bearer manages only tokens it could have created itself, so
        // it cannot re-activate (or rename) a wider or longer-lived token that was disabled.
        if (caller != nullptr) {
          if (!ScopeWithin(e->info.scope, *caller)) {
            return PermissionDenied("a token can only change tokens whose scopes it has itself");
          }
          if (e->info.expires_at > caller->expires_at) {
            return PermissionDenied(
                "a token can only change tokens that expire no later than itself");
          }
        }
        if (!name && !active) {
          return e->info;
        }
        if (name) {
          e->info.name = *name;
        }
        if (active) {
          e->info.active = *active;
        }
        e->info.updated_at = now;
        AccessTokenInfo result = e->info;
        OTD_ASSIGN_OR_RETURN(store::Mutation m, Store(account_id, c));
        std::vector<store::Mutation> batch;
        batch.push_back(std::move(m));
        Status s = store_.Apply(std::move(batch));
        if (IsLostRace(s)) {
          return kRetry;
        }
        if (!s.ok()) {
          return s;
        }
        log_.Info("access_token_updated");
        return result;
      });
}

Status AccessTokens::Delete(std::string_view account_id, std::string_view id) {
  return RetryOnConflict<Status>(kContended, [&]() -> Attempt<Status> {
    OTD_ASSIGN_OR_RETURN(Collection c, Load(account_id));
    Collection::Entry* e = c.Find(id);
    if (e == nullptr || e->info.expires_at <= clock_.NowSeconds()) {
      return NotFound("no such access token");
    }
    std::vector<store::Mutation> batch;
    OTD_RETURN_IF_ERROR(EraseLookups({e->lookup_hex}, batch));
    std::erase_if(c.entries, [&](const Collection::Entry& x) { return x.info.id == id; });
    OTD_ASSIGN_OR_RETURN(store::Mutation m, Store(account_id, c));
    batch.push_back(std::move(m));
    Status s = store_.Apply(std::move(batch));
    if (IsLostRace(s)) {
      return kRetry;
    }
    if (s.ok()) {
      log_.Info("access_token_deleted");
    }
    return s;
  });
}

Result<AccessTokenInfo> AccessTokens::Authenticate(std::string_view token) {
  if (!LooksLikeAccessToken(token)) {
    return Denied();
  }
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kLookup, "", token));
  const std::optional<Bytes>& value = found.value;
  if (!value) {
    return Denied();
  }
  auto plain = vault_.sealer().OpenSystem(kLookup, "lookup", *value);
  if (!plain.ok()) {
    return plain.status().code() == Code::kUnavailable ? plain.status() : Denied();
  }
  OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(*plain));
  OTD_ASSIGN_OR_RETURN(std::string account_id, r.Text(kTagAccountId));
  OTD_ASSIGN_OR_RETURN(std::string id, r.Text(kTagTokenId));
  auto c = Load(account_id);
  if (!c.ok()) {
    // The account's data key is gone (account deleted): its tokens are dead.
    return c.status().code() == Code::kUnavailable ? c.status() : Denied();
  }
  Collection::Entry* e = c->Find(id);
  const int64_t now = clock_.NowSeconds();
  if (e == nullptr || !e->info.active || e->info.expires_at <= now) {
    return Denied();
  }
  if (now - e->info.last_used >= options_.last_used_granularity_seconds) {
    // Coarse and best effort: one attempt; a concurrent writer simply wins.
    e->info.last_used = now;
    auto m = Store(account_id, *c);
    if (m.ok()) {
      std::vector<store::Mutation> batch;
      batch.push_back(std::move(m).value());
      (void)store_.Apply(std::move(batch));
    }
  }
  return std::move(e->info);
}

// --- e-mail surface ---------------------------------------------------------------------------

int64_t AccessTokens::EmailRetryAfter(std::string_view email, std::string_view peer) {
  const std::string lower = LowerAscii(email);
  auto digest = crypto::Sha256(AsBytes(lower));
  const int64_t by_address =
      digest.ok() ? address_limiter_.RetryAfter(crypto::HexEncode(*digest)) : 0;
  return std::max(by_address, peer_limiter_.RetryAfter(peer));
}

Status AccessTokens::CheckEmailRate(std::string_view email_lower, std::string_view peer) {
  // Every request counts (known address or not), so the limit reveals nothing.
  OTD_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(AsBytes(email_lower)));
  const std::string key = crypto::HexEncode(digest);
  if (Step({{&address_limiter_, key}, {&peer_limiter_, peer}}) > 0) {
    return ResourceExhausted("too many e-mail requests; wait before trying again");
  }
  return Status::Ok();
}

Result<std::optional<std::string>> AccessTokens::AccountForEmail(std::string_view email_lower) {
  return AccountIdForEmail(vault_, store_, email_lower);
}

Status AccessTokens::SendMail(std::string_view to, std::string subject, std::string text) {
  mail::Message m;
  m.to = std::string(to);
  m.subject = std::move(subject);
  m.text = std::move(text);
  Status sent = mailer_.Send(m);
  OPENSSL_cleanse(m.to.data(), m.to.size());
  OPENSSL_cleanse(m.text.data(), m.text.size());
  if (!sent.ok()) {
    log_.Error("access_token_mail_failed", {{"reason", sent.message()}});
    return Unavailable("cannot send the mail now; retry later");
  }
  return Status::Ok();
}

Status AccessTokens::RequestMail(MailRequestKind kind, std::string_view email,
                                 std::string_view peer) {
  // The same work for every address (issue 14 §2): nothing here looks the address up.
  std::string lower = LowerAscii(email);
  Status rate = CheckEmailRate(lower, peer);
  OPENSSL_cleanse(lower.data(), lower.size());
  OTD_RETURN_IF_ERROR(rate);
  Status queued = mail_requests_.Enqueue(kind, email);
  if (!queued.ok()) {
    log_.Error("access_token_mail_request_failed", {{"reason", queued.message()}});
    return Unavailable("cannot take the request now; retry later");
  }
  return Status::Ok();
}

Status AccessTokens::EmailToken(std::string_view email, std::string_view peer) {
  return RequestMail(MailRequestKind::kToken, email, peer);
}

Status AccessTokens::EmailDeletionCode(std::string_view email, std::string_view peer) {
  return RequestMail(MailRequestKind::kDeletionCode, email, peer);
}

Status AccessTokens::Finish(store::Mutation done) {
  std::vector<store::Mutation> batch;
  batch.push_back(std::move(done));
  return store_.Apply(std::move(batch));
}

Status AccessTokens::HandleMailRequest(const MailRequest& request, store::Mutation done) {
  std::string lower = LowerAscii(request.address);
  auto account = AccountForEmail(lower);
  OPENSSL_cleanse(lower.data(), lower.size());
  OTD_RETURN_IF_ERROR(account.status());
  if (!account->has_value()) {
    log_.Info("access_token_mail_skipped", {{"reason", "no_account"}});
    return Finish(std::move(done));
  }
  return request.kind == MailRequestKind::kToken
             ? MailToken(request.address, **account, std::move(done))
             : MailDeletionCode(request.address, **account, std::move(done));
}

Status AccessTokens::MailToken(const std::string& address, const std::string& account_id,
                               store::Mutation done) {
  const size_t cap = options_.email_tokens_per_account;
  auto skipped = [&](std::string_view reason) {
    log_.Info("access_token_mail_skipped", {{"reason", reason}});
    return Finish(std::move(done));
  };
  {
    auto loaded = Load(account_id);
    if (loaded.status().code() == Code::kNotFound) {
      return skipped("no_account");  // the account's data key is gone: it was deleted
    }
    OTD_ASSIGN_OR_RETURN(Collection c, std::move(loaded));
    const int64_t now = clock_.NowSeconds();
    size_t live = 0;
    size_t mailed = 0;
    for (const auto& e : c.entries) {
      if (e.info.expires_at > now) {
        ++live;
        mailed += e.info.source == kSourceEmail ? 1 : 0;
      }
    }
    if (mailed >= cap) {
      return skipped("email_token_cap");
    }
    if (live >= options_.max_per_account) {
      return skipped("account_token_limit");
    }
  }
  AccessTokenInfo info;
  info.account_id = account_id;
  info.name = "E-mail-issued token";
  info.scope = options_.email_scope;
  info.active = true;
  info.expires_at = clock_.NowSeconds() + options_.email_lifetime_seconds;
  info.source = std::string(kSourceEmail);
  OTD_ASSIGN_OR_RETURN(NewAccessToken t, NewToken(std::move(info)));
  // The token goes live first and is mailed after (issue 17: a recipient who reads the mail at
  // once must find the token valid; mailing first left a window of milliseconds in which the
  // mailed token was refused). A mail that fails revokes the token again and the request is
  // retried; the request is marked done only after the mail went out, so a crash in between
  // mails a second token at worst (bounded by the cap), never none.
  Status committed = Commit(t, std::nullopt, cap);
  if (committed.code() == Code::kResourceExhausted || committed.code() == Code::kInvalidArgument) {
    // A cap was reached since the check above (a concurrent request): nothing is mailed, and the
    // request is done.
    log_.Warn("access_token_mail_discarded", {{"reason", committed.message()}});
    return Finish(std::move(done));
  }
  if (!committed.ok()) {
    if (committed.code() != Code::kFailedPrecondition) {
      log_.Error("access_token_commit_failed", {{"reason", committed.message()}});
    }
    return committed;  // nothing was mailed; the request is retried
  }
  std::string text = "This is your opentokend access token:\r\n\r\n" +
                     std::string(t.token.RevealString(SecretAccess::Grant())) +
                     "\r\n\r\nSend it as `Authorization: Bearer <token>`. Tokens mailed to this "
                     "address before keep working: up to " +
                     std::to_string(cap) + " live side by side, and while there are " +
                     std::to_string(cap) +
                     " no new one is mailed.\r\nIf you did not ask for it, revoke the tokens "
                     "mailed to this address with POST /v1/access_tokens/delete.\r\n";
  if (Status sent = SendMail(address, "Your opentokend access token", std::move(text));
      !sent.ok()) {
    if (Status revoked = Delete(account_id, t.info.id); !revoked.ok()) {
      // Nobody knows the token (it was never mailed), and it expires with its lifetime.
      log_.Error("access_token_unmailed_revoke_failed", {{"reason", revoked.message()}});
    }
    return sent;
  }
  log_.Info("access_token_mailed");
  return Finish(std::move(done));
}

Status AccessTokens::MailDeletionCode(const std::string& address, const std::string& account_id,
                                      store::Mutation done) {
  std::string lower = LowerAscii(address);
  auto key = vault_.keys().LookupKey(kDeletionCodes, "", lower);
  OPENSSL_cleanse(lower.data(), lower.size());
  OTD_RETURN_IF_ERROR(key.status());
  OTD_ASSIGN_OR_RETURN(SecretBytes code, crypto::RandomUrlSafeSecret(kDeletionCodeChars));
  OTD_ASSIGN_OR_RETURN(Bytes code_hash, crypto::Sha256(code.Reveal(SecretAccess::Grant())));
  const int64_t expires = clock_.NowSeconds() + options_.deletion_code_lifetime_seconds;
  SecretBytes plain = FieldWriter()
                          .Add(kTagAccountId, account_id)
                          .Add(kTagCodeHash, ByteView(code_hash))
                          .AddU64(kTagExpiresAt, static_cast<uint64_t>(expires))
                          .AddU64(kTagAttempts, 0)
                          .Finish();
  OTD_ASSIGN_OR_RETURN(Bytes sealed,
                       vault_.sealer().SealSystem(kDeletionCodes, "deletion-code",
                                                  plain.Reveal(SecretAccess::Grant())));
  // Stored first and mailed after, like a token (a recipient must find the mailed code valid);
  // the request is marked done only once the mail went out, so a failed mail is retried (with a
  // new code that replaces this one).
  std::vector<store::Mutation> batch;
  // A new code replaces any pending one.
  batch.push_back({.op = store::Op::kPut,
                   .table = std::string(kDeletionCodes),
                   .key = *key,
                   .value = std::move(sealed),
                   .expires_at = expires});
  if (Status committed = store_.Apply(std::move(batch)); !committed.ok()) {
    if (committed.code() != Code::kFailedPrecondition) {
      log_.Error("access_token_commit_failed", {{"reason", committed.message()}});
    }
    return committed;  // nothing was mailed; the request is retried
  }
  std::string text =
      "Someone asked to revoke the access tokens mailed to this address.\r\n\r\n"
      "Deletion code (valid for one hour, single use):\r\n\r\n" +
      std::string(code.RevealString(SecretAccess::Grant())) +
      "\r\n\r\nSend it with DELETE /v1/access_tokens: it revokes every token mailed "
      "to this address (nothing else). If you did not ask for this, ignore this "
      "message: nothing changes without the code.\r\n";
  OTD_RETURN_IF_ERROR(SendMail(address, "Revoke your opentokend access token", std::move(text)));
  log_.Info("access_token_deletion_code_mailed");
  return Finish(std::move(done));
}

uint64_t AccessTokens::CodeFailures(const std::string& code_id, int64_t now) {
  std::lock_guard lock(code_failures_mu_);
  auto it = code_failures_.find(code_id);
  return it == code_failures_.end() || it->second.second <= now ? 0 : it->second.first;
}

void AccessTokens::CountCodeFailure(const std::string& code_id, uint64_t count, int64_t expires,
                                    int64_t now) {
  std::lock_guard lock(code_failures_mu_);
  if (code_failures_.size() >= kMaxCountedCodes) {
    std::erase_if(code_failures_, [now](const auto& e) { return e.second.second <= now; });
    if (code_failures_.size() >= kMaxCountedCodes) {
      code_failures_.clear();  // the records still hold their (possibly older) counts
    }
  }
  code_failures_[code_id] = {count, expires};
}

Status AccessTokens::DeleteEmailToken(std::string_view email, std::string_view code,
                                      std::string_view peer) {
  if (delete_peer_limiter_.RetryAfter(peer) > 0) {
    return ResourceExhausted("too many failed attempts; wait before trying again");
  }
  auto fail = [&]() -> Status {
    delete_peer_limiter_.RecordFailureAsync(peer);  // counted at once, committed in the background
    log_.Info("access_token_deletion_refused");
    return InvalidArgument("Invalid or expired code");
  };
  std::string lower = LowerAscii(email);
  auto found = vault_.keys().Find(kDeletionCodes, "", lower);
  OPENSSL_cleanse(lower.data(), lower.size());
  OTD_RETURN_IF_ERROR(found.status());
  // A code is pending only for an account's address, so every refusal costs the same token work
  // (one seal, one open) and waits for no disk, whether or not a code is pending (issue 14 §2):
  // a missing code is replaced by a sealed stand-in that matches nothing, and a failed try is
  // counted without waiting for its commit.
  const Bytes key = found->key;
  const bool pending = found->value.has_value();
  Bytes raw;
  if (pending) {
    raw = *found->value;
  } else {
    Bytes nothing(32);
    OTD_RETURN_IF_ERROR(crypto::RandomBytes(nothing));
    SecretBytes stand_in = FieldWriter()
                               .Add(kTagAccountId, "")
                               .Add(kTagCodeHash, ByteView(nothing))
                               .AddU64(kTagExpiresAt, 0)
                               .AddU64(kTagAttempts, 0)
                               .Finish();
    OTD_ASSIGN_OR_RETURN(raw, vault_.sealer().SealSystem(kDeletionCodes, "deletion-code",
                                                         stand_in.Reveal(SecretAccess::Grant())));
  }
  OTD_ASSIGN_OR_RETURN(SecretBytes plain,
                       vault_.sealer().OpenSystem(kDeletionCodes, "deletion-code", raw));
  OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(plain));
  OTD_ASSIGN_OR_RETURN(std::string account_id, r.Text(kTagAccountId));
  OTD_ASSIGN_OR_RETURN(std::string stored_hash, r.Text(kTagCodeHash));
  OTD_ASSIGN_OR_RETURN(uint64_t expires, r.U64(kTagExpiresAt));
  OTD_ASSIGN_OR_RETURN(uint64_t attempts, r.U64(kTagAttempts));
  OTD_ASSIGN_OR_RETURN(Bytes code_hash, crypto::Sha256(AsBytes(code)));
  const bool matches = ConstantTimeEquals(code_hash, AsBytes(stored_hash));
  if (!pending) {
    return fail();
  }
  const std::string code_id = std::string(AsString(key)) + stored_hash;  // this code, not the next
  const int64_t now = clock_.NowSeconds();
  const uint64_t tries = std::max(attempts, CodeFailures(code_id, now));
  const bool usable =
      static_cast<int64_t>(expires) > now && tries < options_.deletion_code_max_attempts;
  if (!usable || !matches) {
    // Count the try; the last allowed try (or a try on a dead code) destroys the code. The count
    // is kept here at once and written to the record without waiting (a write that loses a race
    // or a crash gives back a try at a 192-bit code, no more).
    const uint64_t counted = tries + 1;
    CountCodeFailure(code_id, counted, static_cast<int64_t>(expires), now);
    SecretBytes next = FieldWriter()
                           .Add(kTagAccountId, account_id)
                           .Add(kTagCodeHash, stored_hash)
                           .AddU64(kTagExpiresAt, expires)
                           .AddU64(kTagAttempts, counted)
                           .Finish();
    OTD_ASSIGN_OR_RETURN(Bytes sealed,
                         vault_.sealer().SealSystem(kDeletionCodes, "deletion-code",
                                                    next.Reveal(SecretAccess::Grant())));
    std::vector<store::Mutation> batch;
    if (!usable || counted >= options_.deletion_code_max_attempts) {
      batch.push_back({.op = store::Op::kDelete,
                       .table = std::string(kDeletionCodes),
                       .key = key,
                       .expect = raw});
    } else {
      batch.push_back({.op = store::Op::kUpdate,
                       .table = std::string(kDeletionCodes),
                       .key = key,
                       .value = std::move(sealed),
                       .expect = raw,
                       .expires_at = static_cast<int64_t>(expires)});
    }
    store_.ApplyAsync(std::move(batch), [](const Status&) {});
    return fail();
  }
  Bytes current = raw;  // the code record as last read
  return RetryOnConflict<Status>(kContended, [&]() -> Attempt<Status> {
    OTD_ASSIGN_OR_RETURN(Collection c, Load(account_id));
    std::vector<std::string> dropped;
    std::erase_if(c.entries, [&](const Collection::Entry& e) {
      bool drop = e.info.source == kSourceEmail;
      if (drop) {
        dropped.push_back(e.lookup_hex);
      }
      return drop;
    });
    std::vector<store::Mutation> batch;
    // Single use: the code record must still be the one we checked.
    batch.push_back({.op = store::Op::kDelete,
                     .table = std::string(kDeletionCodes),
                     .key = key,
                     .expect = current});
    OTD_RETURN_IF_ERROR(EraseLookups(dropped, batch));
    if (c.raw) {
      OTD_ASSIGN_OR_RETURN(store::Mutation m, Store(account_id, c));
      batch.push_back(std::move(m));
    }
    Status s = store_.Apply(std::move(batch));
    if (s.ok()) {
      std::lock_guard lock(code_failures_mu_);
      code_failures_.erase(code_id);
      log_.Info("access_token_mail_revoked");
      return s;
    }
    if (!IsLostRace(s)) {
      return s;
    }
    // The collection changed (retry), or the code record did: a wrong try counted meanwhile
    // (the same code, still usable: retry with it), or the code was used, replaced or destroyed
    // (then this try fails).
    OTD_ASSIGN_OR_RETURN(auto still, store_.Get(kDeletionCodes, key));
    if (!still) {
      return fail();
    }
    if (*still != current) {
      OTD_ASSIGN_OR_RETURN(SecretBytes now_plain,
                           vault_.sealer().OpenSystem(kDeletionCodes, "deletion-code", *still));
      OTD_ASSIGN_OR_RETURN(FieldReader n, FieldReader::Parse(now_plain));
      OTD_ASSIGN_OR_RETURN(std::string now_hash, n.Text(kTagCodeHash));
      OTD_ASSIGN_OR_RETURN(uint64_t now_expires, n.U64(kTagExpiresAt));
      OTD_ASSIGN_OR_RETURN(uint64_t now_attempts, n.U64(kTagAttempts));
      if (now_hash != stored_hash || static_cast<int64_t>(now_expires) <= clock_.NowSeconds() ||
          now_attempts >= options_.deletion_code_max_attempts) {
        return fail();
      }
      current = *still;
    }
    return kRetry;
  });
}

}  // namespace otd::service
