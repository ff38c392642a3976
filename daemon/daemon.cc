#include "daemon/daemon.h"

#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "api/metrics_endpoint.h"
#include "api/routes.h"
#include "api/status_endpoint.h"
#include "common/build_info.h"
#include "daemon/hardening.h"

namespace otd::daemon {

namespace {

// Scrape-time gauges read from the runtime: records per table and map use (Store::GetStats), the
// current key versions (Vault::CurrentVersions). The handle must die before the runtime.
Result<metrics::CollectorHandle> AddRuntimeMetrics(metrics::Registry& registry, Runtime& rt) {
  OTD_ASSIGN_OR_RETURN(
      metrics::GaugeFamily * records,
      registry.AddGauge("opentokend_store_records",
                        "Records per store table (sealed records, keyed hashes).", {"table"}));
  OTD_ASSIGN_OR_RETURN(
      metrics::GaugeFamily * map_size,
      registry.AddGauge("opentokend_store_map_size_bytes", "LMDB map size (storage.map_size_mb)."));
  OTD_ASSIGN_OR_RETURN(metrics::GaugeFamily * used,
                       registry.AddGauge("opentokend_store_used_bytes",
                                         "Bytes of the LMDB map in use (last page)."));
  OTD_ASSIGN_OR_RETURN(
      metrics::GaugeFamily * versions,
      registry.AddGauge("opentokend_key_version", "Current version of the token keys (kek, index).",
                        {"key"}));
  OTD_ASSIGN_OR_RETURN(metrics::CounterFamily * errors,
                       registry.AddCounter("opentokend_metrics_collect_errors_total",
                                           "Scrapes where the store or the vault could not be read "
                                           "(their gauges keep the last value).",
                                           {"source"}));
  metrics::Counter* store_errors = &errors->With({"store"});
  metrics::Counter* vault_errors = &errors->With({"vault"});
  return registry.AddCollector(
      [&rt, records, map_size, used, versions, store_errors, vault_errors] {
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

// Issue 18 part 5: log events by level and event name (mail queued/delivered/failed, audit
// write failures, refusals... are all log events), and scrape-time gauges of the audit trail and
// the mail outbox. The observer must be cleared (Daemon's destructor) before the registry dies.
Status AddLogEventMetrics(metrics::Registry& registry, Logger& log) {
  OTD_ASSIGN_OR_RETURN(
      metrics::CounterFamily * events,
      registry.AddCounter("opentokend_log_events_total",
                          "Operational log events by level and event name, counted whatever "
                          "log_level and log.access let through (e.g. mail_delivered, "
                          "audit_log_write_failed, registrations_refused).",
                          {"level", "event"}));
  log.SetEventObserver([events](LogLevel level, std::string_view event) {
    events->With({LevelName(level), event}).Inc();
  });
  return Status::Ok();
}

Result<metrics::CollectorHandle> AddAuditAndMailMetrics(metrics::Registry& registry,
                                                        service::AuditLog& audit,
                                                        mail::Outbox* outbox) {
  OTD_ASSIGN_OR_RETURN(metrics::GaugeFamily * lines,
                       registry.AddScrapedCounter("opentokend_audit_lines_total",
                                                  "Audit lines written since the daemon started."));
  OTD_ASSIGN_OR_RETURN(
      metrics::GaugeFamily * bytes,
      registry.AddGauge("opentokend_audit_file_bytes", "Size of the audit file being written."));
  OTD_ASSIGN_OR_RETURN(
      metrics::GaugeFamily * queued,
      registry.AddGauge("opentokend_mail_outbox_messages",
                        "Messages in the shared mail outbox (claimed or not; -1: no shared "
                        "outbox, or it could not be read)."));
  const uint64_t first_seq = audit.last_seq();
  metrics::Gauge* lines_g = &lines->Get();
  metrics::Gauge* bytes_g = &bytes->Get();
  metrics::Gauge* queued_g = &queued->Get();
  return registry.AddCollector([&audit, outbox, first_seq, lines_g, bytes_g, queued_g] {
    const uint64_t seq = audit.last_seq();
    lines_g->Set(static_cast<double>(seq >= first_seq ? seq - first_seq : 0));
    struct stat st {};
    if (::stat(audit.path().c_str(), &st) == 0) {
      bytes_g->Set(static_cast<double>(st.st_size));
    }
    double n = -1;
    if (outbox != nullptr) {
      if (auto c = outbox->Count(); c.ok()) {
        n = static_cast<double>(*c);
      }
    }
    queued_g->Set(n);
  });
}

service::AccessTokensOptions AccessTokensOptionsFrom(const Config& config) {
  service::AccessTokensOptions o;
  const auto& a = config.access_tokens;
  o.default_lifetime_seconds = a.default_lifetime_seconds;
  o.max_lifetime_seconds = a.max_lifetime_seconds;
  o.email_lifetime_seconds = a.email_lifetime_seconds;
  o.email_scope = a.email_scope;
  o.address_rate_limit.free_failures = a.email_requests_per_address;
  o.peer_rate_limit.free_failures = a.email_requests_per_peer;
  o.email_tokens_per_account = a.email_tokens_per_account;
  // Several daemons may share a PostgreSQL database: they share the limits' counts (issue 16).
  o.shared_limits = config.storage_backend == "postgresql";
  return o;
}

// A failed step of Build: the message names the step.
Status StepFailed(std::string_view what, const Status& s) {
  return Status(s.code(), std::string(what) + ": " + s.message());
}

// log.access, log.access_sample_rate, log.access_slow_ms (issue 18 part 7).
AccessLogOptions AccessLogOptionsFrom(const Config& c) {
  AccessLogOptions a;
  a.mode = c.log_access == "off"       ? AccessLogMode::kOff
           : c.log_access == "sampled" ? AccessLogMode::kSampled
                                       : AccessLogMode::kOn;
  a.sample_rate = c.log_access_sample_rate;
  a.slow_ms = c.log_access_slow_ms;
  return a;
}

}  // namespace

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
  o.access_log = AccessLogOptionsFrom(c);
  // Validated by ParseConfig; a list that did not parse would trust nobody.
  if (auto t = api::TrustedProxies::Parse(c.trusted_proxies); t.ok()) {
    o.trusted_proxies = std::move(t).value();
  }
  o.forwarded_header = api::ForwardedHeaderFromName(c.forwarded_header)
                           .value_or(api::ForwardedHeader::kXForwardedFor);
  return o;
}

void FitConnectionsToFileLimit(Config& config, Logger& log) {
  // Each listener may hold limits.max_connections client connections, each a descriptor; the
  // metrics listener 16; the HSM, the store, the logs and Asio need some more (17 at rest). With
  // fewer descriptors, the budgets are lowered to fit: a full table makes room for a newcomer,
  // running out of descriptors (EMFILE) would lock every newcomer out.
  if (auto files = RaiseOpenFileLimit(); files.ok()) {
    constexpr uint64_t kReserved = 16 + 128;
    const uint64_t listeners = (config.unix_listen ? 1 : 0) + (config.tls_listen ? 1 : 0);
    auto& l = config.limits;
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
                {"reason",
                 "connection budgets lowered to fit; raise LimitNOFILE (the hard "
                 "limit) or lower limits.max_connections"}});
    }
  } else {
    log.Warn("open_file_limit_unknown", {{"reason", files.status().message()}});
  }
}

Result<std::unique_ptr<Daemon>> Daemon::Build(const Config& config, Logger& log,
                                              metrics::Registry* metrics) {
  std::unique_ptr<Daemon> d(new Daemon(config, log, metrics));
  OTD_RETURN_IF_ERROR(d->BuildParts());
  return d;
}

Status Daemon::BuildParts() {
  if (config_.storage_backend == "lmdb") {
    // opentoken-admin migrate holds it exclusive while it copies this store.
    OTD_ASSIGN_OR_RETURN(serve_lock_,
                         ServeLock::Acquire(config_.storage_path, /*exclusive=*/false));
  }
  OTD_ASSIGN_OR_RETURN(runtime_, OpenRuntime(config_, log_, metrics_));
  Runtime& r = *runtime_;
  // The store must belong to this token (service/key_hierarchy.h, VaultIdentity): a wrong
  // storage.path or a token that does not hold the store's keys stops here, naming both.
  OTD_RETURN_IF_ERROR(r.vault->keys().VerifyStoreIdentity(config_.storage_path));
  if (Status s = r.vault->keys().CheckKeys(); !s.ok()) {
    return Unavailable(s.message());
  }
  const mail::MailOptions mail_options = MailOptionsFrom(config_);
  if (config_.storage_backend == "postgresql" && !mail_options.smtp_url.empty()) {
    // Several daemons on one database: queued mail must survive a dead node, so the outbox is
    // in the store (sealed) and any node delivers it; mail.outbox_dir is not used.
    service::MailOutboxOptions outbox;
    // A claim must outlast one SMTP attempt, or a slow delivery is taken over and sent twice.
    outbox.lease_seconds =
        (mail_options.connect_timeout + mail_options.transfer_timeout).count() / 1000 + 30;
    mail_outbox_ =
        std::make_unique<service::StoreMailOutbox>(*r.vault, *r.store, r.clock, log_, outbox);
    OTD_ASSIGN_OR_RETURN(mailer_,
                         mail::OutboxSmtpMailer::Create(mail_options, *mail_outbox_, log_));
    // Messages an earlier LMDB-backed run left in the directory are not sent from here.
    std::error_code ec;
    size_t left = 0;
    for (std::filesystem::directory_iterator it(mail_options.outbox_dir, ec), end; !ec && it != end;
         it.increment(ec)) {
      left += it->path().extension() == ".eml" ? 1 : 0;
    }
    if (left > 0) {
      log_.Warn("mail_outbox_dir_ignored",
                {{"queued", static_cast<uint64_t>(left)},
                 {"reason",
                  "storage.backend postgresql keeps the outbox in the database; "
                  "these files are not delivered"}});
    }
  } else {
    OTD_ASSIGN_OR_RETURN(mailer_, mail::MakeMailer(mail_options, log_));
  }
  auto schemas = api::SchemaValidator::Create();
  if (!schemas.ok()) {
    return Internal(schemas.status().message());
  }
  schemas_ = std::move(schemas).value();
  // A panicked store (LMDB could not write a commit's meta page) refuses every operation, reads
  // included, until it is reopened: stop, and exit 69 so that systemd (Restart=on-failure) starts
  // the daemon again. The signal thread does the draining stop.
  r.store->SetPanicHandler([this] {
    store_panicked_ = true;
    ::kill(::getpid(), SIGTERM);
  });
  // The audit trail (service/audit.h): separate from the log, chained with the token's audit key.
  const std::string audit_path =
      config_.audit_path.empty() ? config_.storage_path + "/audit.log" : config_.audit_path;
  // Several daemons on one PostgreSQL store: each has a node id and its own chain, publishes its
  // chain head into the store and anchors every node's head in its chain (service/audit.h).
  service::AuditNodeOptions node;
  node.node_id = config_.audit_node_id;
  node_id_ = node.node_id;
  if (config_.storage_backend == "postgresql") {
    if (node.node_id.empty()) {
      auto id = service::LoadOrCreateAuditNodeId(config_.storage_path);
      if (!id.ok()) {
        return StepFailed("audit node id", id.status());
      }
      node.node_id = *id;
    }
    node_id_ = node.node_id;
    node.store = r.store.get();
    node.anchor_interval_seconds = static_cast<int>(config_.audit_anchor_interval_seconds);
  }
  service::AuditSegmentOptions segments;
  segments.directory = config_.audit_directory;
  segments.max_bytes = config_.audit_segment_max_bytes;
  segments.max_seconds = config_.audit_segment_max_seconds;
  if (config_.audit_syslog) {
    // A copy for journald (and a syslog forwarder); the file stays the record that verifies.
    segments.copy_line = [](std::string_view line) {
      sd_journal_send("MESSAGE=%.*s", static_cast<int>(line.size()), line.data(),
                      "SYSLOG_IDENTIFIER=opentokend-audit", "SYSLOG_FACILITY=10", "PRIORITY=6",
                      nullptr);
    };
  }
  auto audit = service::AuditLog::Open(audit_path, *r.token, r.clock, log_, node, segments);
  if (!audit.ok()) {
    return StepFailed("audit log", audit.status());
  }
  audit_ = std::move(audit).value();
  {
    auto v = r.vault->keys().CurrentVersions();
    const std::string versions =
        v.ok() ? "kek=" + std::to_string(v->kek) + " index=" + std::to_string(v->index) : "";
    audit_->RecordAsync({.event = "daemon_started", .outcome = "ok", .detail = versions});
  }
  r.vault->keys().SetVersionsObserver([a = audit_.get()](const service::KeyVersions& now) {
    a->RecordAsync(
        {.event = "key_rotation",
         .outcome = "ok",
         .detail = "kek=" + std::to_string(now.kek) + " index=" + std::to_string(now.index)});
  });

  accounts_ = std::make_unique<service::Accounts>(*r.vault, *r.store, *mailer_, r.clock, log_,
                                                  AccountsOptionsFrom(config_));
  access_codes_ = std::make_unique<service::AccessCodes>(
      *r.vault, *r.token, *r.store, r.clock, log_,
      service::AccessCodesOptions{.lifetime_seconds = config_.access_code_lifetime_seconds});
  tokens_ = std::make_unique<service::Tokens>(
      *r.vault, *r.store, r.clock, log_,
      service::TokensOptions{.max_lifetime_seconds = config_.token_max_lifetime_seconds});
  // The e-mail endpoints only queue their requests (the same work for every address); the
  // worker mails.
  mail_requests_ = std::make_unique<service::MailRequestQueue>(*r.vault, *r.store, r.clock, log_);
  access_tokens_ =
      std::make_unique<service::AccessTokens>(*r.vault, *r.store, *mailer_, *mail_requests_,
                                              r.clock, log_, AccessTokensOptionsFrom(config_));
  mail_worker_ = std::make_unique<service::MailRequestWorker>(
      *mail_requests_,
      [tokens = access_tokens_.get()](const service::MailRequest& request, store::Mutation done) {
        return tokens->HandleMailRequest(request, std::move(done));
      },
      log_);

  api::ServerOptions server_options = ServerOptionsFrom(config_);
  server_options.metrics = metrics_;
  services_ = std::make_unique<api::Services>(
      api::Services{.vault = *r.vault,
                    .accounts = *accounts_,
                    .access_codes = *access_codes_,
                    .tokens = *tokens_,
                    .access_tokens = *access_tokens_,
                    .schemas = *schemas_,
                    .clock = r.clock,
                    .log = log_,
                    .limits = server_options.limits,
                    .signature_past_seconds = config_.signature_past_seconds,
                    .signature_future_seconds = config_.signature_future_seconds,
                    .public_url = config_.public_url,
                    .console_enabled = config_.console_enabled,
                    .audit = audit_.get()});
  router_ = api::BuildApiRouter(*services_);
  OTD_ASSIGN_OR_RETURN(server_, api::HttpServer::Create(server_options, *router_, log_));
  if (metrics_ != nullptr) {
    OTD_RETURN_IF_ERROR(BuildMetricsListener());
  }
  if (config_.unix_listen) {
    log_.Info("listening", {{"transport", "unix"}, {"path", config_.unix_listen->path}});
  }
  if (config_.tls_listen) {
    log_.Info("listening", {{"transport", "tls"},
                            {"address", config_.tls_listen->address},
                            {"port", static_cast<int64_t>(server_->BoundTlsPort())}});
  }
  return Status::Ok();
}

// GET /metrics only, on its own socket (0600 by default), never on the public listeners. Not
// measured itself, so scrapes do not show up in the request counts.
Status Daemon::BuildMetricsListener() {
  auto handle = AddRuntimeMetrics(*metrics_, *runtime_);
  if (!handle.ok()) {
    return Internal(handle.status().message());
  }
  runtime_metrics_ = std::move(*handle);
  if (Status s = AddLogEventMetrics(*metrics_, log_); !s.ok()) {
    return Internal(s.message());
  }
  log_observed_ = true;
  auto audit_mail = AddAuditAndMailMetrics(*metrics_, *audit_, mail_outbox_.get());
  if (!audit_mail.ok()) {
    return Internal(audit_mail.status().message());
  }
  audit_mail_metrics_ = std::move(*audit_mail);
  metrics_router_ = std::make_unique<api::Router>();
  api::RegisterMetricsRoutes(*metrics_router_, *metrics_);
  // --- issue 18 part 3: GET /status, what `opentoken-admin status` asks (no PIN needed) --------
  {
    const BuildInfo& b = GetBuildInfo();
    api::StatusFacts facts{.version = std::string(b.version),
                           .git = std::string(b.git),
                           .node_id = node_id_,
                           .storage_backend = config_.storage_backend,
                           .started = runtime_->clock.NowSeconds()};
    if (config_.unix_listen) {
      facts.listeners.push_back({{"transport", "unix"}, {"path", config_.unix_listen->path}});
    }
    if (config_.tls_listen) {
      facts.listeners.push_back({{"transport", "tls"},
                                 {"address", config_.tls_listen->address},
                                 {"port", server_->BoundTlsPort()}});
    }
    facts.listeners.push_back(
        {{"transport", "unix"}, {"path", config_.metrics.unix_path}, {"purpose", "metrics"}});
    api::RegisterStatusRoute(*metrics_router_, runtime_->vault->keys(), runtime_->clock,
                             std::move(facts));
  }
  api::ServerOptions mo;
  mo.unix_listener = api::UnixListener{config_.metrics.unix_path, config_.metrics.unix_mode, -1};
  mo.limits = services_->limits;
  mo.limits.max_connections = 16;
  mo.limits.max_connections_per_peer = 16;  // scrapers are root or the service user
  mo.io_threads = 1;
  mo.worker_threads = 1;
  mo.access_log = AccessLogOptionsFrom(config_);
  auto ms = api::HttpServer::Create(mo, *metrics_router_, log_);
  if (!ms.ok()) {
    return StepFailed("metrics.unix.path", ms.status());
  }
  metrics_server_ = std::move(ms).value();
  log_.Info("listening",
            {{"transport", "unix"}, {"path", config_.metrics.unix_path}, {"purpose", "metrics"}});
  if (config_.metrics.tcp) {
    OTD_RETURN_IF_ERROR(BuildMetricsTcpListener(mo));
  }
  return Status::Ok();
}

// metrics.tcp (issue 18 part 5): the same GET /metrics over plain HTTP, with the bearer token
// when one is configured. Plain HTTP on purpose: Prometheus scrapes it on loopback, or through a
// TLS-terminating proxy; the token keeps other local users out.
Status Daemon::BuildMetricsTcpListener(const api::ServerOptions& unix_options) {
  const MetricsConfig::Tcp& t = *config_.metrics.tcp;
  std::optional<SecretBytes> token;
  if (!t.bearer_token_file.empty()) {
    auto loaded = api::LoadBearerTokenFile(t.bearer_token_file, "metrics.tcp.bearer_token_file");
    if (!loaded.ok()) {
      return loaded.status();
    }
    token = std::move(loaded).value();
  }
  metrics_tcp_router_ = std::make_unique<api::Router>();
  api::RegisterMetricsRoutes(*metrics_tcp_router_, *metrics_, std::move(token));
  api::ServerOptions to = unix_options;
  to.unix_listener.reset();
  to.tcp_listener = api::TcpListener{t.address, t.port};
  to.limits.max_connections_per_peer = 8;  // one address may be many local users
  auto ts = api::HttpServer::Create(to, *metrics_tcp_router_, log_);
  if (!ts.ok()) {
    return StepFailed("metrics.tcp", ts.status());
  }
  metrics_tcp_server_ = std::move(ts).value();
  log_.Info("listening", {{"transport", "tcp"},
                          {"address", t.address},
                          {"port", static_cast<int64_t>(metrics_tcp_server_->BoundTcpPort())},
                          {"purpose", "metrics"},
                          {"bearer_token", !t.bearer_token_file.empty()}});
  if (t.address != "127.0.0.1" && t.address != "::1" && t.bearer_token_file.empty()) {
    log_.Warn(
        "metrics_tcp_open",
        {{"address", t.address},
         {"reason", "metrics.tcp listens beyond loopback without metrics.tcp.bearer_token_file"}});
  }
  return Status::Ok();
}

Daemon::~Daemon() {
  if (log_observed_) {
    log_.SetEventObserver(nullptr);  // its counters belong to the registry, which may go next
  }
}

// SIGHUP (`systemctl reload`, logrotate's postrotate): reopens the audit trail where it was
// rotated (the chain continues in the new file) and reloads the TLS certificate and key. The
// operational log goes to stdout (journald): nothing to reopen there. A part that fails keeps what
// it had (the old audit file, the old certificate) and the log says why; serving never stops.
void Daemon::Reload() {
  sd_notify(0, "RELOADING=1");
  std::string audit_result;
  auto reopened = audit_->Reopen();
  if (reopened.ok()) {
    audit_result = *reopened ? "reopened" : "unchanged";
  } else {
    audit_result = "failed";
    log_.Error("audit_reopen_failed",
               {{"path", audit_->path()}, {"reason", reopened.status().message()}});
  }
  std::string tls_result = "none";
  if (config_.tls_listen) {
    Status s = server_->ReloadTls();
    tls_result = s.ok() ? "reloaded" : "failed";
    if (!s.ok()) {
      log_.Error("tls_reload_failed",
                 {{"reason", s.message()}, {"kept", "the certificate and key loaded before"}});
    }
  }
  const bool ok = audit_result != "failed" && tls_result != "failed";
  log_.Log(ok ? LogLevel::kInfo : LogLevel::kWarn, "reloaded",
           {{"signal", "SIGHUP"}, {"audit", audit_result}, {"tls", tls_result}, {"ok", ok}});
  sd_notify(0, "READY=1");
}

void Daemon::Stop() {
  sd_notify(0, "STOPPING=1");
  server_->Stop();
  if (metrics_server_) {
    metrics_server_->Stop();
  }
  if (metrics_tcp_server_) {
    metrics_tcp_server_->Stop();
  }
}

int Daemon::Run(const sigset_t& signals) {
  // Waits for the signals in short ticks, so that it also ends when Run ends for another reason.
  std::atomic<bool> signals_done{false};
  std::thread signal_thread([this, &signals, &signals_done] {
    const timespec tick{.tv_sec = 0, .tv_nsec = 200'000'000};
    while (!signals_done.load()) {
      const int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig < 0) {
        continue;  // the tick (EAGAIN) or EINTR
      }
      if (sig == SIGHUP) {
        Reload();
        continue;
      }
      log_.Info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      Stop();
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
      auto purged = runtime_->store->PurgeExpired(runtime_->clock.NowSeconds(), 10'000);
      if (!purged.ok()) {
        log_.Warn("purge_failed", {{"reason", purged.status().message()}});
      } else if (*purged > 0) {
        log_.Info("purged_expired", {{"records", static_cast<int64_t>(*purged)}});
      }
    }
  });
  std::thread metrics_thread;
  if (metrics_server_) {
    metrics_thread = std::thread([this] { metrics_server_->Run(); });
  }
  std::thread metrics_tcp_thread;
  if (metrics_tcp_server_) {
    metrics_tcp_thread = std::thread([this] { metrics_tcp_server_->Run(); });
  }
  // Requests queued before a crash or restart are picked up at once.
  mail_worker_->Start();
  sd_notify(0, "READY=1");
  log_.Info("ready");
  server_->Run();
  // No request is in flight any more (Run drained them): nothing is queued after this.
  mail_worker_->Stop();
  if (metrics_server_) {
    metrics_server_->Stop();  // no-op after a signal; needed if Run ended for another reason
    metrics_thread.join();
  }
  if (metrics_tcp_server_) {
    metrics_tcp_server_->Stop();
    metrics_tcp_thread.join();
  }
  {
    std::lock_guard lock(purge_mu);
    purge_stop = true;
  }
  purge_cv.notify_all();
  purge_thread.join();
  signals_done = true;
  signal_thread.join();
  log_.Info("stopped");
  return store_panicked_ ? kExitUnavailable : kExitOk;
}

}  // namespace otd::daemon
