#pragma once
// Daemon: everything opentokend serves with, built from the config in dependency order by
// Daemon::Build (the composition root's builder; main.cc only parses arguments, hardens the
// process and runs it):
//
//   runtime (token, store, vault; daemon/runtime.h) → store identity and key checks → mailer →
//   audit trail → services (accounts, access codes, tokens, access tokens, the e-mail queue and
//   its worker) → route table → HTTP server → metrics listener
//
// and torn down in the reverse order (members are declared in build order). Run() serves until
// SIGTERM/SIGINT, draining in-flight requests; SIGHUP reloads (the audit file, the TLS pair).
//
// Thread safety: Build and Run on the main thread; Run starts the signal, purge, metrics and mail
// threads and joins them before it returns.

#include <csignal>

#include <atomic>
#include <memory>
#include <string>

#include "api/router.h"
#include "api/server.h"
#include "api/services.h"
#include "api/validation.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"
#include "daemon/config.h"
#include "daemon/migrate.h"
#include "daemon/runtime.h"
#include "mail/mail.h"
#include "mail/outbox.h"
#include "service/access_codes.h"
#include "service/access_tokens.h"
#include "service/accounts.h"
#include "service/audit.h"
#include "service/mail_outbox.h"
#include "service/mail_requests.h"
#include "service/tokens.h"

namespace otd::daemon {

// The HTTP server options the config describes (listeners, limits, threads), adopting a
// socket-activated Unix socket when systemd passed one.
api::ServerOptions ServerOptionsFrom(const Config& config);

// Raises RLIMIT_NOFILE to the hard limit; when that still cannot hold every listener's
// limits.max_connections (plus the descriptors the HSM, the store and the logs need), lowers the
// connection budgets to fit (keeping the per-peer share) and logs `open_file_limit_low`: a full
// table makes room for a newcomer, running out of descriptors would lock every newcomer out.
void FitConnectionsToFileLimit(Config& config, Logger& log);

class Daemon {
 public:
  // Builds every part; the error names what failed and maps to the exit code with ExitCodeFor.
  // `log` and `metrics` (null: not measured) must outlive the daemon.
  static Result<std::unique_ptr<Daemon>> Build(const Config& config, Logger& log,
                                               metrics::Registry* metrics);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Serves until a stop signal in `signals` (blocked in every thread; SIGHUP reloads) and the
  // drain are done. Returns the exit code: 0, or 69 when the store became unusable.
  int Run(const sigset_t& signals);

 private:
  Daemon(const Config& config, Logger& log, metrics::Registry* metrics)
      : config_(config), log_(log), metrics_(metrics) {}
  Status BuildParts();
  Status BuildMetricsListener();
  Status BuildMetricsTcpListener(const api::ServerOptions& unix_options);
  // SIGHUP: reopens the audit trail where it was rotated, reloads the TLS pair; a part that fails
  // keeps what it had and the log says why.
  void Reload();
  // Stops the servers (the signal thread).
  void Stop();

  const Config config_;
  Logger& log_;
  std::string node_id_;  // the audit node id in use (empty: none); GET /status shows it
  metrics::Registry* const metrics_;
  std::atomic<bool> store_panicked_{false};

  std::unique_ptr<ServeLock> serve_lock_;  // LMDB: held shared while serving (daemon/migrate.h)
  std::unique_ptr<Runtime> runtime_;
  // SMTP on PostgreSQL: the outbox is in the store (shared by every daemon on the database);
  // it outlives the mailer whose delivery thread uses it.
  std::unique_ptr<service::StoreMailOutbox> mail_outbox_;
  std::unique_ptr<mail::Mailer> mailer_;
  std::unique_ptr<api::SchemaValidator> schemas_;
  std::unique_ptr<service::AuditLog> audit_;
  std::unique_ptr<service::Accounts> accounts_;
  std::unique_ptr<service::AccessCodes> access_codes_;
  std::unique_ptr<service::Tokens> tokens_;
  std::unique_ptr<service::MailRequestQueue> mail_requests_;
  std::unique_ptr<service::AccessTokens> access_tokens_;
  // Started by Run once everything is set up; stopped before the services it calls go.
  std::unique_ptr<service::MailRequestWorker> mail_worker_;
  std::unique_ptr<api::Services> services_;
  std::unique_ptr<api::Router> router_;
  std::unique_ptr<api::HttpServer> server_;
  // The admin-only metrics listener: GET /metrics on its own Unix socket.
  metrics::CollectorHandle runtime_metrics_;
  std::unique_ptr<api::Router> metrics_router_;
  std::unique_ptr<api::HttpServer> metrics_server_;
  // Optional (metrics.tcp): the same GET /metrics over plain HTTP on TCP, maybe with a bearer
  // token; its own router (the token check) and server.
  std::unique_ptr<api::Router> metrics_tcp_router_;
  std::unique_ptr<api::HttpServer> metrics_tcp_server_;
  // Issue 18 part 5: audit and mail gauges; the log event observer (cleared by the destructor).
  metrics::CollectorHandle audit_mail_metrics_;
  bool log_observed_ = false;
};

}  // namespace otd::daemon
