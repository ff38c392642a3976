#pragma once
// Accounts: registration with TOTP MFA and e-mail confirmation, login with a challenge, sessions
// (reference/opentoken/doc/api/registration.md, account.md, logout.md).
//
// Storage (DESIGN §4): every value is a sealed record; every store key is a keyed hash.
//  * registrations  HMAC(reg id)   sealed with the registration's own data key (owner "reg:<id>"):
//                   e-mail, password salt, TOTP seed, state, password hash, confirmation code hash.
//                   Record and key expire together (registration lifetime), so an abandoned
//                   registration is shredded by the purge job.
//  * accounts       HMAC(account)  sealed with the account's data key: e-mail, password salt and
//                   hash, TOTP seed, last accepted TOTP step.
//  * account_emails HMAC(e-mail)   sealed with the system key: the account id (lookups by e-mail).
//  * challenges     HMAC(account)  sealed with the system key: outstanding login challenges.
//  * sessions       HMAC(session)  sealed with the system key: account id and expiry.
// The server never sees the password: clients send PBKDF2(password) (the "password hash").
//
// The registration steps anyone can call (Register, SecureRegistration) pass the admission limits
// of service/registration_limits.h: rates per address and per peer, caps on pending
// registrations (global, per peer) and a reserve of the store's map they cannot use.
//
// Errors: kNotFound (unknown or expired registration/session), kInvalidArgument (bad codes, with
// a message safe to show), kUnauthenticated (login failed; never says which part),
// kResourceExhausted (login: rate limited, see LoginRetryAfter; registration steps: see there),
// kAlreadyExists (confirmation of an e-mail that already has an account), kUnavailable
// (token/store/mail).
//
// Thread safety: thread safe.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/log.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "mail/mail.h"
#include "service/rate_limiter.h"
#include "service/registration_limits.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

struct AccountsOptions {
  int64_t registration_lifetime_seconds = 86'400;
  int64_t challenge_lifetime_seconds = 300;
  int64_t session_lifetime_seconds = 600;
  std::string totp_issuer = "opentokend";
  std::string public_url = "https://127.0.0.1:8443";
  RateLimitOptions rate_limit;       // per account id
  RateLimitOptions peer_rate_limit;  // per peer (a proxy or a shared host carries many users)
  RegistrationLimitsOptions registration_limits;  // POST /registration and the secure step
  // Keep the login and registration limiters' counts in the store as well (service/
  // shared_limits.h): for daemons sharing one database (storage.backend "postgresql").
  bool shared_limits = false;
};

// The fixed password hashing parameters clients must use (registration.md).
inline constexpr int kPasswordIterations = 100'000;
inline constexpr int kPasswordDerivedLength = 48;
inline constexpr size_t kPasswordSaltChars = 128;
inline constexpr size_t kTotpSeedBytes = 20;  // RFC 4226 §4 recommends 160 bits for HMAC-SHA1
inline constexpr size_t kIdChars = 32;        // 192 bits, URL-safe

struct Registration {
  std::string id;
  std::string password_salt;
  SecretBytes email;
  SecretBytes totp_seed;
};

struct LoginChallenge {
  std::string challenge_salt;
  std::string password_salt;
};

struct Session {
  std::string id;
  std::string account_id;
  int64_t expires_at = 0;
};

class Accounts {
 public:
  Accounts(Vault& vault, store::Store& store, mail::Mailer& mailer, const Clock& clock, Logger& log,
           AccountsOptions options);

  // Seconds `peer` must wait before its next registration step (0 = may try now). Counts
  // nothing: a cheap check before a request body is parsed.
  int64_t RegistrationRetryAfter(std::string_view peer);
  // Starts a registration for `email` (already schema-validated) from `peer` (the Unix uid or the
  // client IP; never logged). Counts one step for the address and the peer, then takes a pending
  // place. Refusals by the limits set *retry_after_seconds >= 1: kResourceExhausted (the address
  // or the peer is rate limited, or the peer has too many pending registrations: HTTP 429),
  // kUnavailable (too many pending registrations in all, or the store's map is fuller than
  // registrations may fill it: 503). Any other error leaves it 0 (kResourceExhausted then is the
  // store's "map is full", a 503).
  Result<Registration> Register(const SecretBytes& email, std::string_view peer,
                                int64_t* retry_after_seconds);
  Result<Registration> GetRegistration(std::string_view id);
  // Checks the two consecutive TOTP codes, stores the password hash, and mails the confirmation
  // link. May be repeated until confirmed (a new link replaces the old one). Each step with valid
  // codes counts for the registration's address and for `peer` (a refused one, kResourceExhausted
  // with *retry_after_seconds >= 1, writes and mails nothing); steps with wrong codes mail
  // nothing and do not count.
  Status SecureRegistration(std::string_view id, const SecretBytes& password_hash,
                            std::string_view totp_current, std::string_view totp_previous,
                            std::string_view peer, int64_t* retry_after_seconds);
  // Creates the account, exactly once. Returns the account id.
  Result<std::string> ConfirmRegistration(std::string_view id, std::string_view code);

  Result<LoginChallenge> IssueChallenge(std::string_view account_id);
  // `peer` identifies the caller for rate limiting (never logged in clear).
  Result<Session> Login(std::string_view account_id, std::string_view challenge_hash,
                        std::string_view totp, std::string_view peer);
  // Seconds the caller must wait before the next login attempt (0 = may try now).
  int64_t LoginRetryAfter(std::string_view account_id, std::string_view peer);

  // The session, if it exists and has not expired.
  Result<Session> GetSession(std::string_view session_id);
  Status Logout(std::string_view session_id);
  Result<SecretBytes> AccountEmail(std::string_view account_id);
  // Whether the account exists (for authorisation checks of authenticated callers only).
  Result<bool> AccountExists(std::string_view account_id);

  const AccountsOptions& options() const { return options_; }

 private:
  struct RegistrationRecord;
  struct AccountRecord;
  Result<RegistrationRecord> LoadRegistration(std::string_view id, Bytes* key, Bytes* raw);
  Result<AccountRecord> LoadAccount(std::string_view account_id, Bytes* key, Bytes* raw);
  Result<std::string> FakeSalt(std::string_view account_id);

  Vault& vault_;
  store::Store& store_;
  mail::Mailer& mailer_;
  const Clock& clock_;
  Logger& log_;
  AccountsOptions options_;
  std::unique_ptr<SharedLimits> shared_limits_;  // null: counts in memory only
  RateLimiter account_limiter_;
  RateLimiter peer_limiter_;
  RegistrationLimits registration_limits_;
};

}  // namespace otd::service
