#include "service/accounts.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/random.h"
#include "crypto/totp.h"
#include "service/email_index.h"
#include "service/fields.h"
#include "service/retry.h"
#include "service/tables.h"

namespace otd::service {

namespace {

constexpr std::string_view kRegistrations = tables::kRegistrations;
constexpr std::string_view kAccounts = tables::kAccounts;
constexpr std::string_view kChallenges = tables::kChallenges;
constexpr std::string_view kSessions = tables::kSessions;

// Field tags of the sealed records.
enum : uint8_t {
  kTagEmail = 1,
  kTagPasswordSalt = 2,
  kTagTotpSeed = 3,
  kTagState = 4,
  kTagPasswordHash = 5,
  kTagConfirmHash = 6,
  kTagCreatedAt = 7,
  kTagExpiresAt = 8,
  kTagLastTotpStep = 9,
  kTagAccountId = 10,
  kTagChallenges = 11,
  kTagPeer = 12,  // a registration's peer, kept only where limits are shared
};

enum RegistrationState : uint64_t { kPending = 0, kSecured = 1 };
constexpr size_t kChallengeSaltChars = 64;
constexpr size_t kMaxOutstandingChallenges = 5;
constexpr int64_t kTotpPeriod = 30;

std::string RegistrationOwner(std::string_view id) { return "reg:" + std::string(id); }

Status TotpMatches(const SecretBytes& seed, std::string_view code, int64_t step) {
  OTD_ASSIGN_OR_RETURN(std::string expected, crypto::TotpCode(seed, step * kTotpPeriod));
  if (!crypto::TotpCodeEquals(expected, code)) {
    return InvalidArgument("TOTP code does not match");
  }
  return Status::Ok();
}

std::vector<std::pair<std::string, int64_t>> ParseChallenges(const std::string& text) {
  std::vector<std::pair<std::string, int64_t>> out;
  std::istringstream in(text);
  std::string salt;
  int64_t expires = 0;
  while (in >> salt >> expires) {
    out.emplace_back(salt, expires);
  }
  return out;
}

std::string FormatChallenges(const std::vector<std::pair<std::string, int64_t>>& list) {
  std::string out;
  for (const auto& [salt, expires] : list) {
    out += salt + " " + std::to_string(expires) + "\n";
  }
  return out;
}

}  // namespace

struct Accounts::RegistrationRecord {
  SecretBytes email;
  std::string password_salt;
  SecretBytes totp_seed;
  uint64_t state = kPending;
  SecretBytes password_hash;
  Bytes confirm_hash;
  int64_t created_at = 0;
  int64_t expires_at = 0;
  // Who started it (the limit key of its peer), only with shared limits: the node confirming it
  // gives back its place in the peer's shared pending count (service/registration_limits.h).
  std::string peer;

  SecretBytes Encode() const {
    FieldWriter w;
    w.AddSecret(kTagEmail, email)
        .Add(kTagPasswordSalt, password_salt)
        .AddSecret(kTagTotpSeed, totp_seed)
        .AddU64(kTagState, state)
        .AddU64(kTagCreatedAt, static_cast<uint64_t>(created_at))
        .AddU64(kTagExpiresAt, static_cast<uint64_t>(expires_at));
    if (state == kSecured) {
      w.AddSecret(kTagPasswordHash, password_hash).Add(kTagConfirmHash, confirm_hash);
    }
    if (!peer.empty()) {
      w.Add(kTagPeer, peer);
    }
    return w.Finish();
  }
  static Result<RegistrationRecord> Decode(const SecretBytes& plain) {
    OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(plain));
    RegistrationRecord rec;
    OTD_ASSIGN_OR_RETURN(rec.email, r.Secret(kTagEmail));
    OTD_ASSIGN_OR_RETURN(rec.password_salt, r.Text(kTagPasswordSalt));
    OTD_ASSIGN_OR_RETURN(rec.totp_seed, r.Secret(kTagTotpSeed));
    OTD_ASSIGN_OR_RETURN(rec.state, r.U64(kTagState));
    OTD_ASSIGN_OR_RETURN(uint64_t created, r.U64(kTagCreatedAt));
    OTD_ASSIGN_OR_RETURN(uint64_t expires, r.U64(kTagExpiresAt));
    rec.created_at = static_cast<int64_t>(created);
    rec.expires_at = static_cast<int64_t>(expires);
    if (r.Has(kTagPeer)) {
      OTD_ASSIGN_OR_RETURN(rec.peer, r.Text(kTagPeer));
    }
    if (rec.state == kSecured) {
      OTD_ASSIGN_OR_RETURN(rec.password_hash, r.Secret(kTagPasswordHash));
      OTD_ASSIGN_OR_RETURN(std::string h, r.Text(kTagConfirmHash));
      rec.confirm_hash = ToBytes(h);
    }
    return rec;
  }
};

struct Accounts::AccountRecord {
  SecretBytes email;
  std::string password_salt;
  SecretBytes password_hash;
  SecretBytes totp_seed;
  int64_t last_totp_step = 0;
  int64_t created_at = 0;

  SecretBytes Encode() const {
    return FieldWriter()
        .AddSecret(kTagEmail, email)
        .Add(kTagPasswordSalt, password_salt)
        .AddSecret(kTagPasswordHash, password_hash)
        .AddSecret(kTagTotpSeed, totp_seed)
        .AddU64(kTagLastTotpStep, static_cast<uint64_t>(last_totp_step))
        .AddU64(kTagCreatedAt, static_cast<uint64_t>(created_at))
        .Finish();
  }
  static Result<AccountRecord> Decode(const SecretBytes& plain) {
    OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(plain));
    AccountRecord rec;
    OTD_ASSIGN_OR_RETURN(rec.email, r.Secret(kTagEmail));
    OTD_ASSIGN_OR_RETURN(rec.password_salt, r.Text(kTagPasswordSalt));
    OTD_ASSIGN_OR_RETURN(rec.password_hash, r.Secret(kTagPasswordHash));
    OTD_ASSIGN_OR_RETURN(rec.totp_seed, r.Secret(kTagTotpSeed));
    OTD_ASSIGN_OR_RETURN(uint64_t step, r.U64(kTagLastTotpStep));
    OTD_ASSIGN_OR_RETURN(uint64_t created, r.U64(kTagCreatedAt));
    rec.last_totp_step = static_cast<int64_t>(step);
    rec.created_at = static_cast<int64_t>(created);
    return rec;
  }
};

Accounts::Accounts(Vault& vault, store::Store& store, mail::Mailer& mailer, const Clock& clock,
                   Logger& log, AccountsOptions options)
    : vault_(vault),
      store_(store),
      mailer_(mailer),
      clock_(clock),
      log_(log),
      options_(std::move(options)),
      shared_limits_(options_.shared_limits ? std::make_unique<SharedLimits>(
                                                  store, SharedLimits::KeyedHashes(vault.keys()))
                                            : nullptr),
      account_limiter_(clock, options_.rate_limit, shared_limits_.get(), "login-account"),
      peer_limiter_(clock, options_.peer_rate_limit, shared_limits_.get(), "login-peer"),
      registration_limits_(store, std::string(kRegistrations), clock, log,
                           options_.registration_limits, shared_limits_.get()) {}

// --- registration ---------------------------------------------------------------------------

int64_t Accounts::RegistrationRetryAfter(std::string_view peer) {
  return registration_limits_.PeerRetryAfter(peer);
}

Result<Registration> Accounts::Register(const SecretBytes& email, std::string_view peer,
                                        int64_t* retry_after_seconds) {
  *retry_after_seconds = 0;
  OTD_RETURN_IF_ERROR(registration_limits_.CountStep(email.RevealString(SecretAccess::Grant()),
                                                     peer, retry_after_seconds));
  const int64_t now = clock_.NowSeconds();
  const int64_t expires = now + options_.registration_lifetime_seconds;
  OTD_ASSIGN_OR_RETURN(std::string id, crypto::RandomUrlSafeString(kIdChars));
  OTD_ASSIGN_OR_RETURN(RegistrationLimits::Slot slot,
                       registration_limits_.AdmitPending(peer, id, expires, retry_after_seconds));
  OTD_ASSIGN_OR_RETURN(std::string salt, crypto::RandomUrlSafeString(kPasswordSaltChars));
  OTD_ASSIGN_OR_RETURN(SecretBytes seed, crypto::RandomSecret(kTotpSeedBytes));
  const std::string owner = RegistrationOwner(id);

  // The registration's own data key first (sealing needs it in the store); it expires with the
  // registration, so an abandoned registration is shredded by the purge job.
  OTD_ASSIGN_OR_RETURN(store::Mutation key_mutation,
                       vault_.keys().NewAccountKeyMutation(owner, expires));
  std::vector<store::Mutation> key_batch;
  key_batch.push_back(std::move(key_mutation));
  OTD_RETURN_IF_ERROR(store_.Apply(std::move(key_batch)));

  RegistrationRecord rec;
  rec.email = email.Clone();
  rec.password_salt = salt;
  rec.totp_seed = seed.Clone();
  rec.created_at = now;
  rec.expires_at = expires;
  if (options_.shared_limits) {
    rec.peer = std::string(peer);
  }
  SecretBytes plain = rec.Encode();
  OTD_ASSIGN_OR_RETURN(Bytes sealed, vault_.sealer().Seal(kRegistrations, owner, "registration",
                                                          plain.Reveal(SecretAccess::Grant())));
  OTD_ASSIGN_OR_RETURN(Bytes key, vault_.keys().LookupKey(kRegistrations, "", id));
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert,
                   .table = std::string(kRegistrations),
                   .key = key,
                   .value = std::move(sealed),
                   .expires_at = expires});
  OTD_RETURN_IF_ERROR(store_.Apply(std::move(batch)));
  slot.Keep();
  log_.Info("registration_started");
  return Registration{id, salt, email.Clone(), std::move(seed)};
}

Result<Accounts::RegistrationRecord> Accounts::LoadRegistration(std::string_view id, Bytes* key,
                                                                Bytes* raw) {
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kRegistrations, "", id));
  *key = std::move(found.key);
  const std::optional<Bytes>& value = found.value;
  if (!value) {
    return NotFound("registration not found");
  }
  *raw = *value;
  auto plain = vault_.sealer().Open(kRegistrations, RegistrationOwner(id), "registration", *value);
  if (!plain.ok()) {
    // A registration whose key was purged (expired) reads as absent.
    return plain.status().code() == Code::kUnavailable ? plain.status()
                                                       : NotFound("registration not found");
  }
  OTD_ASSIGN_OR_RETURN(RegistrationRecord rec, RegistrationRecord::Decode(*plain));
  if (rec.expires_at <= clock_.NowSeconds()) {
    return NotFound("registration not found");
  }
  return rec;
}

Result<Registration> Accounts::GetRegistration(std::string_view id) {
  Bytes key, raw;
  OTD_ASSIGN_OR_RETURN(RegistrationRecord rec, LoadRegistration(id, &key, &raw));
  return Registration{std::string(id), rec.password_salt, std::move(rec.email),
                      std::move(rec.totp_seed)};
}

Status Accounts::SecureRegistration(std::string_view id, const SecretBytes& password_hash,
                                    std::string_view totp_current, std::string_view totp_previous,
                                    std::string_view peer, int64_t* retry_after_seconds) {
  *retry_after_seconds = registration_limits_.PeerRetryAfter(peer);
  if (*retry_after_seconds > 0) {
    return ResourceExhausted("too many registration steps; wait before trying again");
  }
  Bytes key, raw;
  OTD_ASSIGN_OR_RETURN(RegistrationRecord rec, LoadRegistration(id, &key, &raw));
  // Two consecutive codes: (current, previous) for the current step, or for the step before
  // (the client may have crossed a boundary while sending).
  const int64_t step = clock_.NowSeconds() / kTotpPeriod;
  bool ok = false;
  for (int64_t s : {step, step - 1}) {
    if (TotpMatches(rec.totp_seed, totp_current, s).ok() &&
        TotpMatches(rec.totp_seed, totp_previous, s - 1).ok()) {
      ok = true;
    }
  }
  if (!ok) {
    return InvalidArgument("the MFA codes are not two consecutive codes of the registration's key");
  }
  // Each secure step mails the address: it counts for the address as well as for the peer.
  OTD_RETURN_IF_ERROR(registration_limits_.CountStep(rec.email.RevealString(SecretAccess::Grant()),
                                                     peer, retry_after_seconds));
  OTD_ASSIGN_OR_RETURN(std::string code, crypto::RandomUrlSafeString(kIdChars));
  OTD_ASSIGN_OR_RETURN(Bytes code_hash, crypto::Sha256(AsBytes(code)));
  rec.state = kSecured;
  rec.password_hash = password_hash.Clone();
  rec.confirm_hash = std::move(code_hash);
  SecretBytes plain = rec.Encode();
  OTD_ASSIGN_OR_RETURN(Bytes sealed,
                       vault_.sealer().Seal(kRegistrations, RegistrationOwner(id), "registration",
                                            plain.Reveal(SecretAccess::Grant())));
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kUpdate,
                   .table = std::string(kRegistrations),
                   .key = key,
                   .value = std::move(sealed),
                   .expect = raw,
                   .expires_at = rec.expires_at});
  Status applied = store_.Apply(std::move(batch));
  if (applied.code() == Code::kFailedPrecondition) {
    return FailedPrecondition("the registration changed meanwhile; retry");
  }
  OTD_RETURN_IF_ERROR(applied);

  const std::string link =
      options_.public_url + "/registration/" + std::string(id) + "/confirm/" + code;
  mail::Message m;
  m.to = std::string(rec.email.RevealString(SecretAccess::Grant()));
  m.subject = "Confirm your opentokend account";
  m.text = "Welcome to opentokend.\r\n\r\nConfirm your registration by opening this link:\r\n\r\n" +
           link + "\r\n\r\nIf you did not ask for an account, ignore this message.\r\n";
  m.html =
      "<p>Welcome to opentokend.</p><p>Confirm your registration by opening this link:</p>"
      "<p><a href=\"" +
      link + "\">" + link +
      "</a></p>"
      "<p>If you did not ask for an account, ignore this message.</p>";
  Status sent = mailer_.Send(m);
  OPENSSL_cleanse(m.to.data(), m.to.size());
  if (!sent.ok()) {
    // The registration stays secured; the client can repeat this step to get a new link.
    log_.Error("confirmation_mail_failed", {{"reason", sent.message()}});
    return Unavailable("cannot send the confirmation mail now; retry this request later");
  }
  log_.Info("registration_secured");
  return Status::Ok();
}

Result<std::string> Accounts::ConfirmRegistration(std::string_view id, std::string_view code) {
  Bytes key, raw;
  OTD_ASSIGN_OR_RETURN(RegistrationRecord rec, LoadRegistration(id, &key, &raw));
  OTD_ASSIGN_OR_RETURN(Bytes code_hash, crypto::Sha256(AsBytes(code)));
  if (rec.state != kSecured || !ConstantTimeEquals(code_hash, rec.confirm_hash)) {
    return NotFound("registration not found");  // a wrong code looks like an unknown link
  }
  const int64_t now = clock_.NowSeconds();
  OTD_ASSIGN_OR_RETURN(std::string account_id, crypto::RandomUrlSafeString(kIdChars));
  OTD_ASSIGN_OR_RETURN(store::Mutation account_key,
                       vault_.keys().NewAccountKeyMutation(account_id));
  {
    std::vector<store::Mutation> b;
    b.push_back(std::move(account_key));
    OTD_RETURN_IF_ERROR(store_.Apply(std::move(b)));
  }
  AccountRecord acct;
  acct.email = rec.email.Clone();
  acct.password_salt = rec.password_salt;
  acct.password_hash = rec.password_hash.Clone();
  acct.totp_seed = rec.totp_seed.Clone();
  acct.created_at = now;
  SecretBytes plain = acct.Encode();
  OTD_ASSIGN_OR_RETURN(
      Bytes sealed_account,
      vault_.sealer().Seal(kAccounts, account_id, "account", plain.Reveal(SecretAccess::Grant())));
  OTD_ASSIGN_OR_RETURN(Bytes account_key_hash, vault_.keys().LookupKey(kAccounts, account_id, ""));
  OTD_ASSIGN_OR_RETURN(
      store::Mutation email_index,
      EmailIndexInsert(vault_, rec.email.RevealString(SecretAccess::Grant()), account_id));
  OTD_ASSIGN_OR_RETURN(std::vector<store::Mutation> shred_registration_key,
                       vault_.DeleteAccountKeyMutations(RegistrationOwner(id)));

  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kInsert,
                   .table = std::string(kAccounts),
                   .key = account_key_hash,
                   .value = std::move(sealed_account)});
  batch.push_back(std::move(email_index));
  // Exactly once: the registration must still be the one we read.
  batch.push_back(
      {.op = store::Op::kDelete, .table = std::string(kRegistrations), .key = key, .expect = raw});
  for (auto& m : shred_registration_key) {
    batch.push_back(std::move(m));
  }
  Status applied = store_.Apply(std::move(batch));
  if (applied.code() == Code::kAlreadyExists) {
    return AlreadyExists("an account already exists for this e-mail address");
  }
  if (applied.code() == Code::kFailedPrecondition) {
    return NotFound("registration not found");
  }
  OTD_RETURN_IF_ERROR(applied);
  registration_limits_.Confirmed(id, rec.peer);
  log_.Info("account_created");
  return account_id;
}

// --- login ----------------------------------------------------------------------------------

Result<Accounts::AccountRecord> Accounts::LoadAccount(std::string_view account_id, Bytes* key,
                                                      Bytes* raw) {
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kAccounts, account_id, ""));
  *key = std::move(found.key);
  const std::optional<Bytes>& value = found.value;
  if (!value) {
    return NotFound("account not found");
  }
  *raw = *value;
  OTD_ASSIGN_OR_RETURN(SecretBytes plain,
                       vault_.sealer().Open(kAccounts, account_id, "account", *value));
  return AccountRecord::Decode(plain);
}

Result<bool> Accounts::AccountExists(std::string_view account_id) {
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kAccounts, account_id, ""));
  return found.value.has_value();
}

Result<std::string> Accounts::FakeSalt(std::string_view account_id) {
  // Stable per unknown account id, so repeated challenges look like a real account's.
  OTD_ASSIGN_OR_RETURN(Bytes mac, vault_.keys().StableKeyedHash("fake-salt", account_id, ""));
  Bytes wide = mac;
  OTD_ASSIGN_OR_RETURN(Bytes more, crypto::Sha512(mac));
  wide.insert(wide.end(), more.begin(), more.end());
  std::string s = crypto::Base64UrlEncode(wide);
  s.resize(kPasswordSaltChars, 'A');
  return s;
}

Result<LoginChallenge> Accounts::IssueChallenge(std::string_view account_id) {
  OTD_ASSIGN_OR_RETURN(std::string challenge_salt,
                       crypto::RandomUrlSafeString(kChallengeSaltChars));
  Bytes key, raw;
  auto acct = LoadAccount(account_id, &key, &raw);
  if (!acct.ok()) {
    if (acct.status().code() != Code::kNotFound) {
      return acct.status();
    }
    // Unknown account: the same answer, a stable fake salt, nothing stored.
    OTD_ASSIGN_OR_RETURN(std::string fake, FakeSalt(account_id));
    return LoginChallenge{challenge_salt, fake};
  }
  const int64_t now = clock_.NowSeconds();
  return RetryOnConflict<Result<LoginChallenge>>(
      "this account's challenges", [&]() -> Attempt<Result<LoginChallenge>> {
        OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kChallenges, account_id, ""));
        const Bytes& ckey = found.key;
        const std::optional<Bytes>& existing = found.value;
        std::vector<std::pair<std::string, int64_t>> list;
        if (existing) {
          auto plain = vault_.sealer().OpenSystem(kChallenges, account_id, *existing);
          if (plain.ok()) {
            auto r = FieldReader::Parse(*plain);
            if (r.ok()) {
              auto text = r->Text(kTagChallenges);
              if (text.ok()) {
                list = ParseChallenges(*text);
              }
            }
          }
        }
        std::erase_if(list, [now](const auto& c) { return c.second <= now; });
        list.emplace_back(challenge_salt, now + options_.challenge_lifetime_seconds);
        while (list.size() > kMaxOutstandingChallenges) {
          list.erase(list.begin());
        }
        std::string text = FormatChallenges(list);
        SecretBytes plain = FieldWriter().Add(kTagChallenges, text).Finish();
        OTD_ASSIGN_OR_RETURN(Bytes sealed,
                             vault_.sealer().SealSystem(kChallenges, account_id,
                                                        plain.Reveal(SecretAccess::Grant())));
        store::Mutation m{.op = existing ? store::Op::kUpdate : store::Op::kInsert,
                          .table = std::string(kChallenges),
                          .key = ckey,
                          .value = std::move(sealed),
                          .expires_at = now + options_.challenge_lifetime_seconds};
        if (existing) {
          m.expect = *existing;
        }
        std::vector<store::Mutation> batch;
        batch.push_back(std::move(m));
        Status s = store_.Apply(std::move(batch));
        if (IsLostRace(s)) {
          return kRetry;
        }
        if (!s.ok()) {
          return s;
        }
        return LoginChallenge{challenge_salt, acct->password_salt};
      });
}

int64_t Accounts::LoginRetryAfter(std::string_view account_id, std::string_view peer) {
  return std::max(account_limiter_.RetryAfter(account_id), peer_limiter_.RetryAfter(peer));
}

Result<Session> Accounts::Login(std::string_view account_id, std::string_view challenge_hash,
                                std::string_view totp, std::string_view peer) {
  if (LoginRetryAfter(account_id, peer) > 0) {
    return ResourceExhausted("too many failed logins; wait before trying again");
  }
  auto fail = [&]() -> Status {
    account_limiter_.RecordFailure(account_id);
    peer_limiter_.RecordFailure(peer);
    log_.Info("login_failed");
    return Unauthenticated("login failed");
  };
  const int64_t now = clock_.NowSeconds();
  Bytes akey, araw;
  auto acct = LoadAccount(account_id, &akey, &araw);
  if (!acct.ok()) {
    if (acct.status().code() == Code::kNotFound) {
      return fail();
    }
    return acct.status();
  }
  OTD_ASSIGN_OR_RETURN(Located found_challenges, vault_.keys().Find(kChallenges, account_id, ""));
  const Bytes& ckey = found_challenges.key;
  const std::optional<Bytes>& challenges_raw = found_challenges.value;
  if (!challenges_raw) {
    return fail();
  }
  std::vector<std::pair<std::string, int64_t>> list;
  {
    OTD_ASSIGN_OR_RETURN(SecretBytes plain,
                         vault_.sealer().OpenSystem(kChallenges, account_id, *challenges_raw));
    OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(plain));
    OTD_ASSIGN_OR_RETURN(std::string text, r.Text(kTagChallenges));
    list = ParseChallenges(text);
  }
  // Every attempt uses up the outstanding challenges, whatever its outcome.
  std::vector<store::Mutation> consume;
  consume.push_back({.op = store::Op::kDelete,
                     .table = std::string(kChallenges),
                     .key = ckey,
                     .expect = *challenges_raw});

  // challengeHash = hex(SHA-512(passwordHash ‖ challenge salt)); compare in constant time.
  std::string provided = LowerAscii(challenge_hash);
  bool password_ok = false;
  for (const auto& [salt, expires] : list) {
    if (expires <= now) {
      continue;
    }
    SecretBytes input(acct->password_hash.size() + salt.size());
    auto dst = input.MutableReveal(SecretAccess::Grant());
    auto ph = acct->password_hash.Reveal(SecretAccess::Grant());
    std::copy(ph.begin(), ph.end(), dst.begin());
    std::copy(salt.begin(), salt.end(), dst.begin() + static_cast<std::ptrdiff_t>(ph.size()));
    OTD_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha512(input.Reveal(SecretAccess::Grant())));
    std::string expected = crypto::HexEncode(digest);
    if (ConstantTimeEquals(AsBytes(expected), AsBytes(provided))) {
      password_ok = true;
    }
  }
  // TOTP: the current or the previous window, and never a step already used (no replay).
  const int64_t step = now / kTotpPeriod;
  int64_t accepted_step = 0;
  for (int64_t s : {step, step - 1}) {
    if (s > acct->last_totp_step && TotpMatches(acct->totp_seed, totp, s).ok()) {
      accepted_step = s;
      break;
    }
  }
  if (!password_ok || accepted_step == 0) {
    (void)store_.Apply(std::move(consume));
    return fail();
  }

  OTD_ASSIGN_OR_RETURN(std::string session_id, crypto::RandomUrlSafeString(kIdChars));
  const int64_t expires = now + options_.session_lifetime_seconds;
  acct->last_totp_step = accepted_step;
  SecretBytes acct_plain = acct->Encode();
  OTD_ASSIGN_OR_RETURN(Bytes sealed_account,
                       vault_.sealer().Seal(kAccounts, account_id, "account",
                                            acct_plain.Reveal(SecretAccess::Grant())));
  SecretBytes session_plain = FieldWriter()
                                  .Add(kTagAccountId, account_id)
                                  .AddU64(kTagExpiresAt, static_cast<uint64_t>(expires))
                                  .Finish();
  OTD_ASSIGN_OR_RETURN(Bytes sealed_session,
                       vault_.sealer().SealSystem(kSessions, session_id,
                                                  session_plain.Reveal(SecretAccess::Grant())));
  OTD_ASSIGN_OR_RETURN(Bytes skey, vault_.keys().LookupKey(kSessions, "", session_id));
  std::vector<store::Mutation> batch = std::move(consume);
  batch.push_back({.op = store::Op::kUpdate,
                   .table = std::string(kAccounts),
                   .key = akey,
                   .value = std::move(sealed_account),
                   .expect = araw});
  batch.push_back({.op = store::Op::kInsert,
                   .table = std::string(kSessions),
                   .key = skey,
                   .value = std::move(sealed_session),
                   .expires_at = expires});
  Status applied = store_.Apply(std::move(batch));
  if (applied.code() == Code::kFailedPrecondition) {
    return fail();  // a concurrent login used the same challenge or TOTP step
  }
  OTD_RETURN_IF_ERROR(applied);
  account_limiter_.RecordSuccess(account_id);
  log_.Info("login_succeeded");
  return Session{session_id, std::string(account_id), expires};
}

// --- sessions -------------------------------------------------------------------------------

Result<Session> Accounts::GetSession(std::string_view session_id) {
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kSessions, "", session_id));
  const std::optional<Bytes>& value = found.value;
  if (!value) {
    return NotFound("no such session");
  }
  auto plain = vault_.sealer().OpenSystem(kSessions, session_id, *value);
  if (!plain.ok()) {
    return plain.status().code() == Code::kUnavailable ? plain.status()
                                                       : NotFound("no such session");
  }
  OTD_ASSIGN_OR_RETURN(FieldReader r, FieldReader::Parse(*plain));
  Session s;
  s.id = std::string(session_id);
  OTD_ASSIGN_OR_RETURN(s.account_id, r.Text(kTagAccountId));
  OTD_ASSIGN_OR_RETURN(uint64_t expires, r.U64(kTagExpiresAt));
  s.expires_at = static_cast<int64_t>(expires);
  if (s.expires_at <= clock_.NowSeconds()) {
    return NotFound("no such session");
  }
  return s;
}

Status Accounts::Logout(std::string_view session_id) {
  OTD_ASSIGN_OR_RETURN(Located found, vault_.keys().Find(kSessions, "", session_id));
  Bytes key = std::move(found.key);
  std::vector<store::Mutation> batch;
  batch.push_back({.op = store::Op::kErase, .table = std::string(kSessions), .key = key});
  OTD_RETURN_IF_ERROR(store_.Apply(std::move(batch)));
  log_.Info("logout");
  return Status::Ok();
}

Result<SecretBytes> Accounts::AccountEmail(std::string_view account_id) {
  Bytes key, raw;
  OTD_ASSIGN_OR_RETURN(AccountRecord acct, LoadAccount(account_id, &key, &raw));
  return std::move(acct.email);
}

}  // namespace otd::service
