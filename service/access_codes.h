#pragma once
// Access code pairs (seeds/000): a public `code` and a `secret` that signs requests (OT1).
//
// The secret is shown once. It is imported into the PKCS#11 token as an HMAC key, wrapped by the
// KEK there, and only the wrapped blob is kept, inside a record sealed with the account's data
// key (table access_codes, store key HMAC(account, code)). Signature checks unwrap it into a
// non-extractable session object and run C_Verify inside the token.
// A per-account index record (table access_code_index) lists the account's codes so they can be
// listed and revoked; it holds no secret.
//
// Errors: kUnauthenticated for every verification failure (unknown, expired or revoked code, code
// of another account, wrong signature) with one message, so callers cannot tell which;
// kNotFound for revoking an unknown code; kFailedPrecondition when the account already has
// max_per_account live codes (the message names the limit); kUnavailable (token/store).
// Thread safety: thread safe.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "hsm/hsm.h"
#include "service/fields.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

struct AccessCodesOptions {
  int64_t lifetime_seconds = 183 * 86'400;  // about six months (reference config: 6 months)
  size_t code_chars = 32;
  size_t secret_chars =
      32;  // at least 32: HMAC-SHA256 keys shorter than that do not sign in SoftHSM
  size_t max_per_account = 100;
};

struct NewAccessCode {
  std::string code;
  SecretBytes secret;
  int64_t expires_at = 0;
};

struct AccessCodeInfo {
  std::string code;
  std::string description;
  int64_t created_at = 0;
  int64_t expires_at = 0;
};

inline constexpr std::string_view kUnknownAccessCode = "unknown access code";
inline constexpr std::string_view kExpiredAccessCode = "access code expired";
inline constexpr std::string_view kSignatureMismatch =
    "signature mismatch: the HMAC-SHA256 of the canonical request the server built with this "
    "access code's secret differs (see /signature-information for the canonical request)";

class AccessCodes {
 public:
  AccessCodes(Vault& vault, hsm::Token& token, store::Store& store, const Clock& clock, Logger& log,
              AccessCodesOptions options)
      : vault_(vault), token_(token), store_(store), clock_(clock), log_(log), options_(options) {}

  Result<NewAccessCode> Create(std::string_view account_id, std::string_view description);
  Result<std::vector<AccessCodeInfo>> List(std::string_view account_id);
  Status Revoke(std::string_view account_id, std::string_view code);
  // Checks `signature` = HMAC-SHA256(secret of `code`, canonical) inside the token.
  // kUnauthenticated with a message for the client (api/auth.cc sends it): the code is unknown
  // (never created, revoked, or not this account's: kUnknownAccessCode), expired
  // (kExpiredAccessCode) or the signature does not match (kSignatureMismatch). Nothing about the
  // secret or the expected signature.
  // `ahead`: the records of this request read in advance (Tokens::SignedReadAhead), or null.
  Status Verify(std::string_view account_id, std::string_view code, ByteView canonical,
                ByteView signature, const Vault::ReadAhead* ahead = nullptr);

 private:
  Result<Bytes> SealCode(std::string_view account_id, std::string_view code,
                         ByteView wrapped_secret, uint32_t kek_version,
                         std::string_view description, int64_t created_at, int64_t expires_at);
  void MoveSecretToCurrentKek(std::string_view account_id, std::string_view code,
                              const Bytes& record_key, const Bytes& current_record,
                              const FieldReader& fields);
  Result<std::vector<AccessCodeInfo>> LoadIndex(std::string_view account_id, Bytes* key,
                                                std::optional<Bytes>* raw);
  Result<store::Mutation> IndexMutation(std::string_view account_id, const Bytes& key,
                                        const std::optional<Bytes>& raw,
                                        const std::vector<AccessCodeInfo>& list);

  Vault& vault_;
  hsm::Token& token_;
  store::Store& store_;
  const Clock& clock_;
  Logger& log_;
  AccessCodesOptions options_;
};

}  // namespace otd::service
