// opentoken-admin: operator commands. Exit codes: 0 ok, 64 usage, 69 HSM/store unusable,
// 78 bad configuration, 1 the command ran and found a problem.

#include <iostream>
#include <string>
#include <vector>

#include "common/log.h"
#include "daemon/config.h"
#include "daemon/hardening.h"
#include "daemon/runtime.h"

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
    "\n"
    "exit codes: 0 ok, 1 problem found, 64 usage, 69 HSM or store unusable, 78 bad configuration\n";

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

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? kExitUsage : kExitOk;
  }
  std::string command = args[0];
  std::string config_path;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << kUsage;
      return kExitOk;
    } else {
      std::cerr << kUsage;
      return kExitUsage;
    }
  }
  if (command != "init" && command != "status") {
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
  Logger log(std::cerr, LogLevel::kWarn);
  auto rt = OpenRuntime(*config, log);
  if (!rt.ok()) {
    return Fail(rt.status());
  }
  return command == "init" ? Init(**rt) : StatusCommand(**rt);
}

}  // namespace
}  // namespace otd::daemon

int main(int argc, char** argv) { return otd::daemon::Main(argc, argv); }
