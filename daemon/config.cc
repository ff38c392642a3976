#include "daemon/config.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "api/forwarded.h"
#include "common/strict_json.h"
#include "daemon/config_schema.h"
#include "service/audit.h"
#include "store/pg_store.h"

namespace otd::daemon {

namespace {

using nlohmann::json;

constexpr size_t kMaxUnixPath = 100;  // sun_path is 108 bytes; leave room
constexpr char kDefaultMetricsSocket[] = "opentokend-metrics.sock";

// Reads the members of one JSON object, remembering which keys were used so that leftovers can
// be reported as unknown. Every error names the full key path.
class ObjectReader {
 public:
  ObjectReader(const json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  std::string Path(const std::string& key) const {
    return prefix_.empty() ? key : prefix_ + "." + key;
  }
  bool Has(const std::string& key) const { return obj_.contains(key); }

  Status String(const std::string& key, std::string& out, bool required) {
    used_.insert(key);
    if (!obj_.contains(key)) {
      return required ? InvalidArgument(Path(key) + ": is required") : Status::Ok();
    }
    const json& v = obj_.at(key);
    if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
      return InvalidArgument(Path(key) + ": must be a non-empty string");
    }
    out = v.get<std::string>();
    return Status::Ok();
  }

  template <class Int>
  Status Integer(const std::string& key, Int& out, uint64_t min, uint64_t max) {
    used_.insert(key);
    if (!obj_.contains(key)) {
      return Status::Ok();
    }
    const json& v = obj_.at(key);
    if (!v.is_number_unsigned() || v.get<uint64_t>() < min || v.get<uint64_t>() > max) {
      return InvalidArgument(Path(key) + ": must be an integer between " + std::to_string(min) +
                             " and " + std::to_string(max));
    }
    out = static_cast<Int>(v.get<uint64_t>());
    return Status::Ok();
  }

  Status Bool(const std::string& key, bool& out) {
    used_.insert(key);
    if (!obj_.contains(key)) {
      return Status::Ok();
    }
    if (!obj_.at(key).is_boolean()) {
      return InvalidArgument(Path(key) + ": must be true or false");
    }
    out = obj_.at(key).get<bool>();
    return Status::Ok();
  }

  // A non-empty array of distinct strings, each one of `allowed`.
  Status StringSet(const std::string& key, std::vector<std::string>& out,
                   const std::vector<std::string>& allowed) {
    used_.insert(key);
    if (!obj_.contains(key)) {
      return Status::Ok();
    }
    const json& v = obj_.at(key);
    std::string names;
    for (const auto& a : allowed) {
      names += (names.empty() ? "" : ", ") + a;
    }
    Status bad = InvalidArgument(Path(key) +
                                 ": must be a non-empty array of distinct values from: " + names);
    if (!v.is_array() || v.empty()) {
      return bad;
    }
    std::vector<std::string> list;
    for (const auto& e : v) {
      if (!e.is_string() ||
          std::find(allowed.begin(), allowed.end(), e.get<std::string>()) == allowed.end() ||
          std::find(list.begin(), list.end(), e.get<std::string>()) != list.end()) {
        return bad;
      }
      list.push_back(e.get<std::string>());
    }
    out = std::move(list);
    return Status::Ok();
  }

  // An array of at most `max` non-empty strings (absent: `out` unchanged).
  Status StringList(const std::string& key, std::vector<std::string>& out, size_t max) {
    used_.insert(key);
    if (!obj_.contains(key)) {
      return Status::Ok();
    }
    const json& v = obj_.at(key);
    Status bad = InvalidArgument(Path(key) + ": must be an array of at most " +
                                 std::to_string(max) + " non-empty strings");
    if (!v.is_array() || v.size() > max) {
      return bad;
    }
    std::vector<std::string> list;
    for (const auto& e : v) {
      if (!e.is_string() || e.get_ref<const std::string&>().empty()) {
        return bad;
      }
      list.push_back(e.get<std::string>());
    }
    out = std::move(list);
    return Status::Ok();
  }

  Result<const json*> Object(const std::string& key, bool required) {
    used_.insert(key);
    if (!obj_.contains(key)) {
      if (required) {
        return InvalidArgument(Path(key) + ": is required");
      }
      return static_cast<const json*>(nullptr);
    }
    const json& v = obj_.at(key);
    if (!v.is_object()) {
      return InvalidArgument(Path(key) + ": must be an object");
    }
    return &v;
  }

  Status NoUnknownKeys() const {
    for (const auto& [k, v] : obj_.items()) {
      if (used_.count(k) == 0) {
        return InvalidArgument(Path(k) + ": unknown configuration key");
      }
    }
    return Status::Ok();
  }

 private:
  const json& obj_;
  std::string prefix_;
  std::set<std::string> used_;
};

Status ParseMode(ObjectReader& r, const std::string& key, uint32_t& out) {
  std::string text;
  OTD_RETURN_IF_ERROR(r.String(key, text, false));
  if (text.empty()) {
    return Status::Ok();
  }
  bool ok = text.size() >= 3 && text.size() <= 4;
  uint32_t mode = 0;
  for (char c : text) {
    if (c < '0' || c > '7') {
      ok = false;
      break;
    }
    mode = mode * 8 + static_cast<uint32_t>(c - '0');
  }
  if (!ok || mode > 0777 || (mode & 0007) != 0) {
    return InvalidArgument(r.Path(key) +
                           ": must be an octal string such as \"0660\" with no access for others");
  }
  out = mode;
  return Status::Ok();
}

Status ParseListen(const json& j, Config& c) {
  ObjectReader r(j, "listen");
  OTD_ASSIGN_OR_RETURN(const json* unix_obj, r.Object("unix", false));
  if (unix_obj != nullptr) {
    ObjectReader u(*unix_obj, "listen.unix");
    UnixListenConfig ul;
    OTD_RETURN_IF_ERROR(u.String("path", ul.path, true));
    OTD_RETURN_IF_ERROR(ParseMode(u, "mode", ul.mode));
    OTD_RETURN_IF_ERROR(u.NoUnknownKeys());
    if (ul.path.size() > kMaxUnixPath) {
      return InvalidArgument("listen.unix.path: longer than a Unix socket path may be (100 bytes)");
    }
    c.unix_listen = ul;
  }
  OTD_ASSIGN_OR_RETURN(const json* tls_obj, r.Object("tls", false));
  if (tls_obj != nullptr) {
    ObjectReader t(*tls_obj, "listen.tls");
    TlsListenConfig tl;
    OTD_RETURN_IF_ERROR(t.String("address", tl.address, false));
    OTD_RETURN_IF_ERROR(t.Integer("port", tl.port, 1, 65535));
    OTD_RETURN_IF_ERROR(t.String("certificate", tl.certificate, true));
    OTD_RETURN_IF_ERROR(t.String("private_key", tl.private_key, true));
    OTD_RETURN_IF_ERROR(t.NoUnknownKeys());
    c.tls_listen = tl;
  }
  OTD_RETURN_IF_ERROR(r.StringList("trusted_proxies", c.trusted_proxies, 256));
  if (auto t = api::TrustedProxies::Parse(c.trusted_proxies); !t.ok()) {
    return InvalidArgument("listen.trusted_proxies: " + t.status().message());
  }
  OTD_RETURN_IF_ERROR(r.String("forwarded_header", c.forwarded_header, false));
  if (!api::ForwardedHeaderFromName(c.forwarded_header)) {
    return InvalidArgument("listen.forwarded_header: must be \"x-forwarded-for\" or \"forwarded\"");
  }
  OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
  if (!c.unix_listen && !c.tls_listen) {
    return InvalidArgument("listen: needs at least one of listen.unix or listen.tls");
  }
  return Status::Ok();
}

Status ParseMetrics(const json* j, Config& c) {
  MetricsConfig& m = c.metrics;
  std::string explicit_path;
  if (j != nullptr) {
    ObjectReader r(*j, "metrics");
    OTD_RETURN_IF_ERROR(r.Bool("enabled", m.enabled));
    OTD_ASSIGN_OR_RETURN(const json* unix_obj, r.Object("unix", false));
    if (unix_obj != nullptr) {
      ObjectReader u(*unix_obj, "metrics.unix");
      OTD_RETURN_IF_ERROR(u.String("path", explicit_path, false));
      OTD_RETURN_IF_ERROR(ParseMode(u, "mode", m.unix_mode));
      OTD_RETURN_IF_ERROR(u.NoUnknownKeys());
    }
    // metrics.tcp (issue 18 part 5).
    OTD_ASSIGN_OR_RETURN(const json* tcp_obj, r.Object("tcp", false));
    if (tcp_obj != nullptr) {
      ObjectReader t(*tcp_obj, "metrics.tcp");
      MetricsConfig::Tcp tcp;
      OTD_RETURN_IF_ERROR(t.String("address", tcp.address, false));
      if (!t.Has("port")) {
        return InvalidArgument(
            "metrics.tcp.port: is required (remove metrics.tcp to turn the "
            "TCP listener off)");
      }
      OTD_RETURN_IF_ERROR(t.Integer("port", tcp.port, 1, 65535));
      OTD_RETURN_IF_ERROR(t.String("bearer_token_file", tcp.bearer_token_file, false));
      OTD_RETURN_IF_ERROR(t.NoUnknownKeys());
      if (!tcp.bearer_token_file.empty() && tcp.bearer_token_file[0] != '/') {
        return InvalidArgument("metrics.tcp.bearer_token_file: must be an absolute path");
      }
      m.tcp = tcp;
    }
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
  }
  if (!m.enabled) {
    if (m.tcp) {
      return InvalidArgument("metrics.tcp: needs metrics.enabled");
    }
    return Status::Ok();
  }
  if (!explicit_path.empty()) {
    m.unix_path = explicit_path;
  } else if (c.unix_listen) {
    const std::string& api = c.unix_listen->path;
    const size_t slash = api.rfind('/');
    m.unix_path = slash == std::string::npos ? std::string(kDefaultMetricsSocket)
                                             : api.substr(0, slash + 1) + kDefaultMetricsSocket;
  } else {
    return InvalidArgument(
        "metrics.unix.path: is required when there is no listen.unix (or set metrics.enabled to "
        "false)");
  }
  if (m.unix_path.size() > kMaxUnixPath) {
    return InvalidArgument("metrics.unix.path: " + m.unix_path +
                           " is longer than a Unix socket path may be (100 bytes)");
  }
  if (c.unix_listen && m.unix_path == c.unix_listen->path) {
    return InvalidArgument("metrics.unix.path: must differ from listen.unix.path");
  }
  return Status::Ok();
}

}  // namespace

Result<Config> ParseConfig(std::string_view json_text) {
  auto parsed = ParseStrictJson(
      json_text, JsonLimits{.max_depth = 6, .max_string_bytes = 4096, .name_duplicate_keys = true});
  if (!parsed.ok()) {
    return InvalidArgument("config: " + parsed.status().message());
  }
  const json& j = *parsed;
  if (!j.is_object()) {
    return InvalidArgument("config: must be a JSON object");
  }
  Config c;
  ObjectReader root(j, "");

  OTD_ASSIGN_OR_RETURN(const json* listen, root.Object("listen", true));
  OTD_RETURN_IF_ERROR(ParseListen(*listen, c));

  OTD_ASSIGN_OR_RETURN(const json* storage, root.Object("storage", true));
  {
    ObjectReader r(*storage, "storage");
    OTD_RETURN_IF_ERROR(r.String("path", c.storage_path, true));
    OTD_RETURN_IF_ERROR(r.Integer("map_size_mb", c.storage_map_size_mb, 1, 1024ull * 1024));
    OTD_RETURN_IF_ERROR(r.Integer("unauthenticated_write_limit_percent",
                                  c.storage_unauthenticated_write_limit_percent, 1, 99));
    OTD_RETURN_IF_ERROR(r.String("backend", c.storage_backend, false));
    if (c.storage_backend != "lmdb" && c.storage_backend != "postgresql") {
      return InvalidArgument("storage.backend: must be \"lmdb\" or \"postgresql\"");
    }
    OTD_ASSIGN_OR_RETURN(const json* pg, r.Object("postgresql", false));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
    if (pg != nullptr) {
      ObjectReader p(*pg, "storage.postgresql");
      OTD_RETURN_IF_ERROR(p.String("conninfo", c.storage_pg_conninfo, true));
      if (Status s = store::PgCheckConninfo(c.storage_pg_conninfo); !s.ok()) {
        return InvalidArgument("storage.postgresql.conninfo: " + s.message());
      }
      OTD_RETURN_IF_ERROR(p.String("password_file", c.storage_pg_password_file, false));
      OTD_RETURN_IF_ERROR(p.Integer("pool_size", c.storage_pg_pool_size, 2, 256));
      OTD_RETURN_IF_ERROR(
          p.Integer("statement_timeout_ms", c.storage_pg_statement_timeout_ms, 100, 600000));
      OTD_RETURN_IF_ERROR(
          p.Integer("connect_timeout_ms", c.storage_pg_connect_timeout_ms, 1000, 600000));
      OTD_RETURN_IF_ERROR(p.NoUnknownKeys());
    } else if (c.storage_backend == "postgresql") {
      return InvalidArgument("storage.postgresql: is required with storage.backend \"postgresql\"");
    }
  }

  OTD_ASSIGN_OR_RETURN(const json* hsm, root.Object("hsm", true));
  {
    ObjectReader r(*hsm, "hsm");
    OTD_RETURN_IF_ERROR(r.String("module", c.hsm_module, true));
    OTD_RETURN_IF_ERROR(r.String("token_label", c.hsm_token_label, false));
    OTD_RETURN_IF_ERROR(r.String("token_serial", c.hsm_token_serial, false));
    OTD_RETURN_IF_ERROR(r.String("pin_file", c.hsm_pin_file, false));
    OTD_RETURN_IF_ERROR(r.Integer("max_sessions", c.hsm_max_sessions, 1, 256));
    OTD_RETURN_IF_ERROR(
        r.Integer("reinitialize_after_ms", c.hsm_reinitialize_after_ms, 0, 3'600'000));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
    if (c.hsm_token_label.empty() && c.hsm_token_serial.empty()) {
      return InvalidArgument("hsm.token_label: is required (unless hsm.token_serial is set)");
    }
    if (c.hsm_token_label.size() > 32) {
      return InvalidArgument("hsm.token_label: at most 32 bytes (PKCS#11 token label)");
    }
    // CK_TOKEN_INFO.serialNumber: 16 printable characters, space-padded.
    if (c.hsm_token_serial.size() > 16 ||
        !std::all_of(c.hsm_token_serial.begin(), c.hsm_token_serial.end(),
                     [](char ch) { return ch > ' ' && ch < 0x7f; })) {
      return InvalidArgument(
          "hsm.token_serial: at most 16 printable characters without spaces (PKCS#11 token "
          "serial number, e.g. from `softhsm2-util --show-slots`)");
    }
  }

  OTD_ASSIGN_OR_RETURN(const json* mail, root.Object("mail", true));
  {
    ObjectReader r(*mail, "mail");
    OTD_RETURN_IF_ERROR(r.String("spool_dir", c.mail_spool_dir, false));
    OTD_RETURN_IF_ERROR(r.String("smtp_url", c.mail_smtp_url, false));
    OTD_RETURN_IF_ERROR(r.String("from", c.mail_from, false));
    OTD_RETURN_IF_ERROR(r.String("outbox_dir", c.mail_outbox_dir, false));
    OTD_RETURN_IF_ERROR(r.Bool("require_tls", c.mail_require_tls));
    OTD_RETURN_IF_ERROR(r.String("ca_file", c.mail_ca_file, false));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
    if (c.mail_spool_dir.empty() == c.mail_smtp_url.empty()) {
      return InvalidArgument("mail: set exactly one of mail.spool_dir or mail.smtp_url");
    }
    if (!c.mail_smtp_url.empty() && c.mail_smtp_url.rfind("smtp://", 0) != 0 &&
        c.mail_smtp_url.rfind("smtps://", 0) != 0) {
      return InvalidArgument("mail.smtp_url: must start with smtp:// or smtps://");
    }
    if (c.mail_smtp_url.empty() && (!c.mail_outbox_dir.empty() || c.mail_require_tls)) {
      return InvalidArgument("mail.outbox_dir: only with mail.smtp_url");
    }
    if (c.mail_from.find('@') == std::string::npos) {
      return InvalidArgument("mail.from: must be an e-mail address");
    }
  }

  OTD_ASSIGN_OR_RETURN(const json* accounts, root.Object("accounts", false));
  if (accounts != nullptr) {
    ObjectReader r(*accounts, "accounts");
    auto& a = c.accounts;
    OTD_RETURN_IF_ERROR(r.Integer("registration_lifetime_seconds", a.registration_lifetime_seconds,
                                  60, 30 * 86'400));
    OTD_RETURN_IF_ERROR(
        r.Integer("challenge_lifetime_seconds", a.challenge_lifetime_seconds, 10, 3600));
    OTD_RETURN_IF_ERROR(
        r.Integer("session_lifetime_seconds", a.session_lifetime_seconds, 60, 86'400));
    OTD_RETURN_IF_ERROR(r.String("totp_issuer", a.totp_issuer, false));
    OTD_RETURN_IF_ERROR(r.Integer("login_free_failures", a.login_free_failures, 1, 1000));
    OTD_RETURN_IF_ERROR(r.Integer("login_base_delay_seconds", a.login_base_delay_seconds, 1, 3600));
    OTD_RETURN_IF_ERROR(r.Integer("login_max_delay_seconds", a.login_max_delay_seconds, 1, 86'400));
    OTD_RETURN_IF_ERROR(
        r.Integer("login_peer_free_failures", a.login_peer_free_failures, 1, 100'000));
    OTD_RETURN_IF_ERROR(
        r.Integer("registrations_per_address", a.registrations_per_address, 1, 1000));
    OTD_RETURN_IF_ERROR(r.Integer("registrations_per_peer", a.registrations_per_peer, 1, 100'000));
    OTD_RETURN_IF_ERROR(
        r.Integer("max_pending_registrations", a.max_pending_registrations, 1, 10'000'000));
    OTD_RETURN_IF_ERROR(r.Integer("max_pending_registrations_per_peer",
                                  a.max_pending_registrations_per_peer, 1, 1'000'000));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
    if (a.totp_issuer.size() > 64 || a.totp_issuer.find(':') != std::string::npos) {
      return InvalidArgument("accounts.totp_issuer: at most 64 characters and no ':'");
    }
  }

  OTD_RETURN_IF_ERROR(root.String("public_url", c.public_url, false));
  if (!c.public_url.empty()) {
    bool scheme_ok =
        c.public_url.rfind("https://", 0) == 0 || c.public_url.rfind("http://", 0) == 0;
    if (!scheme_ok || c.public_url.back() == '/') {
      return InvalidArgument("public_url: must be an http(s) URL without a trailing slash");
    }
  }
  OTD_RETURN_IF_ERROR(root.Integer("workers", c.workers, 0, 256));
  OTD_RETURN_IF_ERROR(root.String("log_level", c.log_level, false));
  if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" &&
      c.log_level != "error") {
    return InvalidArgument("log_level: must be one of debug, info, warn, error");
  }

  // log.* (issue 18 part 7).
  OTD_ASSIGN_OR_RETURN(const json* log, root.Object("log", false));
  if (log != nullptr) {
    ObjectReader r(*log, "log");
    OTD_RETURN_IF_ERROR(r.String("priority_prefix", c.log_priority_prefix, false));
    if (c.log_priority_prefix != "auto" && c.log_priority_prefix != "on" &&
        c.log_priority_prefix != "off") {
      return InvalidArgument("log.priority_prefix: must be one of auto, on, off");
    }
    OTD_RETURN_IF_ERROR(r.String("access", c.log_access, false));
    if (c.log_access != "on" && c.log_access != "off" && c.log_access != "sampled") {
      return InvalidArgument("log.access: must be one of on, off, sampled");
    }
    OTD_RETURN_IF_ERROR(r.Integer("access_sample_rate", c.log_access_sample_rate, 1, 1'000'000));
    OTD_RETURN_IF_ERROR(r.Integer("access_slow_ms", c.log_access_slow_ms, 1, 600'000));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
  }

  OTD_ASSIGN_OR_RETURN(const json* signature, root.Object("signature", false));
  if (signature != nullptr) {
    ObjectReader r(*signature, "signature");
    OTD_RETURN_IF_ERROR(r.Integer("past_seconds", c.signature_past_seconds, 1, 3600));
    OTD_RETURN_IF_ERROR(r.Integer("future_seconds", c.signature_future_seconds, 0, 3600));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
  }
  OTD_ASSIGN_OR_RETURN(const json* access_codes, root.Object("access_codes", false));
  if (access_codes != nullptr) {
    ObjectReader r(*access_codes, "access_codes");
    OTD_RETURN_IF_ERROR(
        r.Integer("lifetime_seconds", c.access_code_lifetime_seconds, 60, 10ull * 365 * 86'400));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
  }
  OTD_ASSIGN_OR_RETURN(const json* tokens, root.Object("tokens", false));
  if (tokens != nullptr) {
    ObjectReader r(*tokens, "tokens");
    OTD_RETURN_IF_ERROR(
        r.Integer("max_lifetime_seconds", c.token_max_lifetime_seconds, 0, 100ull * 365 * 86'400));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
  }

  OTD_ASSIGN_OR_RETURN(const json* access_tokens, root.Object("access_tokens", false));
  if (access_tokens != nullptr) {
    ObjectReader r(*access_tokens, "access_tokens");
    auto& a = c.access_tokens;
    constexpr uint64_t kYear = 366 * 86'400;
    OTD_RETURN_IF_ERROR(
        r.Integer("default_lifetime_seconds", a.default_lifetime_seconds, 60, 10 * kYear));
    OTD_RETURN_IF_ERROR(r.Integer("max_lifetime_seconds", a.max_lifetime_seconds, 60, 10 * kYear));
    OTD_RETURN_IF_ERROR(
        r.Integer("email_lifetime_seconds", a.email_lifetime_seconds, 60, 10 * kYear));
    // Never a scope that mints or changes credentials (accessCodes.create mints a
    // detokenize-capable secret): a mailbox is a weaker proof than a login.
    OTD_RETURN_IF_ERROR(
        r.StringSet("email_scope", a.email_scope,
                    {"account", "account.read", "accessCodes.read", "accessTokens.read",
                     "accessTokens.delete", "tokens", "tokens.create"}));
    OTD_RETURN_IF_ERROR(
        r.Integer("email_requests_per_address", a.email_requests_per_address, 1, 1000));
    OTD_RETURN_IF_ERROR(
        r.Integer("email_requests_per_peer", a.email_requests_per_peer, 1, 100'000));
    // At most the per-account token limit (service::AccessTokensOptions::max_per_account).
    OTD_RETURN_IF_ERROR(r.Integer("email_tokens_per_account", a.email_tokens_per_account, 1, 100));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
    if (a.default_lifetime_seconds > a.max_lifetime_seconds ||
        a.email_lifetime_seconds > a.max_lifetime_seconds) {
      return InvalidArgument(
          "access_tokens.default_lifetime_seconds: default and e-mail lifetimes must not "
          "exceed access_tokens.max_lifetime_seconds");
    }
  }

  OTD_ASSIGN_OR_RETURN(const json* audit, root.Object("audit", false));
  if (audit != nullptr) {
    ObjectReader r(*audit, "audit");
    OTD_RETURN_IF_ERROR(r.String("path", c.audit_path, false));
    OTD_RETURN_IF_ERROR(r.String("node_id", c.audit_node_id, false));
    OTD_RETURN_IF_ERROR(
        r.Integer("anchor_interval_seconds", c.audit_anchor_interval_seconds, 0, 86400));
    // --- audit segments (issue 18 part 2) ---
    OTD_RETURN_IF_ERROR(r.String("directory", c.audit_directory, false));
    OTD_RETURN_IF_ERROR(
        r.Integer("segment_max_bytes", c.audit_segment_max_bytes, 4096, 1ull << 40));
    OTD_RETURN_IF_ERROR(r.Integer("segment_max_seconds", c.audit_segment_max_seconds, 0, 31536000));
    OTD_RETURN_IF_ERROR(r.Bool("syslog", c.audit_syslog));
    if (!c.audit_directory.empty() && c.audit_directory[0] != '/') {
      return InvalidArgument("audit.directory: must be an absolute path");
    }
    if (!c.audit_directory.empty() && !c.audit_path.empty()) {
      return InvalidArgument(
          "audit.directory: set either audit.path (one file) or "
          "audit.directory (segments), not both");
    }
    // --- end audit segments ---
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
    if (!c.audit_node_id.empty() && !service::ValidAuditNodeId(c.audit_node_id)) {
      return InvalidArgument("audit.node_id: must be 1..64 characters of [A-Za-z0-9._-]");
    }
    if (!c.audit_path.empty() && c.audit_path[0] != '/') {
      return InvalidArgument("audit.path: must be an absolute path");
    }
  }

  OTD_ASSIGN_OR_RETURN(const json* metrics, root.Object("metrics", false));
  OTD_RETURN_IF_ERROR(ParseMetrics(metrics, c));

  OTD_ASSIGN_OR_RETURN(const json* console, root.Object("console", false));
  if (console != nullptr) {
    ObjectReader r(*console, "console");
    OTD_RETURN_IF_ERROR(r.Bool("enabled", c.console_enabled));
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
  }

  OTD_ASSIGN_OR_RETURN(const json* limits, root.Object("limits", false));
  if (limits != nullptr) {
    ObjectReader r(*limits, "limits");
    auto& l = c.limits;
    OTD_RETURN_IF_ERROR(r.Integer("max_header_bytes", l.max_header_bytes, 1024, 64 * 1024));
    OTD_RETURN_IF_ERROR(r.Integer("max_body_bytes", l.max_body_bytes, 1024, 64ull * 1024 * 1024));
    OTD_RETURN_IF_ERROR(r.Integer("max_json_body_bytes", l.max_json_body_bytes, 256, 1024 * 1024));
    OTD_RETURN_IF_ERROR(r.Integer("request_timeout_ms", l.request_timeout_ms, 100, 600'000));
    OTD_RETURN_IF_ERROR(r.Integer("idle_timeout_ms", l.idle_timeout_ms, 100, 3'600'000));
    OTD_RETURN_IF_ERROR(r.Integer("write_timeout_ms", l.write_timeout_ms, 100, 600'000));
    OTD_RETURN_IF_ERROR(r.Integer("handshake_timeout_ms", l.handshake_timeout_ms, 100, 600'000));
    OTD_RETURN_IF_ERROR(r.Integer("max_connections", l.max_connections, 1, 100'000));
    l.max_connections_per_peer = std::max<uint32_t>(1, l.max_connections / 2);
    OTD_RETURN_IF_ERROR(
        r.Integer("max_connections_per_peer", l.max_connections_per_peer, 1, 100'000));
    if (l.max_connections_per_peer > l.max_connections) {
      return InvalidArgument(
          "limits.max_connections_per_peer: must not be larger than limits.max_connections (" +
          std::to_string(l.max_connections) + ")");
    }
    OTD_RETURN_IF_ERROR(r.NoUnknownKeys());
  }
  OTD_RETURN_IF_ERROR(root.NoUnknownKeys());
  // --- issue 18 part 4: the schema (schema/config.json) as a second gate -----------------------
  // The checks above give the precise messages; a config they accept must satisfy the published
  // schema too (daemon/config_schema.h), so editors never flag a config the daemon takes.
  OTD_RETURN_IF_ERROR(ValidateConfigSchema(j));
  return c;
}

Result<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return InvalidArgument("config: cannot read " + path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > 1024 * 1024) {
    return InvalidArgument("config: file larger than 1 MiB");
  }
  return ParseConfig(ss.str());
}

std::string ResolveConfigPath(const std::string& flag, const char* env) {
  if (!flag.empty()) {
    return flag;
  }
  if (env != nullptr && env[0] != '\0') {
    return env;
  }
  return kDefaultConfigPath;
}

}  // namespace otd::daemon
