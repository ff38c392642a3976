#pragma once
// Request/response types shared by the API layer, and the per-request context.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

#include "common/status.h"

namespace otd::api {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// kTcp: plain HTTP over TCP, used only by the optional metrics listener (metrics.tcp).
enum class Transport { kUnix, kTls, kTcp };

// "unix", "tls" or "tcp" (log fields, metric labels).
inline std::string_view TransportName(Transport t) {
  switch (t) {
    case Transport::kUnix: return "unix";
    case Transport::kTls: return "tls";
    case Transport::kTcp: return "tcp";
  }
  return "unix";
}

// Set by a handler whose answer waits for a durable write that completes later (the store's group
// commit, an audit batch). The server calls start(done) on the worker thread right after the
// handler returns, frees the worker, and when done(status) has been called (from any thread,
// exactly once) sends finish(status, response-the-handler-returned) from the connection's own
// thread. So no worker thread sleeps in fdatasync, and the writer's completion goes straight to
// the connection. finish runs before the request and its context are released: it may use both.
struct Deferred {
  std::function<void(std::function<void(Status)> done)> start;
  std::function<Response(Status, Response)> finish;
};

struct RequestContext {
  std::string request_id;
  Transport transport = Transport::kUnix;
  // The client: "uid:<n>" (Unix socket) or "ip:<address>" (TLS), or behind a trusted proxy the
  // address it forwarded (api/forwarded.h, ClientIdOf). Per-client limits and audit lines use it.
  std::string peer;
  std::string via;  // the trusted proxy's own identity when `peer` came from a header; else ""
  // What per-client limits count: `peer`, but an IPv6 client's /64 (LimitKeyOf in
  // api/forwarded.h), since one host commonly holds a whole /64 and could otherwise rotate
  // addresses to get fresh allowances. Audit lines keep the full `peer`.
  std::string limit_peer;
  std::string path;                           // raw path of the target, without the query
  std::string query;                          // raw query string, without '?'
  std::string route;                          // matched route pattern (safe to log; no ids)
  std::map<std::string, std::string> params;  // route parameters ({id} -> value)
  std::optional<Deferred> deferred;           // see Deferred; empty for most routes
};

// Splits an origin-form target into path and query.
void SplitTarget(std::string_view target, std::string& path, std::string& query);

}  // namespace otd::api
