#pragma once
// opentokend configuration (JSON, DESIGN §5). Loading is strict: an unknown key, a wrong type or
// an out-of-range value stops start-up with a message naming the key (e.g. "listen.tls.port:
// must be an integer between 1 and 65535"). The daemon exits with EX_CONFIG (78) then.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace otd::daemon {

struct UnixListenConfig {
  std::string path;
  uint32_t mode = 0660;
};

struct TlsListenConfig {
  std::string address = "127.0.0.1";
  uint16_t port = 8443;
  std::string certificate;
  std::string private_key;
};

// The admin-only metrics listener (GET /metrics, Prometheus text format) on its own Unix socket.
struct MetricsConfig {
  bool enabled = true;
  // metrics.unix.path, or by default opentokend-metrics.sock next to listen.unix.path (required
  // when there is no listen.unix). Resolved by ParseConfig; empty only when disabled.
  std::string unix_path;
  uint32_t unix_mode = 0600;  // only the service user (and root) may scrape
  // --- metrics.tcp (issue 18 part 5) ---
  // Optional plain-HTTP listener serving the same GET /metrics for a Prometheus that cannot reach
  // the Unix socket. Absent: off. No TLS: keep it on loopback or put a TLS proxy in front.
  struct Tcp {
    std::string address = "127.0.0.1";
    uint16_t port = 0;  // required when metrics.tcp is present
    // metrics.tcp.bearer_token_file: when set, scrapes need `Authorization: Bearer <token>` (the
    // file's first line); the file must not be readable or writable by group or others.
    std::string bearer_token_file;
  };
  std::optional<Tcp> tcp;
};

struct LimitsConfig {
  uint64_t max_header_bytes = 8 * 1024;
  uint64_t max_body_bytes = 1024 * 1024;  // token payload limit (issue 4: default 1 MiB)
  uint64_t max_json_body_bytes = 64 * 1024;
  uint32_t request_timeout_ms = 10'000;  // total deadline for reading one request
  uint32_t idle_timeout_ms = 30'000;     // keep-alive: until the next request's first byte
  uint32_t write_timeout_ms = 10'000;
  uint32_t handshake_timeout_ms = 3'000;  // TLS handshake
  uint32_t max_connections = 512;         // per listener
  // Per listener and peer (uid; IP, IPv6 by /64). Absent: max(1, max_connections / 2). A reverse
  // proxy is one peer: set it to max_connections behind one.
  uint32_t max_connections_per_peer = 256;
};

struct AccountsConfig {
  int64_t registration_lifetime_seconds = 86'400;
  int64_t challenge_lifetime_seconds = 300;
  int64_t session_lifetime_seconds = 600;
  std::string totp_issuer = "opentokend";
  uint32_t login_free_failures = 5;
  int64_t login_base_delay_seconds = 1;
  int64_t login_max_delay_seconds = 900;
  uint32_t login_peer_free_failures = 50;
  // Registration admission (service/registration_limits.h): steps (POST /registration, and the
  // secure step, which mails) per address and per peer before they have to wait (60 s doubling,
  // at most 1 h), and caps on pending (unconfirmed) registrations.
  uint32_t registrations_per_address = 4;
  uint32_t registrations_per_peer = 20;
  uint64_t max_pending_registrations = 10'000;
  uint32_t max_pending_registrations_per_peer = 10;
};

// Access tokens (service/access_tokens.h). The e-mail scope may only hold scopes that cannot
// mint or change credentials (see kEmailScopeCeiling in config.cc).
struct AccessTokensConfig {
  int64_t default_lifetime_seconds = 183 * 86'400;
  int64_t max_lifetime_seconds = 366 * 86'400;
  int64_t email_lifetime_seconds = 183 * 86'400;
  std::vector<std::string> email_scope = {"account.read", "accessTokens.read",
                                          "accessTokens.delete"};
  uint32_t email_requests_per_address = 5;  // before the address has to wait
  uint32_t email_requests_per_peer = 50;
  uint32_t email_tokens_per_account = 5;  // unexpired e-mailed tokens side by side
};

struct Config {
  std::optional<UnixListenConfig> unix_listen;
  std::optional<TlsListenConfig> tls_listen;
  // --- behind a reverse proxy (issue 18 part 6, api/forwarded.h) ---
  // listen.trusted_proxies: the peers whose forwarding header names the client that per-client
  // limits, login delays and audit lines use: IPv4/IPv6 addresses or CIDRs (TLS peers), "unix"
  // (every peer of the Unix socket) or "uid:<n>" (a Unix peer with that uid). Default: none, the
  // headers are never read. At most 256 entries, validated by api::TrustedProxies::Parse.
  std::vector<std::string> trusted_proxies;
  // listen.forwarded_header: which header a trusted peer's client comes from, "x-forwarded-for"
  // (default) or "forwarded" (RFC 7239). The other one is ignored entirely.
  std::string forwarded_header = "x-forwarded-for";
  std::string storage_path;  // local state (audit trail, outbox); the LMDB store with "lmdb"
  std::string storage_backend = "lmdb";  // "lmdb" | "postgresql" (store/pg_store.h)
  // storage.postgresql.*: a libpq conninfo (no password in it), the password file (empty: the
  // systemd credential `pgpassword` if present, else none), pool and timeouts.
  std::string storage_pg_conninfo;
  std::string storage_pg_password_file;
  uint32_t storage_pg_pool_size = 8;  // >= 2: ForEach holds one while its callback reads
  uint32_t storage_pg_statement_timeout_ms = 5000;
  uint32_t storage_pg_connect_timeout_ms = 5000;
  uint64_t storage_map_size_mb = 1024;
  // Writes anyone can cause without an account (new registrations) are refused while more than
  // this share of the map is in use; authenticated writes (tokenize, ...) may fill all of it.
  uint32_t storage_unauthenticated_write_limit_percent = 90;
  std::string hsm_module;
  // Which token: by label, by serial number, or both (at least one). Several tokens matching is
  // refused (exit 69); hsm.token_serial picks one of several tokens with the same label.
  std::string hsm_token_label;
  std::string hsm_token_serial;
  std::string hsm_pin_file;  // empty: read the systemd credential `pin`
  uint32_t hsm_max_sessions = 8;
  // After the token's storage vanished: re-initialise the PKCS#11 module at most this often until
  // it is back (hsm::TokenConfig::reinitialize_after_ms); 0 = never (a restart is needed).
  uint32_t hsm_reinitialize_after_ms = 1000;
  std::string mail_spool_dir;
  std::string mail_smtp_url;
  std::string mail_from = "opentokend@localhost";
  std::string
      mail_outbox_dir;  // SMTP mode: queue before delivery; default <storage.path>/mail-outbox
  bool mail_require_tls = false;
  std::string mail_ca_file;
  std::string public_url;
  uint32_t workers = 0;  // 0: max(8, 4 x cores)
  std::string log_level = "info";
  // --- log.* (issue 18 part 7) ---
  // log.priority_prefix: "auto" (when stdout is journald's stream, JOURNAL_STREAM), "on", "off":
  // every line starts with its sd-daemon(3) priority (<3> error ... <7> debug).
  std::string log_priority_prefix = "auto";
  // log.access: "on" (every request), "off", "sampled" (1 in log.access_sample_rate); with off
  // and sampled, 5xx answers and requests slower than log.access_slow_ms are still logged.
  std::string log_access = "on";
  uint32_t log_access_sample_rate = 100;
  uint32_t log_access_slow_ms = 1000;
  LimitsConfig limits;
  MetricsConfig metrics;
  // console.enabled: the web console under /console/ (api/console_routes.cc); false removes its
  // routes.
  bool console_enabled = true;
  // audit.path: the audit trail (JSON lines, service/audit.h); default <storage.path>/audit.log.
  std::string audit_path;
  // audit.node_id: this daemon's name in the audit trail (issue 16); default: with the PostgreSQL
  // store, the id kept in <storage.path>/audit-node-id (created once as <hostname>-<8 hex>);
  // with LMDB none (lines carry no node) unless set. [A-Za-z0-9._-]{1,64}.
  std::string audit_node_id;
  // audit.anchor_interval_seconds: with the PostgreSQL store, how often an anchor line listing
  // every node's chain head is written (0: never; heads are still published). 0..86400.
  int64_t audit_anchor_interval_seconds = 60;
  // --- audit segments (issue 18 part 2) ---
  // audit.directory: write the trail as segments in this directory (service/audit.h) instead of
  // the single file audit.path (the two are exclusive). Absolute. Empty: one file (the default).
  std::string audit_directory;
  // audit.segment_max_bytes: a segment is closed once it holds this much. 4096..2^40.
  uint64_t audit_segment_max_bytes = 64ull * 1024 * 1024;
  // audit.segment_max_seconds: ... or once it is this old (0: no time limit). 0..31536000.
  int64_t audit_segment_max_seconds = 86400;
  // audit.syslog: also send every audit line to journald (SYSLOG_IDENTIFIER=opentokend-audit,
  // facility authpriv), after it is durable in the file. The file stays the record that verifies.
  bool audit_syslog = false;
  // --- end audit segments ---
  AccountsConfig accounts;
  int64_t signature_past_seconds = 300;   // OT1: how old X-OpenToken-Date may be
  int64_t signature_future_seconds = 60;  // OT1: how far ahead (clock skew)
  int64_t access_code_lifetime_seconds = 183 * 86'400;
  int64_t token_max_lifetime_seconds = 0;  // 0: tokens live until deleted (or their own expiry)
  AccessTokensConfig access_tokens;
};

// Parses and validates a config document. Errors are kInvalidArgument naming the key.
Result<Config> ParseConfig(std::string_view json_text);
// Reads the file, then ParseConfig. A missing/unreadable file is kInvalidArgument too.
Result<Config> LoadConfigFile(const std::string& path);

// --- issue 18 part 4: where the config is (both binaries) ---------------------------------------
inline constexpr char kDefaultConfigPath[] = "/etc/opentokend/opentokend.json";
inline constexpr char kConfigEnvironmentVariable[] = "OPENTOKEND_CONFIG";
// The config file to load: `flag` (--config FILE / --config=FILE) when given, else `env` (the
// value of OPENTOKEND_CONFIG, null when unset) when non-empty, else kDefaultConfigPath.
std::string ResolveConfigPath(const std::string& flag, const char* env);

}  // namespace otd::daemon
