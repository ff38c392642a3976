#pragma once
// Access tokens (seeds/003 collection style, seeds/002 e-mail style; DESIGN §2,
// reference/access-tokens-spec.md §3): bearer credentials of one account for management, with a
// scope, a status and an expiration date. No scope lets a bearer detokenize.
//
// Token string: "otk_" + 43 base64url characters from RAND_priv_bytes (258 bits); the prefix lets
// secret scanners spot a leaked one. It is shown once (the 201 reply or the mail) and never
// stored: the store keeps only HMAC(index key, token), computed inside the PKCS#11 token.
//
// Storage (every key a keyed hash, every value sealed):
//  * access_tokens        HMAC(account)       sealed with the account's data key: every token of
//                         the account (id, name, scope, status, dates, source, lookup key). Expired
//                         entries are filtered on read and dropped on the next write.
//  * access_token_lookup  HMAC(token string)  sealed with the system key: account id and token id.
//                         Its TTL is the token's expiry, so the purge job sweeps expired tokens.
//  * mail_tokens          HMAC(e-mail)        sealed with the system key: a pending deletion code
//                         (SHA-256 of it), its expiry (TTL, 1 h) and the failed attempts.
//  * mail_requests        (service/mail_requests.h) the queued e-mail requests.
//
// E-mail surface (seeds/002): EmailToken and EmailDeletionCode only rate-limit and queue the
// request (the same work for every address, so the answer time tells nothing about accounts);
// HandleMailRequest does the work later on the queue's worker. E-mailed tokens live side by side,
// at most email_tokens_per_account unexpired ones per account; at the cap a request mints and
// mails nothing (logged). Only DeleteEmailToken, with the mailed code, revokes them (all of them).
//
// Scopes: a family ("accessTokens") grants all its verbs ("accessTokens.read", ...). A token can
// create tokens only within its own scopes and lifetime (subset rule), and change (Update) only
// tokens it could have created that way; a login session may grant and change anything. Delete
// has no subset rule: revoking cannot widen anyone's rights (docs/decisions.md).
//
// Errors: kInvalidArgument (bad scope, date, name; message safe to show), kPermissionDenied
// (subset rule), kNotFound (unknown id, or another account's), kUnauthenticated (a bearer that is
// unknown, expired, inactive or revoked: one message), kResourceExhausted (e-mail rate limit; see
// EmailRetryAfter), kUnavailable (token/store/mail).
// Thread safety: thread safe.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "mail/mail.h"
#include "service/mail_requests.h"
#include "service/rate_limiter.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

inline constexpr std::string_view kAccessTokenPrefix = "otk_";
inline constexpr size_t kAccessTokenRandomChars = 43;  // 258 bits

// Every scope a token may carry.
const std::vector<std::string>& KnownAccessTokenScopes();
// Whether `scopes` grants `needed` ("family.verb"): it holds the scope itself or its family.
bool ScopeAllows(const std::vector<std::string>& scopes, std::string_view needed);
// Whether `text` has the shape of a token string (checked before any lookup).
bool LooksLikeAccessToken(std::string_view text);

struct AccessTokensOptions {
  int64_t default_lifetime_seconds = 183 * 86'400;  // about six months, like access codes
  int64_t max_lifetime_seconds = 366 * 86'400;
  size_t max_per_account = 100;
  int64_t last_used_granularity_seconds = 60;
  // E-mail surface (/v1/access_tokens).
  std::vector<std::string> email_scope = {"account.read", "accessTokens.read",
                                          "accessTokens.delete"};
  int64_t email_lifetime_seconds = 183 * 86'400;
  size_t email_tokens_per_account = 5;  // unexpired e-mailed tokens side by side
  int64_t deletion_code_lifetime_seconds = 3600;
  uint32_t deletion_code_max_attempts = 5;
  // An address is forgotten only after a day without requests: waiting an hour must not buy a
  // fresh allowance to mail it again.
  RateLimitOptions address_rate_limit{.free_failures = 5,
                                      .base_delay_seconds = 60,
                                      .max_delay_seconds = 3600,
                                      .forget_after_seconds = 86'400};
  RateLimitOptions peer_rate_limit{.free_failures = 50,
                                   .base_delay_seconds = 60,
                                   .max_delay_seconds = 3600,
                                   .forget_after_seconds = 3600};
  // Keep the e-mail and deletion limiters' counts in the store as well (service/
  // shared_limits.h): for daemons sharing one database (storage.backend "postgresql").
  bool shared_limits = false;
};

struct AccessTokenInfo {
  std::string id;  // 24 lower-case hex characters
  std::string account_id;
  std::string name;
  std::string description;
  std::vector<std::string> scope;
  bool active = true;
  int64_t created_at = 0;
  int64_t updated_at = 0;
  int64_t expires_at = 0;
  int64_t last_used = 0;  // 0: never
  std::string source;     // "api" or "email"
};

struct NewAccessToken {
  AccessTokenInfo info;
  SecretBytes token;
};

struct AccessTokenSpec {
  std::string name;
  std::string description;
  std::vector<std::string> scope;
  bool active = true;
  int64_t expires_at = 0;  // 0: the default lifetime
};

class AccessTokens {
 public:
  AccessTokens(Vault& vault, store::Store& store, mail::Mailer& mailer,
               MailRequestQueue& mail_requests, const Clock& clock, Logger& log,
               AccessTokensOptions options);

  // `creator` is the bearer making the call, or nullptr for a login session.
  Result<NewAccessToken> Create(std::string_view account_id, const AccessTokenSpec& spec,
                                const AccessTokenInfo* creator);
  Result<std::vector<AccessTokenInfo>> List(std::string_view account_id);
  Result<AccessTokenInfo> Get(std::string_view account_id, std::string_view id);
  // `caller` is the bearer making the call, or nullptr for a login session. A bearer may change
  // only tokens within its own scope and lifetime (kPermissionDenied otherwise).
  Result<AccessTokenInfo> Update(std::string_view account_id, std::string_view id,
                                 const std::optional<std::string>& name, std::optional<bool> active,
                                 const AccessTokenInfo* caller);
  Status Delete(std::string_view account_id, std::string_view id);
  // The token's record if it is known, active and unexpired (kUnauthenticated otherwise).
  // Updates lastUsed at most once per last_used_granularity_seconds.
  Result<AccessTokenInfo> Authenticate(std::string_view token);

  // E-mail surface, the request path. Each counts the request for the address and the peer
  // (kResourceExhausted when over the limit) and queues it (kUnavailable when it cannot be
  // queued), whether or not `email` belongs to an account: same work, same answer.
  Status EmailToken(std::string_view email, std::string_view peer);
  Status EmailDeletionCode(std::string_view email, std::string_view peer);
  // The worker's handler (MailRequestHandler): for a confirmed account, mints the token (unless
  // the account is at its cap) or a deletion code, mails it, then commits it together with
  // `done`. Nothing is mailed for an unknown address. kUnavailable: retry later.
  Status HandleMailRequest(const MailRequest& request, store::Mutation done);
  // Revokes the address's e-mailed token with a valid code: kInvalidArgument otherwise (one
  // message for unknown address, no code, wrong, expired or exhausted code).
  Status DeleteEmailToken(std::string_view email, std::string_view code, std::string_view peer);
  // Seconds before the next e-mail request from this address/peer is allowed (0: now).
  int64_t EmailRetryAfter(std::string_view email, std::string_view peer);

  const AccessTokensOptions& options() const { return options_; }

 private:
  struct Collection;
  Result<Collection> Load(std::string_view account_id);
  Result<store::Mutation> Store(std::string_view account_id, const Collection& c);
  // A fresh id and token string for `info` (created/updated set to now); nothing stored.
  Result<NewAccessToken> NewToken(AccessTokenInfo info);
  // Stores the token and its lookup record, with `also` (if any) in the same batch. With
  // `email_cap` > 0, kResourceExhausted when the account already has that many unexpired
  // e-mailed tokens. kFailedPrecondition when `also` no longer applies.
  Status Commit(const NewAccessToken& t, std::optional<store::Mutation> also = std::nullopt,
                size_t email_cap = 0);
  Result<std::optional<std::string>> AccountForEmail(std::string_view email_lower);
  Status CheckEmailRate(std::string_view email_lower, std::string_view peer);
  Status RequestMail(MailRequestKind kind, std::string_view email, std::string_view peer);
  Status MailToken(const std::string& address, const std::string& account_id, store::Mutation done);
  Status MailDeletionCode(const std::string& address, const std::string& account_id,
                          store::Mutation done);
  // Applies `done` alone (a request that needs no other write).
  Status Finish(store::Mutation done);
  // Failed tries at one pending deletion code (`code_id`: its store key and hash), as counted by
  // this process; 0 once the code has expired.
  uint64_t CodeFailures(const std::string& code_id, int64_t now);
  void CountCodeFailure(const std::string& code_id, uint64_t count, int64_t expires, int64_t now);
  Status SendMail(std::string_view to, std::string subject, std::string text);
  void TouchLastUsed(std::string_view account_id, std::string_view id);

  Vault& vault_;
  store::Store& store_;
  mail::Mailer& mailer_;
  MailRequestQueue& mail_requests_;
  const Clock& clock_;
  Logger& log_;
  AccessTokensOptions options_;
  std::unique_ptr<SharedLimits> shared_limits_;  // null: counts in memory only
  StepLimiter address_limiter_;
  StepLimiter peer_limiter_;
  RateLimiter delete_peer_limiter_;
  static constexpr size_t kMaxCountedCodes = 10'000;
  std::mutex code_failures_mu_;
  std::unordered_map<std::string, std::pair<uint64_t, int64_t>> code_failures_;  // count, expiry
};

}  // namespace otd::service
