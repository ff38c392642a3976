// opentokend: the vault daemon. Composition root: config → hardening → token, store, vault →
// router → HTTP server, plus the admin-only metrics listener (its own router and server on a
// separate Unix socket). Exit codes: 0 clean stop, 78 bad configuration, 69 HSM/store unusable.
// Signals: SIGTERM/SIGINT drain and stop; SIGHUP reloads (Reload() below) and goes on serving.

#include <pthread.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <iostream>
#include <string>
#include <thread>

#include "api/metrics_endpoint.h"
#include "api/routes.h"
#include "api/server.h"
#include "api/validation.h"
#include "service/access_codes.h"
#include "service/access_tokens.h"
#include "service/audit.h"
#include "service/mail_requests.h"
#include "service/tokens.h"
#include "mail/mail.h"
#include "common/log.h"
#include "common/metrics.h"
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
  o.limits.handshake_timeout = std::chrono::milliseconds(l.handshake_timeout_ms);
  o.limits.max_connections = l.max_connections;
  o.limits.max_connections_per_peer = l.max_connections_per_peer;
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  o.io_threads = cores;
  // Tokenize and detokenize never wait for the disk on a worker (api::Deferred: the store or
  // audit writer completes the request), so workers mostly do HSM work: a few per core. More only
  // contend for the token's locks (BENCHMARKS.md run 5: 32 → 8 workers on 2 cores, detokenize
  // +24 %, daemon CPU per request -20 %). Other routes still wait for their commit on a worker;
  // the floor of 8 keeps some free for the hot routes meanwhile.
  o.worker_threads = c.workers > 0 ? c.workers : std::max(8u, cores * 4);
  return o;
}

// Scrape-time gauges read from the runtime: records per table and map use (Store::GetStats), the
// current key versions (Vault::CurrentVersions). The handle must die before the runtime.
Result<metrics::CollectorHandle> AddRuntimeMetrics(metrics::Registry& registry, Runtime& rt) {
  OTD_ASSIGN_OR_RETURN(metrics::GaugeFamily * records,
                       registry.AddGauge("opentokend_store_records",
                                         "Records per store table (sealed records, keyed hashes).",
                                         {"table"}));
  OTD_ASSIGN_OR_RETURN(metrics::GaugeFamily * map_size,
                       registry.AddGauge("opentokend_store_map_size_bytes",
                                         "LMDB map size (storage.map_size_mb)."));
  OTD_ASSIGN_OR_RETURN(metrics::GaugeFamily * used,
                       registry.AddGauge("opentokend_store_used_bytes",
                                         "Bytes of the LMDB map in use (last page)."));
  OTD_ASSIGN_OR_RETURN(metrics::GaugeFamily * versions,
                       registry.AddGauge("opentokend_key_version",
                                         "Current version of the token keys (kek, index).",
                                         {"key"}));
  OTD_ASSIGN_OR_RETURN(metrics::CounterFamily * errors,
                       registry.AddCounter("opentokend_metrics_collect_errors_total",
                                           "Scrapes where the store or the vault could not be read "
                                           "(their gauges keep the last value).",
                                           {"source"}));
  metrics::Counter* store_errors = &errors->With({"store"});
  metrics::Counter* vault_errors = &errors->With({"vault"});
  return registry.AddCollector([&rt, records, map_size, used, versions, store_errors,
                                vault_errors] {
    if (auto stats = rt.store->GetStats(); stats.ok()) {
      for (const auto& [table, s] : stats->tables) {
        records->With({table}).Set(static_cast<double>(s.entries));
      }
      map_size->Get().Set(static_cast<double>(stats->map_size));
      used->Get().Set(static_cast<double>(stats->used_bytes));
    } else {
      store_errors->Inc();
    }
    if (auto v = rt.vault->keys().CurrentVersions(); v.ok()) {
      versions->With({"kek"}).Set(v->kek);
      versions->With({"index"}).Set(v->index);
    } else {
      vault_errors->Inc();
    }
  });
}

// SIGHUP (`systemctl reload`, logrotate's postrotate): reopens the audit trail where it was
// rotated (the chain continues in the new file) and reloads the TLS certificate and key. The
// operational log goes to stdout (journald): nothing to reopen there. A part that fails keeps what
// it had (the old audit file, the old certificate) and the log says why; serving never stops.
void Reload(service::AuditLog& audit, api::HttpServer& server, bool has_tls, Logger& log) {
  sd_notify(0, "RELOADING=1");
  std::string audit_result;
  auto reopened = audit.Reopen();
  if (reopened.ok()) {
    audit_result = *reopened ? "reopened" : "unchanged";
  } else {
    audit_result = "failed";
    log.Error("audit_reopen_failed",
              {{"path", audit.path()}, {"reason", reopened.status().message()}});
  }
  std::string tls_result = "none";
  if (has_tls) {
    Status s = server.ReloadTls();
    tls_result = s.ok() ? "reloaded" : "failed";
    if (!s.ok()) {
      log.Error("tls_reload_failed",
                {{"reason", s.message()}, {"kept", "the certificate and key loaded before"}});
    }
  }
  const bool ok = audit_result != "failed" && tls_result != "failed";
  log.Log(ok ? LogLevel::kInfo : LogLevel::kWarn, "reloaded",
          {{"signal", "SIGHUP"}, {"audit", audit_result}, {"tls", tls_result}, {"ok", ok}});
  sd_notify(0, "READY=1");
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
  // Each listener may hold limits.max_connections client connections, each a descriptor; the
  // metrics listener 16; the HSM, the store, the logs and Asio need some more (17 at rest). With
  // fewer descriptors, the budgets are lowered to fit: a full table makes room for a newcomer,
  // running out of descriptors (EMFILE) would lock every newcomer out.
  if (auto files = RaiseOpenFileLimit(); files.ok()) {
    constexpr uint64_t kReserved = 16 + 128;
    const uint64_t listeners = (config->unix_listen ? 1 : 0) + (config->tls_listen ? 1 : 0);
    auto& l = config->limits;
    const uint64_t needed = listeners * l.max_connections + kReserved;
    if (*files < needed) {
      const uint64_t fit =
          *files > kReserved ? (*files - kReserved) / std::max<uint64_t>(1, listeners) : 1;
      const uint64_t was = l.max_connections;
      l.max_connections = static_cast<uint32_t>(std::max<uint64_t>(1, fit));
      // The same share of the table per peer as configured.
      l.max_connections_per_peer = static_cast<uint32_t>(
          std::max<uint64_t>(1, uint64_t{l.max_connections_per_peer} * l.max_connections / was));
      log.Warn("open_file_limit_low",
               {{"limit", static_cast<int64_t>(*files)},
                {"needed", static_cast<int64_t>(needed)},
                {"max_connections", static_cast<int64_t>(l.max_connections)},
                {"max_connections_per_peer", static_cast<int64_t>(l.max_connections_per_peer)},
                {"reason", "connection budgets lowered to fit; raise LimitNOFILE (the hard "
                           "limit) or lower limits.max_connections"}});
    }
  } else {
    log.Warn("open_file_limit_unknown", {{"reason", files.status().message()}});
  }
  auto heap = SecureHeap::Init();
  if (!heap.ok()) {
    log.Error("startup_failed", {{"reason", heap.status().message()}});
    return kExitUnavailable;
  }
  // Signals are handled by one thread with sigwait, so every other thread has them blocked.
  // SIGHUP's default action would end the daemon without a drain (and systemd's
  // Restart=on-failure does not restart a daemon killed by SIGHUP): it reloads instead.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // Outlives everything measured into it (declared before the runtime and the servers).
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
  }

  auto rt = OpenRuntime(*config, log, measured);
  if (!rt.ok()) {
    log.Error("startup_failed", {{"reason", rt.status().message()}});
    std::cerr << "opentokend: " << rt.status().message() << "\n";
    return ExitCodeFor(rt.status());
  }
  // The store must belong to this token (service/vault.h, VaultIdentity): a wrong storage.path or
  // a token that does not hold the store's keys stops here, naming both.
  if (Status s = (*rt)->vault->keys().VerifyStoreIdentity(config->storage_path); !s.ok()) {
    log.Error("startup_failed", {{"reason", s.message()}});
    std::cerr << "opentokend: " << s.message() << "\n";
    return ExitCodeFor(s);
  }
  if (Status s = (*rt)->vault->keys().CheckKeys(); !s.ok()) {
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
  // A panicked store (LMDB could not write a commit's meta page) refuses every operation, reads
  // included, until it is reopened: stop, and exit 69 so that systemd (Restart=on-failure) starts
  // the daemon again. The signal thread does the draining stop.
  static std::atomic<bool> store_panicked{false};
  r.store->SetPanicHandler([] {
    store_panicked = true;
    ::kill(::getpid(), SIGTERM);
  });
  // The audit trail (service/audit.h): separate from this log, chained with the token's audit key.
  const std::string audit_path = config->audit_path.empty()
                                     ? config->storage_path + "/audit.log"
                                     : config->audit_path;
  auto audit = service::AuditLog::Open(audit_path, *r.token, r.clock, log);
  if (!audit.ok()) {
    log.Error("startup_failed", {{"reason", audit.status().message()}});
    std::cerr << "opentokend: audit log: " << audit.status().message() << "\n";
    return ExitCodeFor(audit.status());
  }
  {
    auto v = r.vault->keys().CurrentVersions();
    const std::string versions =
        v.ok() ? "kek=" + std::to_string(v->kek) + " index=" + std::to_string(v->index) : "";
    (*audit)->RecordAsync({.event = "daemon_started", .outcome = "ok", .detail = versions});
  }
  r.vault->keys().SetVersionsObserver([&a = **audit](const service::KeyVersions& now) {
    a.RecordAsync({.event = "key_rotation", .outcome = "ok",
                   .detail = "kek=" + std::to_string(now.kek) + " index=" + std::to_string(now.index)});
  });
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
    access_token_options.email_tokens_per_account = a.email_tokens_per_account;
  }
  // The e-mail endpoints only queue their requests (same work for every address); the worker,
  // started below once everything is set up, mails. It is declared after the services it calls,
  // so it stops before they go.
  service::MailRequestQueue mail_requests(*r.vault, *r.store, r.clock, log);
  service::AccessTokens access_tokens(*r.vault, *r.store, **mailer, mail_requests, r.clock, log,
                                      std::move(access_token_options));
  service::MailRequestWorker mail_worker(
      mail_requests, [&access_tokens](const service::MailRequest& request, store::Mutation done) {
        return access_tokens.HandleMailRequest(request, std::move(done));
      },
      log);
  api::ServerOptions server_options = ServerOptionsFrom(*config);
  server_options.metrics = measured;
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
                               .signature_future_seconds = config->signature_future_seconds,
                               .public_url = config->public_url,
                               .audit = audit->get()};
  std::unique_ptr<api::Router> router = api::BuildApiRouter(services);
  auto server = api::HttpServer::Create(server_options, *router, log);
  if (!server.ok()) {
    log.Error("startup_failed", {{"reason", server.status().message()}});
    std::cerr << "opentokend: " << server.status().message() << "\n";
    return ExitCodeFor(server.status());
  }
  // The metrics listener: GET /metrics only, on its own socket (0600 by default), never on the
  // public listeners. Not measured itself, so scrapes do not show up in the request counts.
  metrics::CollectorHandle runtime_metrics;
  api::Router metrics_router;
  std::unique_ptr<api::HttpServer> metrics_server;
  if (measured != nullptr) {
    auto h = AddRuntimeMetrics(registry, r);
    if (!h.ok()) {
      log.Error("startup_failed", {{"reason", h.status().message()}});
      return kExitSoftware;
    }
    runtime_metrics = std::move(*h);
    api::RegisterMetricsRoutes(metrics_router, registry);
    api::ServerOptions mo;
    mo.unix_listener = api::UnixListener{config->metrics.unix_path, config->metrics.unix_mode, -1};
    mo.limits = server_options.limits;
    mo.limits.max_connections = 16;
    mo.limits.max_connections_per_peer = 16;  // scrapers are root or the service user
    mo.io_threads = 1;
    mo.worker_threads = 1;
    auto ms = api::HttpServer::Create(mo, metrics_router, log);
    if (!ms.ok()) {
      log.Error("startup_failed", {{"reason", "metrics.unix.path: " + ms.status().message()}});
      std::cerr << "opentokend: metrics.unix.path: " << ms.status().message() << "\n";
      return ExitCodeFor(ms.status());
    }
    metrics_server = std::move(*ms);
    log.Info("listening", {{"transport", "unix"}, {"path", config->metrics.unix_path},
                           {"purpose", "metrics"}});
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
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) {
        continue;
      }
      if (sig == SIGHUP) {
        Reload(**audit, **server, config->tls_listen.has_value(), log);
        continue;
      }
      log.Info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      sd_notify(0, "STOPPING=1");
      (*server)->Stop();
      if (metrics_server) {
        metrics_server->Stop();
      }
      return;
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
  std::thread metrics_thread;
  if (metrics_server) {
    metrics_thread = std::thread([&] { metrics_server->Run(); });
  }
  // Requests queued before a crash or restart are picked up at once.
  mail_worker.Start();
  sd_notify(0, "READY=1");
  log.Info("ready");
  (*server)->Run();
  // No request is in flight any more (Run drained them): nothing is queued after this.
  mail_worker.Stop();
  if (metrics_server) {
    metrics_server->Stop();  // no-op after a signal; needed if Run ended for another reason
    metrics_thread.join();
  }
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
  return store_panicked ? kExitUnavailable : kExitOk;
}

}  // namespace
}  // namespace otd::daemon

int main(int argc, char** argv) { return otd::daemon::Main(argc, argv); }
