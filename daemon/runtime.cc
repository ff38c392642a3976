#include "daemon/runtime.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace otd::daemon {

namespace {

// A secret from `file` (the config key `key`; group/other may not read it), or else from the
// systemd credential `credential` in $CREDENTIALS_DIRECTORY. With `optional`, neither being
// there gives an empty secret. Trailing newlines are removed; at most 255 bytes.
Result<SecretBytes> ReadSecret(const std::string& file, const std::string& key,
                               const std::string& credential, bool optional) {
  std::string path = file;
  std::string what = key;
  if (path.empty()) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir == nullptr || *dir == '\0') {
      if (optional) {
        return SecretBytes();
      }
      return InvalidArgument(key + ": not set, and no systemd credential `" + credential +
                             "` ($CREDENTIALS_DIRECTORY unset)");
    }
    path = std::string(dir) + "/" + credential;
    what = "systemd credential " + credential;
    struct stat probe {};
    if (optional && ::stat(path.c_str(), &probe) != 0) {
      return SecretBytes();
    }
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return InvalidArgument(what + ": cannot open " + path);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(what + ": " + path + " is not a regular file");
  }
  if ((st.st_mode & 0077) != 0 && !file.empty()) {
    ::close(fd);
    return InvalidArgument(what + ": " + path +
                           " must not be readable by group or others (chmod 600)");
  }
  SecretBytes pin(256);
  size_t got = 0;
  while (got < pin.size()) {
    ssize_t n = ::read(fd, pin.MutableReveal(SecretAccess::Grant()).data() + got, pin.size() - got);
    if (n < 0) {
      ::close(fd);
      return InvalidArgument(what + ": cannot read " + path);
    }
    if (n == 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got == pin.size()) {
    return InvalidArgument(what + ": longer than 255 bytes");
  }
  auto bytes = pin.Reveal(SecretAccess::Grant());
  while (got > 0 && (bytes[got - 1] == '\n' || bytes[got - 1] == '\r')) {
    --got;
  }
  if (got == 0) {
    return InvalidArgument(what + ": is empty");
  }
  pin.Truncate(got);
  return pin;
}

}  // namespace

Result<SecretBytes> ReadPin(const Config& config) {
  return ReadSecret(config.hsm_pin_file, "hsm.pin_file", "pin", /*optional=*/false);
}

Result<store::PgOptions> PgOptionsFrom(const Config& config) {
  store::PgOptions o;
  o.conninfo = config.storage_pg_conninfo;
  OTD_ASSIGN_OR_RETURN(o.password, ReadSecret(config.storage_pg_password_file,
                                              "storage.postgresql.password_file", "pgpassword",
                                              /*optional=*/true));
  o.pool_size = config.storage_pg_pool_size;
  o.statement_timeout_ms = static_cast<int>(config.storage_pg_statement_timeout_ms);
  o.connect_timeout_ms = static_cast<int>(config.storage_pg_connect_timeout_ms);
  o.tables = service::AllTables();
  return o;
}

namespace {

// How long a daemon keeps looking for its token at start when the module shows none matching:
// two processes opening one SoftHSM2 token directory at the same moment have seen "no PKCS#11
// token labelled ... (initialised tokens: none)" while the other was reading or writing it.
constexpr auto kTokenFindWindow = std::chrono::seconds(5);
constexpr auto kTokenFindPause = std::chrono::milliseconds(250);

// hsm::Token::Open, retried for kTokenFindWindow while the token is not found (each attempt
// loads the module afresh: a failed Open finalises it, so the next one re-reads the slots).
// Other failures (wrong PIN, several matching tokens, no module) are returned at once.
Result<std::unique_ptr<hsm::Token>> OpenTokenRetrying(const hsm::TokenConfig& tc, Logger& log) {
  const auto deadline = std::chrono::steady_clock::now() + kTokenFindWindow;
  bool warned = false;
  while (true) {
    hsm::TokenConfig attempt;
    attempt.module_path = tc.module_path;
    attempt.token_label = tc.token_label;
    attempt.token_serial = tc.token_serial;
    attempt.pin = tc.pin.Clone();
    attempt.max_sessions = tc.max_sessions;
    attempt.acquire_timeout_ms = tc.acquire_timeout_ms;
    attempt.unwrap_cache_per_session = tc.unwrap_cache_per_session;
    attempt.unwrap_cache_ttl_ms = tc.unwrap_cache_ttl_ms;
    attempt.reinitialize_after_ms = tc.reinitialize_after_ms;
    attempt.metrics = tc.metrics;
    auto token = hsm::Token::Open(std::move(attempt), &log);
    if (token.ok() || token.status().code() != Code::kUnavailable ||
        token.status().message().rfind("no PKCS#11 token", 0) != 0 ||
        std::chrono::steady_clock::now() >= deadline) {
      return token;
    }
    if (!warned) {
      log.Warn("hsm_token_not_found_retrying",
               {{"detail", token.status().message()}, {"window_ms", int64_t{5000}}});
      warned = true;
    }
    std::this_thread::sleep_for(kTokenFindPause);
  }
}

}  // namespace

Result<std::unique_ptr<Runtime>> OpenRuntime(const Config& config, Logger& log,
                                             metrics::Registry* metrics) {
  OTD_ASSIGN_OR_RETURN(SecretBytes pin, ReadPin(config));
  auto rt = std::make_unique<Runtime>();
  hsm::TokenConfig tc;
  tc.module_path = config.hsm_module;
  tc.token_label = config.hsm_token_label;
  tc.token_serial = config.hsm_token_serial;
  tc.pin = std::move(pin);
  tc.max_sessions = config.hsm_max_sessions;
  tc.reinitialize_after_ms = static_cast<int>(config.hsm_reinitialize_after_ms);
  tc.metrics = metrics;
  OTD_ASSIGN_OR_RETURN(rt->token, OpenTokenRetrying(tc, log));
  if (config.storage_backend == "postgresql") {
    // rt->lmdb stays null: backups are PostgreSQL's (pg_basebackup, WAL archiving).
    OTD_ASSIGN_OR_RETURN(store::PgOptions po, PgOptionsFrom(config));
    OTD_ASSIGN_OR_RETURN(rt->store, store::PgStore::Open(std::move(po), &log));
    rt->vault = std::make_unique<service::Vault>(*rt->token, *rt->store, log);
    return rt;
  }
  store::LmdbOptions so;
  so.path = config.storage_path;
  so.map_size_bytes = config.storage_map_size_mb * 1024 * 1024;
  so.tables = service::AllTables();
  so.metrics = metrics;
  OTD_ASSIGN_OR_RETURN(std::unique_ptr<store::LmdbStore> lmdb, store::LmdbStore::Open(so, &log));
  rt->lmdb = lmdb.get();
  rt->store = std::move(lmdb);
  rt->vault = std::make_unique<service::Vault>(*rt->token, *rt->store, log);
  return rt;
}

std::string PublicUrl(const Config& config) {
  if (!config.public_url.empty()) {
    return config.public_url;
  }
  if (config.tls_listen) {
    return "https://" + config.tls_listen->address + ":" + std::to_string(config.tls_listen->port);
  }
  return "http://localhost";
}

mail::MailOptions MailOptionsFrom(const Config& config) {
  mail::MailOptions m;
  m.spool_dir = config.mail_spool_dir;
  m.smtp_url = config.mail_smtp_url;
  m.from = config.mail_from;
  m.require_tls = config.mail_require_tls;
  m.ca_file = config.mail_ca_file;
  if (!m.smtp_url.empty()) {
    m.outbox_dir = config.mail_outbox_dir.empty() ? config.storage_path + "/mail-outbox"
                                                  : config.mail_outbox_dir;
  }
  return m;
}

service::AccountsOptions AccountsOptionsFrom(const Config& config) {
  service::AccountsOptions a;
  const auto& c = config.accounts;
  a.registration_lifetime_seconds = c.registration_lifetime_seconds;
  a.challenge_lifetime_seconds = c.challenge_lifetime_seconds;
  a.session_lifetime_seconds = c.session_lifetime_seconds;
  a.totp_issuer = c.totp_issuer;
  a.public_url = PublicUrl(config);
  a.rate_limit.free_failures = c.login_free_failures;
  a.rate_limit.base_delay_seconds = c.login_base_delay_seconds;
  a.rate_limit.max_delay_seconds = c.login_max_delay_seconds;
  a.peer_rate_limit = a.rate_limit;
  a.peer_rate_limit.free_failures = c.login_peer_free_failures;
  service::RegistrationLimitsOptions& r = a.registration_limits;
  r.address_rate_limit.free_failures = c.registrations_per_address;
  r.peer_rate_limit.free_failures = c.registrations_per_peer;
  r.max_pending = c.max_pending_registrations;
  r.max_pending_per_peer = c.max_pending_registrations_per_peer;
  r.max_map_percent = config.storage_unauthenticated_write_limit_percent;
  // Several daemons may share a PostgreSQL database: they share the limits' counts (issue 16).
  a.shared_limits = config.storage_backend == "postgresql";
  return a;
}

int ExitCodeFor(const Status& s) {
  return s.code() == Code::kInvalidArgument ? kExitConfig : kExitUnavailable;
}

}  // namespace otd::daemon
