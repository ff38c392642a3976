#pragma once
// opentokend configuration (JSON, DESIGN §5). Loading is strict: an unknown key, a wrong type or
// an out-of-range value stops start-up with a message naming the key (e.g. "listen.tls.port:
// must be an integer between 1 and 65535"). The daemon exits with EX_CONFIG (78) then.

#include <cstdint>
#include <optional>
#include <string>

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

struct LimitsConfig {
  uint64_t max_header_bytes = 8 * 1024;
  uint64_t max_body_bytes = 1024 * 1024;   // token payload limit (issue 4: default 1 MiB)
  uint64_t max_json_body_bytes = 64 * 1024;
  uint32_t request_timeout_ms = 10'000;    // total deadline for reading one request
  uint32_t idle_timeout_ms = 30'000;       // keep-alive idle time between requests
  uint32_t write_timeout_ms = 10'000;
  uint32_t max_connections = 512;
};

struct Config {
  std::optional<UnixListenConfig> unix_listen;
  std::optional<TlsListenConfig> tls_listen;
  std::string storage_path;
  uint64_t storage_map_size_mb = 1024;
  std::string hsm_module;
  std::string hsm_token_label;
  std::string hsm_pin_file;   // empty: read the systemd credential `pin`
  uint32_t hsm_max_sessions = 8;
  std::string mail_spool_dir;
  std::string mail_smtp_url;
  std::string mail_from = "opentokend@localhost";
  std::string public_url;
  uint32_t workers = 0;       // 0: number of cores
  std::string log_level = "info";
  LimitsConfig limits;
};

// Parses and validates a config document. Errors are kInvalidArgument naming the key.
Result<Config> ParseConfig(std::string_view json_text);
// Reads the file, then ParseConfig. A missing/unreadable file is kInvalidArgument too.
Result<Config> LoadConfigFile(const std::string& path);

}  // namespace otd::daemon
