// opentokend: the vault daemon. Composition root: config → hardening → token, store, vault →
// router → HTTP server. Exit codes: 0 clean stop, 78 bad configuration, 69 HSM/store unusable.

#include <pthread.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <iostream>
#include <string>
#include <thread>

#include "api/routes.h"
#include "api/server.h"
#include "api/validation.h"
#include "service/access_codes.h"
#include "service/access_tokens.h"
#include "service/tokens.h"
#include "mail/mail.h"
#include "common/log.h"
#include "daemon/config.h"
#include "daemon/hardening.h"
#include "daemon/runtime.h"

namespace otd::daemon {
namespace {

void Usage() {
  std::cerr << "usage: opentokend --config FILE [--allow-root]\n"
               "  Serves the opentokend API. See README.md for the configuration keys.\n";
}

LogLevel ParseLevel(const std::string& s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "warn") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

api::ServerOptions ServerOptionsFrom(const Config& c) {
  api::ServerOptions o;
  if (c.unix_listen) {
    api::UnixListener u{c.unix_listen->path, c.unix_listen->mode, -1};
    // Socket activation (opentokend.socket): adopt the inherited listening socket.
    int n = sd_listen_fds(1);
    if (n >= 1 && sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, nullptr, 0) > 0) {
      u.inherited_fd = SD_LISTEN_FDS_START;
    }
    o.unix_listener = u;
  }
  if (c.tls_listen) {
    o.tls_listener = api::TlsListener{c.tls_listen->address, c.tls_listen->port,
                                      c.tls_listen->certificate, c.tls_listen->private_key};
  }
  const auto& l = c.limits;
  o.limits.max_header_bytes = l.max_header_bytes;
  o.limits.max_body_bytes = l.max_body_bytes;
  o.limits.max_json_body_bytes = l.max_json_body_bytes;
  o.limits.request_timeout = std::chrono::milliseconds(l.request_timeout_ms);
  o.limits.idle_timeout = std::chrono::milliseconds(l.idle_timeout_ms);
  o.limits.write_timeout = std::chrono::milliseconds(l.write_timeout_ms);
  o.limits.handshake_timeout = std::chrono::milliseconds(l.request_timeout_ms);
  o.limits.max_connections = l.max_connections;
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  o.io_threads = cores;
  // Workers block on the HSM and on durable commits; enough of them keep the single store writer
  // batching (bench/: tokenize went from 28 % to 62 % of its bound going from 4 to 32).
  o.worker_threads = c.workers > 0 ? c.workers : std::max(32u, cores * 4);
  return o;
}

int Main(int argc, char** argv) {
  std::string config_path;
  bool allow_root = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--allow-root") {
      allow_root = true;
    } else if (a == "--help" || a == "-h") {
      Usage();
      return kExitOk;
    } else {
      Usage();
      return kExitUsage;
    }
  }
  if (config_path.empty()) {
    Usage();
    return kExitUsage;
  }
  Logger boot_log(std::cout);
  if (Status s = DisableCoreDumps(); !s.ok()) {
    boot_log.Error("startup_failed", {{"reason", s.message()}});
    return kExitUnavailable;
  }
  auto config = LoadConfigFile(config_path);
  if (!config.ok()) {
    boot_log.Error("config_invalid", {{"reason", config.status().message()}});
    std::cerr << "opentokend: " << config.status().message() << "\n";
    return kExitConfig;
  }
  Logger log(std::cout, ParseLevel(config->log_level));
  if (::geteuid() == 0) {
    if (!allow_root) {
      log.Error("startup_failed", {{"reason", "refusing to run as root; use a dedicated user "
                                              "(or --allow-root for a local trial)"}});
      return kExitConfig;
    }
    log.Warn("running_as_root", {{"reason", "--allow-root given"}});
  }
  auto heap = SecureHeap::Init();
  if (!heap.ok()) {
    log.Error("startup_failed", {{"reason", heap.status().message()}});
    return kExitUnavailable;
  }
  // Signals are handled by one thread with sigwait, so every other thread has them blocked.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto rt = OpenRuntime(*config, log);
  if (!rt.ok()) {
    log.Error("startup_failed", {{"reason", rt.status().message()}});
    std::cerr << "opentokend: " << rt.status().message() << "\n";
    return ExitCodeFor(rt.status());
  }
  if (Status s = (*rt)->vault->CheckKeys(); !s.ok()) {
    log.Error("startup_failed", {{"reason", s.message()}});
    std::cerr << "opentokend: " << s.message() << "\n";
    return kExitUnavailable;
  }
  auto mailer = mail::MakeMailer(MailOptionsFrom(*config), log);
  if (!mailer.ok()) {
    log.Error("startup_failed", {{"reason", mailer.status().message()}});
    std::cerr << "opentokend: " << mailer.status().message() << "\n";
    return ExitCodeFor(mailer.status());
  }
  auto schemas = api::SchemaValidator::Create();
  if (!schemas.ok()) {
    log.Error("startup_failed", {{"reason", schemas.status().message()}});
    return kExitSoftware;
  }
  Runtime& r = **rt;
  service::Accounts accounts(*r.vault, *r.store, **mailer, r.clock, log, AccountsOptionsFrom(*config));
  service::AccessCodes access_codes(*r.vault, *r.token, *r.store, r.clock, log,
                                    {.lifetime_seconds = config->access_code_lifetime_seconds});
  service::Tokens tokens(*r.vault, *r.store, r.clock, log,
                         {.max_lifetime_seconds = config->token_max_lifetime_seconds});
  service::AccessTokensOptions access_token_options;
  {
    const auto& a = config->access_tokens;
    access_token_options.default_lifetime_seconds = a.default_lifetime_seconds;
    access_token_options.max_lifetime_seconds = a.max_lifetime_seconds;
    access_token_options.email_lifetime_seconds = a.email_lifetime_seconds;
    access_token_options.email_scope = a.email_scope;
    access_token_options.address_rate_limit.free_failures = a.email_requests_per_address;
    access_token_options.peer_rate_limit.free_failures = a.email_requests_per_peer;
  }
  service::AccessTokens access_tokens(*r.vault, *r.store, **mailer, r.clock, log,
                                      std::move(access_token_options));
  api::ServerOptions server_options = ServerOptionsFrom(*config);
  // The router's handlers keep references to `services`: it lives until the server has stopped.
  const api::Services services{.vault = *r.vault,
                               .accounts = accounts,
                               .access_codes = access_codes,
                               .tokens = tokens,
                               .access_tokens = access_tokens,
                               .schemas = **schemas,
                               .clock = r.clock,
                               .log = log,
                               .limits = server_options.limits,
                               .signature_past_seconds = config->signature_past_seconds,
                               .signature_future_seconds = config->signature_future_seconds};
  api::Router router;
  api::RegisterRoutes(router, services);
  auto server = api::HttpServer::Create(server_options, router, log);
  if (!server.ok()) {
    log.Error("startup_failed", {{"reason", server.status().message()}});
    std::cerr << "opentokend: " << server.status().message() << "\n";
    return ExitCodeFor(server.status());
  }
  if (config->unix_listen) {
    log.Info("listening", {{"transport", "unix"}, {"path", config->unix_listen->path}});
  }
  if (config->tls_listen) {
    log.Info("listening", {{"transport", "tls"},
                           {"address", config->tls_listen->address},
                           {"port", static_cast<int64_t>((*server)->BoundTlsPort())}});
  }
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGTERM || sig == SIGINT) {
      log.Info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      sd_notify(0, "STOPPING=1");
      (*server)->Stop();
    }
  });
  // Expired registrations, challenges and sessions (and the keys of abandoned registrations)
  // are purged in the background.
  std::mutex purge_mu;
  std::condition_variable purge_cv;
  bool purge_stop = false;
  std::thread purge_thread([&] {
    std::unique_lock lock(purge_mu);
    while (!purge_cv.wait_for(lock, std::chrono::seconds(60), [&] { return purge_stop; })) {
      auto purged = (*rt)->store->PurgeExpired((*rt)->clock.NowSeconds(), 10'000);
      if (!purged.ok()) {
        log.Warn("purge_failed", {{"reason", purged.status().message()}});
      } else if (*purged > 0) {
        log.Info("purged_expired", {{"records", static_cast<int64_t>(*purged)}});
      }
    }
  });
  sd_notify(0, "READY=1");
  log.Info("ready");
  (*server)->Run();
  {
    std::lock_guard lock(purge_mu);
    purge_stop = true;
  }
  purge_cv.notify_all();
  purge_thread.join();
  // Run() returns after Stop(); wake the signal thread if Run ended for another reason.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  log.Info("stopped");
  return kExitOk;
}

}  // namespace
}  // namespace otd::daemon

int main(int argc, char** argv) { return otd::daemon::Main(argc, argv); }
