#pragma once
// `opentoken-admin migrate --to-config NEW.json`: copies a vault from the store of the current
// configuration into the store of NEW.json (LMDB -> PostgreSQL and back), byte for byte.
//
// Records are sealed and keyed by keyed hashes (DESIGN §4): they are copied as they are, never
// opened, each with its TTL expiry (store::Store::ExpiryOf). The token is not needed to copy;
// the source's identity is checked against the source's token by the caller, and both
// configurations must name the same token (hsm.module, hsm.token_label, hsm.token_serial).
//
// Refusals (nothing is written): a target whose vault identity record differs from the
// source's (another vault), a non-empty target unless `allow_non_empty` (then records are
// overwritten, nothing is deleted, and the verify pass reports target records the source lacks),
// a source without an identity record, and an LMDB source a daemon serves (ServeLock below).
//
// Copy: table by table in key order (one snapshot per table), kPut batches of `batch_records`
// committed as one store batch each. Verify: every (table, key, value, expiry) of the source is
// read back from the target and compared, and every target key must exist in the source.
//
// PostgreSQL sources: a daemon connected to the database cannot be detected from here (it may run
// on another host): stop every daemon first; writes made during the copy show up as mismatches
// in the verify pass.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "daemon/config.h"
#include "store/store.h"

namespace otd {
class Logger;
}  // namespace otd

namespace otd::daemon {

// An flock(2) on <storage.path>/serve.lock, held while alive. The daemon holds it shared while it
// serves an LMDB store; migrate takes it exclusive, so neither runs while the other does
// (kFailedPrecondition naming the path when the lock is taken).
class ServeLock {
 public:
  static Result<std::unique_ptr<ServeLock>> Acquire(const std::string& storage_path,
                                                    bool exclusive);
  ~ServeLock();
  ServeLock(const ServeLock&) = delete;
  ServeLock& operator=(const ServeLock&) = delete;

 private:
  explicit ServeLock(int fd) : fd_(fd) {}
  int fd_;
};

// Opens the store a configuration describes (LMDB or PostgreSQL, whose schema must exist:
// `opentoken-admin init` creates it), without the token.
Result<std::unique_ptr<store::Store>> OpenStoreOnly(const Config& config, Logger& log);

// kFailedPrecondition when the two configurations do not name the same token.
Status SameToken(const Config& from, const Config& to);

struct MigrateOptions {
  bool allow_non_empty = false;
  size_t batch_records = 1000;
  // Progress: table, records of the table done, records of the table.
  std::function<void(const std::string&, uint64_t, uint64_t)> copy_progress;
  std::function<void(const std::string&, uint64_t, uint64_t)> verify_progress;
};

struct MigrateReport {
  uint64_t copied = 0;
  uint64_t verified = 0;
  uint64_t mismatches = 0;
  std::string first_mismatch;  // "table <name>: <what>" (no key bytes, no values)
};

// Refusals come back as kFailedPrecondition (exit 1), unusable stores as kUnavailable (69).
Result<MigrateReport> MigrateStore(store::Store& source, store::Store& target,
                                   const MigrateOptions& options);

}  // namespace otd::daemon

namespace otd::daemon {

struct Runtime;

// The whole command: `rt` is the source (opened from `from`); the source's identity must match
// its token; the target comes from `to_config_path`. Progress on stderr (a bar per table on a
// terminal, plain lines otherwise), the summary on stdout. Returns the exit code: 0 copied and
// verified, 1 refused (other vault, non-empty target, different token, daemon running, no
// identity) or verify found mismatches, 64 usage (same store twice), 69 a store or the token is
// unusable, 78 NEW.json is not a valid configuration.
int RunMigrate(Runtime& rt, const Config& from, const std::string& to_config_path,
               bool allow_non_empty, Logger& log);

}  // namespace otd::daemon
