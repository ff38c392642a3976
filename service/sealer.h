#pragma once
// Sealer: records sealed with their owner's data key (DESIGN §4, service/record.h): AES-256-GCM
// inside the token, a random 96-bit nonce counted against the data key's budget
// (service/nonce_budget.h), the associated data binding table, owner, record id and key
// version, so a record moved, swapped or relabelled fails to open.
//
// Thread safety: thread safe (each call leases its own HSM session).

#include <memory>
#include <string_view>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "hsm/hsm.h"
#include "service/key_hierarchy.h"
#include "service/nonce_budget.h"

namespace otd::service {

// A sealed record and the lease its encryption came from: while `gate` is set and not open, the
// record must not be stored (NonceBudget). Chain the write behind it: gate->Then(...).
struct Sealed {
  Bytes bytes;
  std::shared_ptr<LeaseGate> gate;
};

class Sealer {
 public:
  Sealer(hsm::Token& token, KeyHierarchy& keys, NonceBudget& budget)
      : token_(token), keys_(keys), budget_(budget) {}
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;

  // Seals plaintext for (table, account, id) with the account's current data key. Waits (rarely:
  // when a burst used a whole lease up) until the encryption's lease is durable, so the result
  // may be stored at once.
  Result<Bytes> Seal(std::string_view table, std::string_view account, std::string_view id,
                     ByteView plaintext);
  // The same without waiting for the lease: for writes that complete asynchronously
  // (tokenize), which chain their commit behind Sealed::gate.
  // `ahead` (both): this request's read-ahead, which may hold the account's data key record.
  Result<Sealed> SealDeferred(std::string_view table, std::string_view account, std::string_view id,
                              ByteView plaintext, const KeyHierarchy::ReadAhead* ahead = nullptr);
  // Opens a sealed record. kDataLoss when it does not authenticate (moved, swapped, tampered),
  // kNotFound when the account has no data key.
  Result<SecretBytes> Open(std::string_view table, std::string_view account, std::string_view id,
                           ByteView record, const KeyHierarchy::ReadAhead* ahead = nullptr);

  // Seal/Open with the system owner's key.
  Result<Bytes> SealSystem(std::string_view table, std::string_view id, ByteView plaintext) {
    return Seal(table, kSystemOwner, id, plaintext);
  }
  Result<SecretBytes> OpenSystem(std::string_view table, std::string_view id, ByteView record) {
    return Open(table, kSystemOwner, id, record);
  }

 private:
  hsm::Token& token_;
  KeyHierarchy& keys_;
  NonceBudget& budget_;
};

}  // namespace otd::service
