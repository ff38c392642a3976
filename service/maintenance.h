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
#include <functional>
#include <map>
#include <string>

#include "common/status.h"
#include "service/vault.h"
#include "store/store.h"

namespace otd::service {

// How many stored things refer to each key version: what keeps an old version alive.
struct VersionCounts {
  std::map<uint32_t, uint64_t> keys_per_kek_version;          // wrapped data keys
  std::map<uint32_t, uint64_t> records_per_index_version;     // store keys, every table
  std::map<uint32_t, uint64_t> records_per_data_key_version;  // sealed records
};

struct VerifyReport {
  std::map<std::string, uint64_t> records_per_table;
  VersionCounts versions;
  uint64_t bad = 0;  // malformed records or keys that do not unwrap
  std::string first_problem;
};

// `progress(done, total)` is called as records are checked (total = all records).
Result<VerifyReport> VerifyStore(
    Vault& vault, store::Store& store,
    const std::function<void(uint64_t done, uint64_t total)>& progress = nullptr);

// Counts references per key version without touching the token (cheap; for status).
Result<VersionCounts> CountVersions(const store::Store& store);

}  // namespace otd::service
