// fuzz_config: the config loader (daemon/config.h ParseConfig).
//
// Properties checked (abort on violation):
//  * ParseConfig never throws or crashes; every error is kInvalidArgument;
//  * an accepted config respects the documented ranges (listeners, port, socket mode without
//    access for others, mail mode exclusivity, limits, lifetimes, log level);
//  * parsing is deterministic (the same input gives the same verdict and message twice).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "daemon/config.h"

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_config: property violated: %s\n", what);
    std::abort();
  }
}

template <class T>
bool In(T v, uint64_t lo, uint64_t hi) {
  return static_cast<uint64_t>(v) >= lo && static_cast<uint64_t>(v) <= hi && v >= 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = otd::daemon::ParseConfig(text);
  auto again = otd::daemon::ParseConfig(text);
  Require(c.ok() == again.ok(), "ParseConfig is not deterministic");
  if (!c.ok()) {
    Require(c.status().code() == otd::Code::kInvalidArgument,
            "config error is not kInvalidArgument");
    Require(c.status().message() == again.status().message(), "config error message varies");
    Require(!c.status().message().empty(), "empty config error message");
    return 0;
  }
  Require(c->unix_listen || c->tls_listen, "no listener accepted");
  if (c->unix_listen) {
    Require(!c->unix_listen->path.empty() && c->unix_listen->path.size() <= 100, "unix path");
    Require((c->unix_listen->mode & 0007) == 0 && c->unix_listen->mode <= 0777, "unix mode");
  }
  if (c->tls_listen) {
    Require(c->tls_listen->port >= 1, "tls port");
    Require(!c->tls_listen->certificate.empty() && !c->tls_listen->private_key.empty(),
            "tls files");
  }
  Require(!c->storage_path.empty(), "storage path");
  Require(In(c->storage_map_size_mb, 1, 1024ull * 1024), "map size");
  Require(!c->hsm_module.empty() && !c->hsm_token_label.empty() && c->hsm_token_label.size() <= 32,
          "hsm");
  Require(In(c->hsm_max_sessions, 1, 256), "hsm sessions");
  Require(c->mail_spool_dir.empty() != c->mail_smtp_url.empty(), "mail mode");
  Require(c->mail_from.find('@') != std::string::npos, "mail from");
  Require(c->log_level == "debug" || c->log_level == "info" || c->log_level == "warn" ||
              c->log_level == "error",
          "log level");
  Require(In(c->workers, 0, 256), "workers");
  const auto& l = c->limits;
  Require(In(l.max_header_bytes, 1024, 64 * 1024) && In(l.max_body_bytes, 1024, 64ull << 20) &&
              In(l.max_json_body_bytes, 256, 1 << 20) && In(l.request_timeout_ms, 100, 600'000) &&
              In(l.idle_timeout_ms, 100, 3'600'000) && In(l.write_timeout_ms, 100, 600'000) &&
              In(l.handshake_timeout_ms, 100, 600'000) && In(l.max_connections, 1, 100'000) &&
              In(l.max_connections_per_peer, 1, l.max_connections),
          "limits");
  const auto& a = c->accounts;
  Require(In(a.registration_lifetime_seconds, 60, 30 * 86'400) &&
              In(a.challenge_lifetime_seconds, 10, 3600) &&
              In(a.session_lifetime_seconds, 60, 86'400) && a.totp_issuer.size() <= 64 &&
              a.totp_issuer.find(':') == std::string::npos,
          "accounts");
  Require(In(c->signature_past_seconds, 1, 3600) && In(c->signature_future_seconds, 0, 3600),
          "signature window");
  Require(In(c->access_code_lifetime_seconds, 60, 10ull * 365 * 86'400), "access code lifetime");
  Require(In(c->token_max_lifetime_seconds, 0, 100ull * 365 * 86'400), "token lifetime");
  if (!c->public_url.empty()) {
    Require(c->public_url.back() != '/', "public_url trailing slash");
  }
  return 0;
}
