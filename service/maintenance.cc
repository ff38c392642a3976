#include "service/maintenance.h"

#include <vector>

#include "service/record.h"

namespace otd::service {

Result<VerifyReport> VerifyStore(Vault& vault, store::Store& store) {
  VerifyReport report;
  auto problem = [&](const std::string& table, const std::string& what) {
    ++report.bad;
    if (report.first_problem.empty()) {
      report.first_problem = table + ": " + what;
    }
  };
  for (const std::string& table : AllTables()) {
    // Collect first: unwrapping talks to the token, which should not happen inside a read txn.
    std::vector<Bytes> values;
    OTD_RETURN_IF_ERROR(store.ForEach(table, [&](ByteView, ByteView value) {
      values.emplace_back(value.begin(), value.end());
      return true;
    }));
    report.records_per_table[table] = values.size();
    for (const Bytes& v : values) {
      if (table == "meta") {
        if (v.size() != 4) {
          problem(table, "a meta value has the wrong length");
        }
      } else if (table == "account_keys") {
        auto rec = DecodeWrappedKey(v);
        if (!rec.ok()) {
          problem(table, rec.status().message());
          continue;
        }
        ++report.keys_per_kek_version[rec->kek_version];
        if (Status s = vault.CheckWrappedKey(v); !s.ok()) {
          if (s.code() == Code::kUnavailable) {
            return s;
          }
          problem(table, "a data key does not unwrap: " + s.message());
        }
      } else {
        auto rec = DecodeSealed(v);
        if (!rec.ok()) {
          problem(table, rec.status().message());
          continue;
        }
        ++report.records_per_data_key_version[rec->key_version];
      }
    }
  }
  return report;
}

}  // namespace otd::service
