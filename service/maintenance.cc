#include "service/maintenance.h"

#include <algorithm>
#include <vector>

#include "service/record.h"
#include "service/shared_limits.h"

namespace otd::service {

namespace {

// Counts one stored (key, value) of `table` into `counts`. Returns the decoding problem, if any.
Status CountOne(const std::string& table, ByteView key, ByteView value, VersionCounts& counts) {
  if (table == tables::kMeta) {
    return Status::Ok();
  }
  if (uint32_t v = KeyHierarchy::IndexVersionOfKey(key); v > 0) {
    ++counts.records_per_index_version[v];
  } else {
    return DataLoss("a store key is not an index-key HMAC");
  }
  if (table == tables::kKeyUsage) {
    return value.size() == 12 ? Status::Ok() : DataLoss("a key usage record has the wrong length");
  }
  if (table == tables::kAccountKeys) {
    OTD_ASSIGN_OR_RETURN(WrappedKeyRecord rec, DecodeWrappedKey(value));
    ++counts.keys_per_kek_version[rec.kek_version];
    return Status::Ok();
  }
  OTD_ASSIGN_OR_RETURN(SealedRecord rec, DecodeSealed(value));
  ++counts.records_per_data_key_version[rec.key_version];
  return Status::Ok();
}

}  // namespace

Result<VersionCounts> CountVersions(const store::Store& store) {
  VersionCounts counts;
  for (const std::string& table : AllTables()) {
    OTD_RETURN_IF_ERROR(store.ForEach(table, [&](ByteView key, ByteView value) {
      (void)CountOne(table, key, value, counts);
      return true;
    }));
  }
  return counts;
}

Result<VerifyReport> VerifyStore(Vault& vault, store::Store& store,
                                 const std::function<void(uint64_t, uint64_t)>& progress) {
  VerifyReport report;
  auto problem = [&](const std::string& table, const std::string& what) {
    ++report.bad;
    if (report.first_problem.empty()) {
      report.first_problem = table + ": " + what;
    }
  };
  OTD_ASSIGN_OR_RETURN(store::Stats stats, store.GetStats());
  uint64_t total = 0;
  for (const std::string& table : AllTables()) {
    total += stats.tables[table].entries;
  }
  uint64_t done = 0;
  for (const std::string& table : AllTables()) {
    // Collect first: unwrapping talks to the token, which should not happen inside a read txn.
    std::vector<std::pair<Bytes, Bytes>> records;
    OTD_RETURN_IF_ERROR(store.ForEach(table, [&](ByteView key, ByteView value) {
      records.emplace_back(Bytes(key.begin(), key.end()), Bytes(value.begin(), value.end()));
      return true;
    }));
    report.records_per_table[table] = records.size();
    for (const auto& [k, v] : records) {
      if (progress) {
        progress(++done, std::max(total, done));
      }
      if (table == tables::kAuditHeads) {
        continue;  // audit chain heads: plain JSON, not sealed records (service/audit.h)
      }
      if (table == tables::kLimits) {
        // Limiter counts: a small versioned record, not sealed (service/shared_limits.h).
        if (!SharedLimits::Decode(v)) {
          problem(table, "a limiter record has an unknown format");
        }
        continue;
      }
      if (table == tables::kMeta) {
        if (k == ToBytes("vault_identity")) {
          // The store's identity record (Vault::ReadIdentity), not a version number.
          if (auto id = vault.keys().ReadIdentity(); !id.ok()) {
            problem(table, id.status().message());
          }
        } else if (v.size() != 4) {
          problem(table, "a meta value has the wrong length");
        }
        continue;
      }
      if (Status s = CountOne(table, k, v, report.versions); !s.ok()) {
        problem(table, s.message());
        continue;
      }
      if (table == tables::kAccountKeys) {
        if (Status s = vault.keys().CheckWrappedKey(v); !s.ok()) {
          if (s.code() == Code::kUnavailable) {
            return s;
          }
          problem(table, "a data key does not unwrap: " + s.message());
        }
      }
    }
  }
  return report;
}

}  // namespace otd::service
