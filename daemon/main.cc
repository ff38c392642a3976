// opentokend: the vault daemon. Arguments, configuration and process hardening here; the parts
// are built by Daemon::Build (daemon/daemon.h). Exit codes: 0 clean stop, 78 bad configuration,
// 69 HSM/store unusable. Signals: SIGTERM/SIGINT drain and stop; SIGHUP reloads and goes on.

#include <unistd.h>
#include <csignal>
#include <cstdlib>

#include <iostream>
#include <optional>
#include <string>

#include "common/build_info.h"
#include "common/log.h"
#include "common/metrics.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/hardening.h"
#include "daemon/runtime.h"

namespace otd::daemon {
namespace {

void Usage() {
  std::cerr << "usage: opentokend --config FILE [--allow-root]\n"
               "       opentokend --version\n"
               "       opentokend --version\n"
               "  Serves the opentokend API. See README.md for the configuration keys.\n";
}

// opentokend_build_info{version,git,compiler,build_type} 1 (the Prometheus "info" idiom: join
// on it to label other series with the build).
Status AddBuildInfoMetric(metrics::Registry& registry) {
  OTD_ASSIGN_OR_RETURN(
      metrics::GaugeFamily * family,
      registry.AddGauge("opentokend_build_info",
                        "The running build: version, git description, compiler, build type; "
                        "always 1",
                        {"version", "git", "compiler", "build_type"}));
  const BuildInfo& b = GetBuildInfo();
  family->With({b.version, b.git, b.compiler, b.build_type}).Set(1);
  return Status::Ok();
}

LogLevel ParseLevel(const std::string& s) {
  if (s == "debug") {
    return LogLevel::kDebug;
  }
  if (s == "warn") {
    return LogLevel::kWarn;
  }
  if (s == "error") {
    return LogLevel::kError;
  }
  return LogLevel::kInfo;
}

struct Args {
  std::string config_path;
  bool allow_root = false;
};

// nullopt: the exit code to return (usage, --help) is in *exit_code.
std::optional<Args> ParseArgs(int argc, char** argv, int* exit_code) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      a.config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0 && arg.size() > 9) {
      a.config_path = arg.substr(9);
    } else if (arg == "--version") {
      std::cout << VersionText("opentokend");
      *exit_code = kExitOk;
      return std::nullopt;
    } else if (arg == "--allow-root") {
      a.allow_root = true;
    } else {
      Usage();
      *exit_code = arg == "--help" || arg == "-h" ? kExitOk : kExitUsage;
      return std::nullopt;
    }
  }
  a.config_path = ResolveConfigPath(a.config_path, std::getenv(kConfigEnvironmentVariable));
  return a;
}

int Main(int argc, char** argv) {
  int exit_code = kExitOk;
  const std::optional<Args> args = ParseArgs(argc, argv, &exit_code);
  if (!args) {
    return exit_code;
  }
  // log.priority_prefix "auto": journald's stream on stdout (issue 18 part 7).
  const bool journal = StdoutIsJournal(std::getenv("JOURNAL_STREAM"));
  Logger boot_log(std::cout, LogLevel::kInfo, journal);
  if (Status s = DisableCoreDumps(); !s.ok()) {
    boot_log.Error("startup_failed", {{"reason", s.message()}});
    return kExitUnavailable;
  }
  auto config = LoadConfigFile(args->config_path);
  if (!config.ok()) {
    boot_log.Error("config_invalid", {{"reason", config.status().message()}});
    std::cerr << "opentokend: " << config.status().message() << "\n";
    return kExitConfig;
  }
  const bool priority_prefix =
      config->log_priority_prefix == "on" || (config->log_priority_prefix == "auto" && journal);
  Logger log(std::cout, ParseLevel(config->log_level), priority_prefix);
  {
    const BuildInfo& b = GetBuildInfo();
    log.Info("starting", {{"version", b.version},
                          {"git", b.git},
                          {"build_type", b.build_type},
                          {"compiler", b.compiler}});
  }
  if (::geteuid() == 0) {
    if (!args->allow_root) {
      log.Error("startup_failed", {{"reason",
                                    "refusing to run as root; use a dedicated user "
                                    "(or --allow-root for a local trial)"}});
      return kExitConfig;
    }
    log.Warn("running_as_root", {{"reason", "--allow-root given"}});
  }
  FitConnectionsToFileLimit(*config, log);
  auto heap = SecureHeap::Init();
  if (!heap.ok()) {
    log.Error("startup_failed", {{"reason", heap.status().message()}});
    return kExitUnavailable;
  }
  // Signals are handled by one thread with sigwait, so every other thread has them blocked.
  // SIGHUP's default action would end the daemon without a drain (and systemd's
  // Restart=on-failure does not restart a daemon killed by SIGHUP): it reloads instead.
  sigset_t signals;
  (void)sigemptyset(&signals);
  (void)sigaddset(&signals, SIGTERM);
  (void)sigaddset(&signals, SIGINT);
  (void)sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  (void)::signal(SIGPIPE, SIG_IGN);

  // Outlives everything measured into it (declared before the daemon).
  metrics::Registry registry;
  metrics::Registry* measured = config->metrics.enabled ? &registry : nullptr;
  metrics::CollectorHandle process_metrics;
  if (measured != nullptr) {
    auto h = metrics::AddProcessMetrics(registry);
    if (!h.ok()) {
      log.Error("startup_failed", {{"reason", h.status().message()}});
      return kExitSoftware;
    }
    process_metrics = std::move(*h);
    if (Status s = AddBuildInfoMetric(registry); !s.ok()) {
      log.Error("startup_failed", {{"reason", s.message()}});
      return kExitSoftware;
    }
  }
  auto daemon = Daemon::Build(*config, log, measured);
  if (!daemon.ok()) {
    log.Error("startup_failed", {{"reason", daemon.status().message()}});
    std::cerr << "opentokend: " << daemon.status().message() << "\n";
    return ExitCodeFor(daemon.status());
  }
  return (*daemon)->Run(signals);
}

}  // namespace
}  // namespace otd::daemon

int main(int argc, char** argv) {
  try {
    return otd::daemon::Main(argc, argv);
  } catch (const std::exception& e) {  // a bug: nothing may throw across a module boundary
    std::cerr << "opentokend: unexpected exception: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "opentokend: unexpected exception\n";
  }
  return otd::daemon::kExitSoftware;
}
