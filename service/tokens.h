#pragma once
// Tokens (seeds/001): any bytes with their Content-Type, sealed with the account's data key in the
// token. The store key is HMAC(index key, account | token id) and the associated data binds the
// ciphertext to the token id, so the id itself is never stored and a record cannot be read
// without it, even with the database and the HSM.
//
// Deletion erases the record. The ciphertext that LMDB may keep in free pages stays bound to the
// token id, which exists only with the client: that is the shredding.
//
// Errors: kNotFound for unknown, expired, deleted, tampered or other-account tokens (one message;
// a dummy decryption on a miss keeps the timing of a hit); kInvalidArgument for bad input;
// kUnavailable (token/store).
// Thread safety: thread safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

struct TokensOptions {
  size_t id_chars = 32;              // 192 bits, URL-safe
  int64_t max_lifetime_seconds = 0;  // 0: tokens without `expires` never expire
};

struct StoredToken {
  std::string content_type;
  bool is_public = false;
  int64_t created_at = 0;
  int64_t expires_at = 0;  // 0: none
  SecretBytes payload;
  std::string etag;  // derived from the sealed record, reveals nothing
};

// A sealed token record that is not stored yet (Tokens::Prepare → Tokens::Commit). Holds only
// what the store will hold: the keyed-hash store key and the sealed record.
struct PreparedToken {
  std::string id;
  std::vector<store::Mutation> batch;
  // The nonce lease the record's encryption came from, while it is not durable yet
  // (service/nonce_budget.h): Commit writes the record only once it is.
  std::shared_ptr<LeaseGate> lease;
  size_t bytes = 0;
  bool is_public = false;
};

class Tokens {
 public:
  Tokens(Vault& vault, store::Store& store, const Clock& clock, Logger& log, TokensOptions options)
      : vault_(vault), store_(store), clock_(clock), log_(log), options_(options) {}

  // Checks the input, draws the id and seals the record in the token; stores nothing.
  // `ahead`: this request's read-ahead (SignedReadAhead), or null.
  Result<PreparedToken> Prepare(std::string_view account_id, std::string_view content_type,
                                ByteView payload, bool is_public, int64_t expires_at,
                                const Vault::ReadAhead* ahead = nullptr);
  // Stores the record durably and calls `done` with the result, without waiting: on the store's
  // writer thread (store.h: `done` must not call Store::Apply). The id is valid only if ok. When
  // the record's nonce lease is still being committed, the record is written after it (and not at
  // all if the lease fails: `done` gets that failure).
  void Commit(PreparedToken token, std::function<void(Status)> done);
  // `ahead`: the records of this request read in advance (SignedReadAhead), or null.
  Result<StoredToken> Get(std::string_view account_id, std::string_view token_id,
                          const Vault::ReadAhead* ahead = nullptr);
  // What a signed tokenize or detokenize reads, in one store round trip: the record of the
  // access code that signed it, the account's data key (version 1), and the token's record when
  // `token_id` is not empty (on PostgreSQL this turns four round trips into one). Pass the result
  // to AccessCodes::Verify, Get and Prepare of the same request; drop it with the request.
  Result<Vault::ReadAhead> SignedReadAhead(std::string_view account_id,
                                           std::string_view access_code, std::string_view token_id);
  Status Delete(std::string_view account_id, std::string_view token_id);

 private:
  Vault& vault_;
  store::Store& store_;
  const Clock& clock_;
  Logger& log_;
  TokensOptions options_;
};

}  // namespace otd::service
