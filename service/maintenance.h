#pragma once
// Offline and online maintenance used by opentoken-admin: structural verification of the store,
// purging expired records, and consistent backups with a manifest.
//
// What `Verify` can and cannot prove: records are keyed by HMACs and their associated data binds
// them to ids the store never holds (token ids, access codes), so no tool can decrypt them without
// those ids — by design. Verify therefore checks that every value is a well-formed, versioned
// record, that every wrapped data key unwraps under its KEK version inside the token, and counts
// records per key version. Authentication of the ciphertexts themselves happens on every read.

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

struct VerifyReport {
  std::map<std::string, uint64_t> records_per_table;
  std::map<uint32_t, uint64_t> records_per_data_key_version;
  std::map<uint32_t, uint64_t> keys_per_kek_version;
  uint64_t bad = 0;  // malformed records or keys that do not unwrap
  std::string first_problem;
};

Result<VerifyReport> VerifyStore(Vault& vault, store::Store& store);

}  // namespace otd::service
