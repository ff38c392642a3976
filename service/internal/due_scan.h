#pragma once
// One pass over a table of sealed records that fall due at a time: the SMTP outbox
// (service/mail_outbox.cc) and the mail requests (service/mail_requests.cc). Private to service/.
//
// A scan reads the whole table, opens each record (token work), drops the unreadable and the
// expired ones, remembers those not due yet, and returns the due ones in table order. A value
// remembered by the previous scan and still stored unchanged is not opened again until it falls
// due, so an idle queue costs no token work per scan; remembered values that are gone from the
// table are forgotten.
//
// Record must have `int64_t expires_at`, `int64_t not_before` and `uint64_t attempts` (Unix
// seconds, attempts made so far).
//
// Thread safety: none; the caller serialises scans of one table (the SeenValues it owns).

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "store/store.h"

namespace otd::service::internal {

// What a scan learned about a stored value that is not due yet (no clear content).
struct SeenValue {
  Bytes value;
  int64_t due_at = 0;  // min(not before, expiry)
};
using SeenValues = std::unordered_map<std::string, SeenValue>;  // by store key bytes

template <class Record>
struct DueRecord {
  Bytes key;
  Bytes value;  // as stored: the expected value of the claim's compare-and-swap
  Record record;
};

template <class Record>
struct DueScan {
  std::vector<DueRecord<Record>> due;  // table order
  int64_t next = 0;                    // earliest time something falls due; 0: nothing pending

  void WakeAt(int64_t t) { next = next == 0 ? t : std::min(next, t); }
};

// Every (key, value) of `table`, copied out of the store's read transaction.
inline Result<std::vector<std::pair<Bytes, Bytes>>> ReadTable(store::Store& store,
                                                              std::string_view table) {
  std::vector<std::pair<Bytes, Bytes>> records;
  OTD_RETURN_IF_ERROR(store.ForEach(table, [&](ByteView k, ByteView v) {
    records.emplace_back(Bytes(k.begin(), k.end()), Bytes(v.begin(), v.end()));
    return true;
  }));
  return records;
}

// open(key, value) -> Result<Record>. drop(key, value, reason, attempts) deletes a record that
// still holds `value` ("unreadable": a kDataLoss from open; "expired"). open_failed(status) is
// told any other open error and returns when to try again (0: with the next scan).
template <class Record, class Open, class Drop, class OpenFailed>
DueScan<Record> ScanDue(std::vector<std::pair<Bytes, Bytes>> records, int64_t now,
                        SeenValues& seen_values, Open open, Drop drop, OpenFailed open_failed) {
  DueScan<Record> scan;
  SeenValues seen;
  for (auto& [key, value] : records) {
    const std::string k(AsString(key));
    if (auto it = seen_values.find(k);
        it != seen_values.end() && it->second.value == value && it->second.due_at > now) {
      scan.WakeAt(it->second.due_at);
      seen.insert(seen_values.extract(it));
      continue;
    }
    Result<Record> record = open(key, value);
    if (!record.ok()) {
      if (record.status().code() == Code::kDataLoss) {
        drop(key, value, "unreadable", 0);
      } else if (int64_t retry_at = open_failed(record.status()); retry_at > 0) {
        scan.WakeAt(retry_at);
      }
      continue;
    }
    if (record->expires_at <= now) {
      drop(key, value, "expired", record->attempts);
      continue;
    }
    if (record->not_before > now) {
      const int64_t due_at = std::min(record->not_before, record->expires_at);
      seen[k] = SeenValue{value, due_at};
      scan.WakeAt(due_at);
      continue;
    }
    scan.due.push_back({std::move(key), std::move(value), std::move(record).value()});
  }
  seen_values = std::move(seen);
  return scan;
}

}  // namespace otd::service::internal
