#pragma once
// `opentoken-admin status` (issue 18 part 3): asks the running daemon for GET /status on its
// metrics socket (api/status_endpoint.h) -- no token, no PIN, no store access -- and maps the
// answer to stable exit codes:
//   0 healthy   the daemon answered and token, store and keys are fine
//   1 unhealthy the daemon answered: something is wrong (the answer says what)
//   2 not running  nothing listens on the metrics socket (absent, or connection refused)
//   3 unknown   cannot tell: metrics disabled in the config, no permission on the socket, no
//               or a malformed answer within the timeout
// (and, from opentoken-admin itself, 64 usage and 78 bad configuration).
//
// Thread safety: free functions.

#include <string>

#include <nlohmann/json.hpp>

namespace otd::daemon {

enum class DaemonState { kHealthy = 0, kUnhealthy = 1, kNotRunning = 2, kUnknown = 3 };

struct DaemonStatus {  // NOLINT(bugprone-exception-escape): the json member
  DaemonState state = DaemonState::kUnknown;
  nlohmann::json answer;  // the daemon's JSON when it answered (object), else null
  std::string reason;     // why not running / unknown
};

// Connects to `socket_path`, sends GET /status, reads the answer (at most `timeout_ms` for each
// step).
DaemonStatus QueryDaemonStatus(const std::string& socket_path, int timeout_ms);

// Classifies a raw HTTP/1.1 answer (exposed for tests).
DaemonStatus ClassifyStatusAnswer(const std::string& raw);

// The JSON printed by `status --format json`: the daemon's answer, or {"status": "not-running" |
// "unknown", "reason": ...}; always with "status".
nlohmann::json StatusJson(const DaemonStatus& s);
// The human-readable summary printed by `status` (--format text).
std::string StatusText(const DaemonStatus& s);

}  // namespace otd::daemon
