#include "daemon/migrate.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <vector>

#include "daemon/runtime.h"
#include "service/tables.h"
#include "store/lmdb_store.h"
#include "store/pg_store.h"

namespace otd::daemon {
namespace {

// service/internal/meta.h kMetaIdentity: the vault identity record in table meta.
constexpr std::string_view kIdentityKey = "vault_identity";

ByteView View(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

Result<uint64_t> CountRecords(const store::Store& s, const std::string& table) {
  uint64_t n = 0;
  OTD_RETURN_IF_ERROR(s.ForEach(table, [&](ByteView, ByteView) {
    ++n;
    return true;
  }));
  return n;
}

}  // namespace

Result<std::unique_ptr<ServeLock>> ServeLock::Acquire(const std::string& storage_path,
                                                      bool exclusive) {
  std::error_code ec;
  std::filesystem::create_directories(storage_path, ec);
  const std::string path = storage_path + "/serve.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Unavailable("cannot open " + path + ": " + std::strerror(errno));
  }
  if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return FailedPrecondition(
          exclusive ? "a daemon serves the store at " + storage_path + " (" + path +
                          " is locked): stop it first"
                    : "the store at " + storage_path + " is being migrated (" + path +
                          " is locked): wait until opentoken-admin migrate ends");
    }
    return Unavailable("cannot lock " + path + ": " + std::strerror(err));
  }
  return std::unique_ptr<ServeLock>(new ServeLock(fd));
}

ServeLock::~ServeLock() { ::close(fd_); }

Result<std::unique_ptr<store::Store>> OpenStoreOnly(const Config& config, Logger& log) {
  if (config.storage_backend == "postgresql") {
    OTD_ASSIGN_OR_RETURN(store::PgOptions po, PgOptionsFrom(config));
    OTD_ASSIGN_OR_RETURN(std::unique_ptr<store::PgStore> pg,
                         store::PgStore::Open(std::move(po), &log));
    return std::unique_ptr<store::Store>(std::move(pg));
  }
  store::LmdbOptions so;
  so.path = config.storage_path;
  so.map_size_bytes = config.storage_map_size_mb * 1024 * 1024;
  so.tables = service::AllTables();
  OTD_ASSIGN_OR_RETURN(std::unique_ptr<store::LmdbStore> lmdb, store::LmdbStore::Open(so, &log));
  return std::unique_ptr<store::Store>(std::move(lmdb));
}

Status SameToken(const Config& from, const Config& to) {
  if (from.hsm_module != to.hsm_module || from.hsm_token_label != to.hsm_token_label ||
      from.hsm_token_serial != to.hsm_token_serial) {
    return FailedPrecondition(
        "the two configurations name different tokens (hsm.module, hsm.token_label, "
        "hsm.token_serial must be the same): the records would be unreadable in the target");
  }
  return Status();
}

Result<MigrateReport> MigrateStore(store::Store& source, store::Store& target,
                                   const MigrateOptions& options) {
  const std::vector<std::string> tables = service::AllTables();
  OTD_ASSIGN_OR_RETURN(auto source_id, source.Get(service::tables::kMeta, View(kIdentityKey)));
  if (!source_id.has_value()) {
    return FailedPrecondition(
        "the source store holds no vault identity record (run opentoken-admin init or start the "
        "daemon on it once)");
  }
  OTD_ASSIGN_OR_RETURN(auto target_id, target.Get(service::tables::kMeta, View(kIdentityKey)));
  if (target_id.has_value() && *target_id != *source_id) {
    return FailedPrecondition(
        "the target store holds another vault (its identity record differs "
        "from the source's): refusing to mix two vaults");
  }
  std::map<std::string, uint64_t> totals;
  uint64_t target_records = 0;
  for (const auto& t : tables) {
    OTD_ASSIGN_OR_RETURN(totals[t], CountRecords(source, t));
    OTD_ASSIGN_OR_RETURN(uint64_t n, CountRecords(target, t));
    target_records += n;
  }
  if (target_records > 0 && !options.allow_non_empty) {
    return FailedPrecondition("the target store is not empty (" + std::to_string(target_records) +
                              " records): give --allow-non-empty to copy into it anyway");
  }

  MigrateReport report;
  for (const auto& t : tables) {
    const uint64_t total = totals[t];
    uint64_t done = 0;
    Status failed;
    std::vector<store::Mutation> batch;
    auto flush = [&]() -> Status {
      if (batch.empty()) {
        return Status();
      }
      const size_t n = batch.size();
      OTD_RETURN_IF_ERROR(target.Apply(std::move(batch)));
      batch.clear();
      done += n;
      if (options.copy_progress) {
        options.copy_progress(t, done, std::max(total, done));
      }
      return Status();
    };
    if (options.copy_progress) {
      options.copy_progress(t, 0, total);
    }
    Status s = source.ForEach(t, [&](ByteView key, ByteView value) {
      auto expiry = source.ExpiryOf(t, key);
      if (!expiry.ok()) {
        failed = expiry.status();
        return false;
      }
      store::Mutation m;
      m.op = store::Op::kPut;
      m.table = t;
      m.key.assign(key.begin(), key.end());
      m.value.assign(value.begin(), value.end());
      m.expires_at = *expiry;
      batch.push_back(std::move(m));
      if (batch.size() >= options.batch_records) {
        failed = flush();
        return failed.ok();
      }
      return true;
    });
    OTD_RETURN_IF_ERROR(s);
    OTD_RETURN_IF_ERROR(failed);
    OTD_RETURN_IF_ERROR(flush());
    if (options.copy_progress && total == 0) {
      options.copy_progress(t, 0, 0);
    }
    report.copied += done;
  }

  // Verify: source -> target (value and expiry), then target -> source (nothing extra).
  auto mismatch = [&](const std::string& t, const std::string& what) {
    if (report.mismatches++ == 0) {
      report.first_mismatch = "table " + t + ": " + what;
    }
  };
  for (const auto& t : tables) {
    const uint64_t total = totals[t];
    uint64_t done = 0;
    Status failed;
    Status s = source.ForEach(t, [&](ByteView key, ByteView value) {
      auto got = target.Get(t, key);
      auto want_exp = source.ExpiryOf(t, key);
      auto got_exp = target.ExpiryOf(t, key);
      if (!got.ok() || !want_exp.ok() || !got_exp.ok()) {
        failed = !got.ok() ? got.status() : !want_exp.ok() ? want_exp.status() : got_exp.status();
        return false;
      }
      if (!got->has_value()) {
        mismatch(t, "a record is missing in the target");
      } else if (!std::equal((*got)->begin(), (*got)->end(), value.begin(), value.end())) {
        mismatch(t, "a record's value differs");
      } else if (*want_exp != *got_exp) {
        mismatch(t, "a record's expiry differs (" + std::to_string(*want_exp) + " vs " +
                        std::to_string(*got_exp) + ")");
      }
      ++done;
      if (options.verify_progress && (done % 1000 == 0 || done == total)) {
        options.verify_progress(t, done, std::max(total, done));
      }
      return true;
    });
    OTD_RETURN_IF_ERROR(s);
    OTD_RETURN_IF_ERROR(failed);
    report.verified += done;
    s = target.ForEach(t, [&](ByteView key, ByteView) {
      auto have = source.Get(t, key);
      if (!have.ok()) {
        failed = have.status();
        return false;
      }
      if (!have->has_value()) {
        mismatch(t, "the target holds a record the source does not");
      }
      return true;
    });
    OTD_RETURN_IF_ERROR(s);
    OTD_RETURN_IF_ERROR(failed);
  }
  return report;
}

namespace {

// A bar redrawn in place on a terminal; otherwise a line at the start and the end of each table
// and every 10 %.
class TableProgress {
 public:
  explicit TableProgress(std::string verb) : verb_(std::move(verb)), tty_(::isatty(2) == 1) {}
  void Update(const std::string& table, uint64_t done, uint64_t total) {
    const unsigned pct = total == 0 ? 100 : static_cast<unsigned>(done * 100 / total);
    if (tty_) {
      constexpr unsigned kWidth = 30;
      std::string bar(pct * kWidth / 100, '#');
      bar.resize(kWidth, '.');
      std::cerr << "\r" << verb_ << " " << table << " [" << bar << "] " << done << "/" << total
                << " (" << pct << "%)\x1b[K" << (done == total ? "\n" : "") << std::flush;
      return;
    }
    if (table != table_) {
      table_ = table;
      last_decile_ = 0;
      ended_ = false;
      if (done < total || total == 0) {
        std::cerr << verb_ << " " << table << ": " << done << "/" << total << "\n";
      }
    }
    if ((pct / 10 != last_decile_ || done == total) && !ended_) {
      last_decile_ = pct / 10;
      ended_ = done == total;
      std::cerr << verb_ << " " << table << ": " << done << "/" << total << " (" << pct << "%)\n";
    }
  }

 private:
  std::string verb_;
  bool tty_;
  std::string table_;
  unsigned last_decile_ = 0;
  bool ended_ = false;
};

int Refuse(const Status& s) {
  std::cerr << "opentoken-admin migrate: " << s.message() << "\n";
  return s.code() == Code::kFailedPrecondition ? 1 : ExitCodeFor(s);
}

}  // namespace

int RunMigrate(Runtime& rt, const Config& from, const std::string& to_config_path,
               bool allow_non_empty, Logger& log) {
  auto to = LoadConfigFile(to_config_path);
  if (!to.ok()) {
    std::cerr << "opentoken-admin migrate: " << to_config_path << ": " << to.status().message()
              << "\n";
    return kExitConfig;
  }
  const bool same_lmdb = from.storage_backend == "lmdb" && to->storage_backend == "lmdb" &&
                         std::filesystem::weakly_canonical(from.storage_path) ==
                             std::filesystem::weakly_canonical(to->storage_path);
  const bool same_pg = from.storage_backend == "postgresql" &&
                       to->storage_backend == "postgresql" &&
                       from.storage_pg_conninfo == to->storage_pg_conninfo;
  if (same_lmdb || same_pg) {
    std::cerr << "opentoken-admin migrate: source and target are the same store\n";
    return kExitUsage;
  }
  if (Status s = SameToken(from, *to); !s.ok()) {
    return Refuse(s);
  }
  // The source must belong to the token both configurations name.
  if (Status s = rt.vault->keys().VerifyStoreIdentity(from.storage_path, /*adopt=*/false);
      !s.ok()) {
    return Refuse(s);
  }
  std::unique_ptr<ServeLock> target_lock;
  if (to->storage_backend == "lmdb") {
    auto l = ServeLock::Acquire(to->storage_path, /*exclusive=*/true);
    if (!l.ok()) {
      return Refuse(l.status());
    }
    target_lock = std::move(l).value();
  }
  if (to->storage_backend == "postgresql" && !to->storage_path.empty()) {
    // The daemon keeps local state there (audit trail, outbox).
    std::error_code ec;
    if (std::filesystem::create_directories(to->storage_path, ec)) {
      std::filesystem::permissions(to->storage_path, std::filesystem::perms::owner_all, ec);
    }
  }
  if (to->storage_backend == "postgresql") {
    // Creates the schema when absent (idempotent); `init` cannot: it would start a new vault.
    auto po = PgOptionsFrom(*to);
    if (!po.ok()) {
      return Refuse(po.status());
    }
    if (auto v = store::PgMigrate(*po); !v.ok()) {
      return Refuse(v.status());
    }
  }
  auto target = OpenStoreOnly(*to, log);
  if (!target.ok()) {
    return Refuse(target.status());
  }
  TableProgress copy("copy");
  TableProgress verify("verify");
  MigrateOptions options;
  options.allow_non_empty = allow_non_empty;
  options.copy_progress = [&](const std::string& t, uint64_t d, uint64_t n) {
    copy.Update(t, d, n);
  };
  options.verify_progress = [&](const std::string& t, uint64_t d, uint64_t n) {
    verify.Update(t, d, n);
  };
  auto report = MigrateStore(*rt.store, **target, options);
  if (!report.ok()) {
    return Refuse(report.status());
  }
  std::cout << "migrate: copied " << report->copied << " records from " << from.storage_backend
            << " to " << to->storage_backend << "; verified " << report->verified << "\n";
  if (report->mismatches > 0) {
    std::cout << "migrate: verify found " << report->mismatches
              << " mismatches (first: " << report->first_mismatch << ")\n";
    return 1;
  }
  std::cout << "migrate: verify ok: every (table, key, value, expiry) matches\n";
  return kExitOk;
}

}  // namespace otd::daemon
