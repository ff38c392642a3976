#pragma once
// Every limit of the HTTP layer in one place (DESIGN §6). Values come from the config
// (`limits.*`), these are the defaults and hard bounds.

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace otd::api {

struct Limits {
  uint64_t max_header_bytes = 8 * 1024;
  uint64_t max_body_bytes = 1024 * 1024;              // largest body of any route (token payloads)
  uint64_t max_json_body_bytes = 64 * 1024;           // bodies of JSON routes
  std::chrono::milliseconds request_timeout{10'000};  // total time to read one request
  // Keep-alive: how long the next request's first byte may take; from that byte on, the whole
  // request has request_timeout.
  std::chrono::milliseconds idle_timeout{30'000};
  std::chrono::milliseconds write_timeout{10'000};
  std::chrono::milliseconds handshake_timeout{3'000};  // TLS handshake, from the accept
  uint32_t max_connections = 512;           // per listener (Unix and TLS have one budget each)
  uint32_t max_connections_per_peer = 256;  // per listener and peer (uid; IP, IPv6 by /64)
  // A peer at its share may take the place of one of its own waiting connections only when that
  // one has waited this long (api/connection_table.h). Not configurable.
  std::chrono::milliseconds peer_eviction_min_wait{1'000};
  size_t max_target_bytes = 2048;
  size_t max_json_depth = 8;
};

}  // namespace otd::api
