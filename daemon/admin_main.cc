// opentoken-admin: operator commands. Exit codes: 0 ok, 64 usage, 69 HSM/store unusable,
// 78 bad configuration, 1 the command ran and found a problem.

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/log.h"
#include "daemon/config.h"
#include "daemon/hardening.h"
#include "daemon/runtime.h"
#include "service/maintenance.h"

namespace otd::daemon {
namespace {

constexpr const char* kUsage =
    "usage: opentoken-admin COMMAND --config FILE\n"
    "\n"
    "commands:\n"
    "  init     create the key-encryption key and the index key in the token if absent\n"
    "           (idempotent: running it again creates nothing)\n"
    "  status   show the token, its keys (and that they are sensitive and non-extractable),\n"
    "           and the store's tables\n"
    "  verify   check every stored record is a well-formed versioned record and every wrapped\n"
    "           data key unwraps in the token; counts per key version (exit 1 on a problem)\n"
    "  purge-expired   delete expired records now (the daemon also does this every minute)\n"
    "  backup DIR      consistent, compacted hot copy of the store into a new directory DIR,\n"
    "                  with manifest.json (key versions, counts, SHA-256); safe while serving\n"
    "  restore DIR     copy a backup into storage.path, which must be empty or absent; checks\n"
    "                  the manifest's SHA-256 first. The token (HSM) is backed up separately.\n"
    "\n"
    "exit codes: 0 ok, 1 problem found, 64 usage, 69 HSM or store unusable, 78 bad configuration\n"
    "(backup/restore: 1 when the target is not empty or the backup does not match its manifest)\n";

// SHA-256 of a file, streamed.
Result<std::string> FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Unavailable("cannot read " + path);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

bool EmptyOrAbsent(const std::string& dir) {
  std::error_code ec;
  return !std::filesystem::exists(dir, ec) || std::filesystem::is_empty(dir, ec);
}

int Fail(const Status& s) {
  std::cerr << "opentoken-admin: " << s.message() << "\n";
  return ExitCodeFor(s);
}

int Init(Runtime& rt) {
  auto report = rt.vault->InitKeys();
  if (!report.ok()) {
    return Fail(report.status());
  }
  std::cout << "key-encryption key " << service::KekLabel(report->versions.kek) << ": "
            << (report->created_kek ? "created" : "already present") << "\n"
            << "index key " << service::IndexKeyLabel(report->versions.index) << ": "
            << (report->created_index ? "created" : "already present") << "\n";
  return kExitOk;
}

int StatusCommand(Runtime& rt) {
  std::cout << "token: " << rt.token->Describe() << "\n";
  auto health = rt.vault->Health();
  std::cout << "health: " << (health.ok() ? "healthy" : "unhealthy") << "\n";
  if (!health.detail.empty()) {
    std::cout << "  " << health.detail << "\n";
  }
  auto keys = rt.vault->DescribeKeys();
  if (keys.ok()) {
    for (const auto& k : *keys) {
      const auto& a = k.attributes;
      std::cout << "key " << k.label << ": sensitive=" << a.sensitive
                << " extractable=" << a.extractable << " always_sensitive=" << a.always_sensitive
                << " never_extractable=" << a.never_extractable << "\n";
    }
  } else {
    std::cout << "keys: " << keys.status().message() << "\n";
  }
  auto stats = rt.store->GetStats();
  if (stats.ok()) {
    std::cout << "store: map " << stats->map_size / (1024 * 1024) << " MiB, used "
              << stats->used_bytes / 1024 << " KiB\n";
    for (const auto& [name, t] : stats->tables) {
      std::cout << "  table " << name << ": " << t.entries << " records\n";
    }
  } else {
    std::cout << "store: " << stats.status().message() << "\n";
  }
  return health.ok() ? kExitOk : 1;
}

int Verify(Runtime& rt) {
  auto report = service::VerifyStore(*rt.vault, *rt.store);
  if (!report.ok()) {
    return Fail(report.status());
  }
  for (const auto& [table, n] : report->records_per_table) {
    std::cout << "table " << table << ": " << n << " records\n";
  }
  for (const auto& [v, n] : report->keys_per_kek_version) {
    std::cout << "data keys wrapped by " << service::KekLabel(v) << ": " << n << "\n";
  }
  for (const auto& [v, n] : report->records_per_data_key_version) {
    std::cout << "records sealed with data key version " << v << ": " << n << "\n";
  }
  if (report->bad > 0) {
    std::cout << "problems: " << report->bad << " (first: " << report->first_problem << ")\n";
    return 1;
  }
  std::cout << "verify: ok\n";
  return kExitOk;
}

int PurgeExpired(Runtime& rt) {
  size_t total = 0;
  for (;;) {
    auto n = rt.store->PurgeExpired(rt.clock.NowSeconds(), 10'000);
    if (!n.ok()) {
      return Fail(n.status());
    }
    total += *n;
    if (*n == 0) {
      break;
    }
  }
  std::cout << "purged " << total << " expired records\n";
  return kExitOk;
}

int Backup(Runtime& rt, const std::string& dir) {
  if (!EmptyOrAbsent(dir)) {
    std::cerr << "opentoken-admin: backup directory " << dir << " is not empty\n";
    return 1;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  auto versions = rt.vault->CurrentVersions();
  if (!versions.ok()) {
    return Fail(versions.status());
  }
  if (Status s = rt.store->CopyTo(dir); !s.ok()) {
    return Fail(s);
  }
  auto sum = FileSha256(dir + "/data.mdb");
  if (!sum.ok()) {
    return Fail(sum.status());
  }
  auto stats = rt.store->GetStats();
  nlohmann::json manifest = {{"format", 1},
                             {"created", static_cast<int64_t>(rt.clock.NowSeconds())},
                             {"kek_version", versions->kek},
                             {"index_version", versions->index},
                             {"token", rt.token->Describe()},
                             {"file", "data.mdb"},
                             {"bytes", std::filesystem::file_size(dir + "/data.mdb", ec)},
                             {"sha256", *sum}};
  if (stats.ok()) {
    for (const auto& [name, t] : stats->tables) {
      manifest["records"][name] = t.entries;
    }
  }
  std::ofstream(dir + "/manifest.json") << manifest.dump(2) << "\n";
  std::cout << "backup written to " << dir << " (sha256 " << *sum << ")\n"
            << "note: the keys stay in the HSM; back the token up with the HSM vendor's tools\n";
  return kExitOk;
}

int Restore(const Config& config, const std::string& dir) {
  std::ifstream in(dir + "/manifest.json");
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(in);
  } catch (const std::exception&) {
    std::cerr << "opentoken-admin: " << dir << "/manifest.json is missing or malformed\n";
    return 1;
  }
  if (manifest.value("format", 0) != 1 || !manifest.contains("sha256")) {
    std::cerr << "opentoken-admin: unknown backup format\n";
    return 1;
  }
  auto sum = FileSha256(dir + "/data.mdb");
  if (!sum.ok() || *sum != manifest["sha256"].get<std::string>()) {
    std::cerr << "opentoken-admin: " << dir << "/data.mdb does not match its manifest\n";
    return 1;
  }
  if (!EmptyOrAbsent(config.storage_path)) {
    std::cerr << "opentoken-admin: storage.path " << config.storage_path
              << " is not empty; restore only into an empty directory\n";
    return 1;
  }
  std::error_code ec;
  std::filesystem::create_directories(config.storage_path, ec);
  std::filesystem::permissions(config.storage_path, std::filesystem::perms::owner_all, ec);
  const std::string target = config.storage_path + "/data.mdb";
  std::filesystem::copy_file(dir + "/data.mdb", target, ec);
  if (ec) {
    std::cerr << "opentoken-admin: cannot copy the backup: " << ec.message() << "\n";
    return kExitUnavailable;
  }
  std::filesystem::permissions(target, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write, ec);
  int fd = ::open(target.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  std::cout << "restored " << dir << " into " << config.storage_path
            << "; run `opentoken-admin verify` with the same token before starting the daemon\n";
  return kExitOk;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? kExitUsage : kExitOk;
  }
  std::string command = args[0];
  std::string config_path;
  std::string dir;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if ((command == "backup" || command == "restore") && dir.empty() &&
               !args[i].empty() && args[i][0] != '-') {
      dir = args[i];
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << kUsage;
      return kExitOk;
    } else {
      std::cerr << kUsage;
      return kExitUsage;
    }
  }
  const bool known = command == "init" || command == "status" || command == "verify" ||
                     command == "purge-expired" || command == "backup" || command == "restore";
  if ((command == "backup" || command == "restore") && dir.empty()) {
    std::cerr << "opentoken-admin: " << command << " needs a directory\n";
    return kExitUsage;
  }
  if (!known) {
    std::cerr << "opentoken-admin: unknown command " << command << "\n" << kUsage;
    return kExitUsage;
  }
  if (config_path.empty()) {
    std::cerr << "opentoken-admin: --config FILE is required\n";
    return kExitUsage;
  }
  if (Status s = DisableCoreDumps(); !s.ok()) {
    return Fail(s);
  }
  auto heap = SecureHeap::Init();
  if (!heap.ok()) {
    return Fail(heap.status());
  }
  auto config = LoadConfigFile(config_path);
  if (!config.ok()) {
    return Fail(config.status());
  }
  if (command == "restore") {
    return Restore(*config, dir);
  }
  Logger log(std::cerr, LogLevel::kWarn);
  auto rt = OpenRuntime(*config, log);
  if (!rt.ok()) {
    return Fail(rt.status());
  }
  if (command == "init") return Init(**rt);
  if (command == "verify") return Verify(**rt);
  if (command == "purge-expired") return PurgeExpired(**rt);
  if (command == "backup") return Backup(**rt, dir);
  return StatusCommand(**rt);
}

}  // namespace
}  // namespace otd::daemon

int main(int argc, char** argv) { return otd::daemon::Main(argc, argv); }
