#pragma once
// HttpServer: Boost.Beast HTTP/1.1 over a Unix socket, TLS and/or plain TCP (any of them at once),
// keep-alive.
//
// Per connection (one coroutine on its own strand):
//   TLS handshake (handshake deadline) → read header (limit) → framing guard (api/framing.h) →
//   100-continue if asked → read body (limit from the guard) → run the handler on the worker pool
//   → write (write deadline) → wait for the next request's first byte (idle deadline) → ...
// Deadlines: the first request must be complete (header and body) within the request deadline
// from the accept (after the handshake on TLS); a keep-alive request within the request deadline
// from its first byte (on TLS: the first byte of the record that carries it).
// Connections: each listener has its own table (limits.max_connections, at most
// limits.max_connections_per_peer per peer: the uid on Unix, the IP on TLS, an IPv6 /64). A
// newcomer that finds its peer's share or the table full takes the place of a connection that
// waits (api/connection_table.h); one whose request is being handled is never cut for it.
// Behind a trusted reverse proxy (ServerOptions::trusted_proxies) each request's client identity
// comes from the forwarding header (api/forwarded.h); connection caps still see the proxy.
// Any parse or framing error: a short vnd.error response with `Connection: close`, then the
// connection is shut down; no later request on it is ever read.
//
// Stop(): stops accepting, closes idle connections, lets in-flight requests finish (their
// responses carry `Connection: close`), then returns from Run().
//
// Thread safety: Run() blocks the calling thread (plus io_threads - 1 helpers); Stop() may be
// called from any thread or a signal handler's asio::signal_set.

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "api/forwarded.h"
#include "api/limits.h"
#include "api/router.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"

namespace otd::api {

struct UnixListener {
  std::string path;
  unsigned mode = 0660;
  int inherited_fd = -1;  // socket activation: an already-listening fd (then path is informative)
};

struct TlsListener {
  std::string address;
  uint16_t port = 0;  // 0: pick a free port (tests); see BoundTlsPort()
  std::string certificate_file;
  std::string private_key_file;
};

// Plain HTTP over TCP, no TLS: only for the metrics listener (metrics.tcp), which is on loopback
// by default and may require a bearer token (api/metrics_endpoint.h).
struct TcpListener {
  std::string address;
  uint16_t port = 0;  // 0: pick a free port (tests); see BoundTcpPort()
};

struct ServerOptions {
  std::optional<UnixListener> unix_listener;
  std::optional<TlsListener> tls_listener;
  std::optional<TcpListener> tcp_listener;
  Limits limits;
  unsigned io_threads = 2;
  unsigned worker_threads = 4;
  // Optional (null: not measured); must outlive the server. Requests by route pattern, method and
  // status (opentokend_http_requests_total, opentokend_http_request_duration_seconds) and
  // connections by transport (open, accepted, rejected; evicted also by reason).
  metrics::Registry* metrics = nullptr;
  // Which per-request access lines ("http_request") are logged (config log.access).
  AccessLogOptions access_log;
  // listen.trusted_proxies / listen.forwarded_header (api/forwarded.h): a request that comes from
  // a trusted peer names its client in that header; RequestContext::peer is then the client (for
  // the per-client limits and audit lines) and RequestContext::via the proxy. Empty (the default):
  // the headers are never read. Connection caps always count the connection's own peer.
  TrustedProxies trusted_proxies;
  ForwardedHeader forwarded_header = ForwardedHeader::kXForwardedFor;
};

class HttpServer {
 public:
  // Binds the listeners (so errors surface before READY). kUnavailable/kInvalidArgument on failure.
  static Result<std::unique_ptr<HttpServer>> Create(ServerOptions options, const Router& router,
                                                    Logger& log);
  ~HttpServer();

  // Serves until Stop() has drained every connection.
  void Run();
  void Stop();
  // Reloads the TLS certificate chain and private key from the configured files (SIGHUP) into a
  // new TLS context that new connections use; connections already open keep theirs. When the new
  // pair does not load or the key does not match the certificate, the old context stays in use
  // and the error (kInvalidArgument naming the file) is returned. kFailedPrecondition without a
  // TLS listener. Thread safe.
  Status ReloadTls();
  uint16_t BoundTlsPort() const;
  uint16_t BoundTcpPort() const;
  size_t OpenConnections() const;

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace otd::api
