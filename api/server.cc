#include "api/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/ssl.h>

#include <array>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <vector>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include "api/browser_policy.h"
#include "api/connection_table.h"
#include "api/errors.h"
#include "api/framing.h"
#include "common/ascii.h"
#include "common/check.h"
#include "crypto/random.h"

namespace otd::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using unix_proto = net::local::stream_protocol;
using UnixStream = beast::basic_stream<unix_proto>;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using PlainStream = beast::tcp_stream;
using beast::error_code;
using net::awaitable;
using net::use_awaitable;

namespace {

int64_t NowTicks() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One open connection, as seen by Stop() (it can be closed while it waits for a request) and by
// its listener's ConnectionTable (TrackedConn: waiting or busy, its peer).
class ConnBase : public TrackedConn {
 public:
  ConnBase(std::string peer_key, Transport t)
      : TrackedConn(std::move(peer_key), NowTicks()), transport(t) {}
  virtual void CloseIfIdle() = 0;
  virtual void ForceClose() = 0;
  const Transport transport;
};

template <class Stream>
class Conn final : public ConnBase, public std::enable_shared_from_this<Conn<Stream>> {
 public:
  Conn(Stream s, ConnectionPeer who, std::string peer_key, Transport t)
      : ConnBase(std::move(peer_key), t),
        stream(std::move(s)),
        idle_timer(stream.get_executor()),
        peer(PeerIdOf(who)),
        connection_peer(std::move(who)) {}
  void CloseIfIdle() override {
    net::post(stream.get_executor(), [self = this->shared_from_this()] {
      if (self->idle) {
        error_code ec;
        beast::get_lowest_layer(self->stream).socket().close(ec);
      }
    });
  }
  void ForceClose() override {
    net::post(stream.get_executor(), [self = this->shared_from_this()] {
      error_code ec;
      beast::get_lowest_layer(self->stream).socket().close(ec);
    });
  }
  Stream stream;
  // The keep-alive wait for the next request's first byte (AwaitNextRequest); on the strand.
  net::steady_timer idle_timer;
  uint64_t idle_wait = 0;  // which wait idle_timer belongs to
  std::string peer;        // "uid:<n>" or "ip:<address>"; for rate limiting (not logged)
  const ConnectionPeer connection_peer;  // what `peer` was made from (api/forwarded.h)
  bool idle = true;  // waiting for a request header (Stop closes it); only touched on the strand
};

Request BlankRequest() {
  Request r;
  r.version(11);
  return r;
}

bool IsQuietClose(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::operation_aborted ||
         ec == beast::error::timeout || ec == net::error::bad_descriptor ||
         ec == ssl::error::stream_truncated;
}

void AddCommonHeaders(Response& res, const std::string& request_id) {
  if (res[http::field::cache_control].empty()) {
    res.set(http::field::cache_control, "no-store");  // the console's static files say no-cache
  }
  res.set("X-Content-Type-Options", "nosniff");
  res.set("X-Frame-Options", "DENY");
  res.set("X-Request-Id", request_id);
}

// Overwrites everything a message carried: header values (Cookie, Authorization, Set-Cookie,
// Location hold bearer secrets or token ids), the target and the body. Beast's field storage is
// freed without wiping, so this runs before the message is destroyed.
template <bool isRequest>
void WipeMessage(http::message<isRequest, http::string_body>& m) {
  for (auto& f : m) {
    std::string_view v = f.value();
    OPENSSL_cleanse(const_cast<char*>(v.data()), v.size());
  }
  if constexpr (isRequest) {
    std::string_view t = m.target();
    OPENSSL_cleanse(const_cast<char*>(t.data()), t.size());
  }
  OPENSSL_cleanse(m.body().data(), m.body().size());
}

// Overwrites the free space of the read buffer, where earlier requests' bytes remain.
void WipeSpare(beast::flat_buffer& buffer) {
  auto spare = buffer.prepare(buffer.capacity() - buffer.size());
  OPENSSL_cleanse(spare.data(), spare.size());
}

std::string NewRequestId() {
  auto id = crypto::RandomUrlSafeString(12);
  return id.ok() ? *id : std::string("unavailable");
}

// Label values: the methods the framing guard lets through, everything else as one value (no
// client-chosen string ever becomes a label).
std::string_view MethodLabel(http::verb v) {
  return IsServedMethod(v) ? http::to_string(v) : std::string_view("OTHER");
}

// Route label of requests refused before routing (framing, limits, malformed bodies).
constexpr std::string_view kRejectedRoute = "(rejected)";

constexpr size_t kTransports = 3;
size_t TransportIndex(Transport t) { return static_cast<size_t>(t); }

// ServerOptions::metrics handles; per-transport ones resolved at creation.
struct HttpMetrics {
  metrics::CounterFamily* requests = nullptr;
  metrics::HistogramFamily* seconds = nullptr;
  // By TransportIndex; only for the transports the server listens on.
  std::array<metrics::Gauge*, kTransports> open{};
  std::array<metrics::Counter*, kTransports> accepted{};
  std::array<metrics::Counter*, kTransports> rejected{};
  std::array<metrics::Counter*, kTransports> evicted_for_peer{};
  std::array<metrics::Counter*, kTransports> evicted_for_table{};
};

ConnectionTable MakeTable(const Limits& l) {
  return ConnectionTable(
      l.max_connections, l.max_connections_per_peer,
      std::chrono::duration_cast<std::chrono::nanoseconds>(l.peer_eviction_min_wait).count());
}

// The reason label of an eviction or refusal: the limit that made it (a config key).
const char* ReasonOf(Admission a) {
  return a == Admission::kEvictedForPeer || a == Admission::kRefusedPeerFull
             ? "max_connections_per_peer"
             : "max_connections";
}

// At most one log line a second per event and transport, with the count since the last line: a
// flood must not turn into a flood of log lines.
class LogThrottle {
 public:
  // Counts one event; returns how many to report now (0: not yet).
  int64_t Count() {
    unlogged_.fetch_add(1);
    const int64_t now_ms = NowTicks() / 1'000'000;
    int64_t last = logged_at_ms_.load();
    if (now_ms - last >= 1000 && logged_at_ms_.compare_exchange_strong(last, now_ms)) {
      return unlogged_.exchange(0);
    }
    return 0;
  }

 private:
  std::atomic<int64_t> unlogged_{0};
  std::atomic<int64_t> logged_at_ms_{-1'000'000};
};

Result<HttpMetrics> MakeHttpMetrics(metrics::Registry& r, const ServerOptions& o) {
  HttpMetrics m;
  OTD_ASSIGN_OR_RETURN(m.requests,
                       r.AddCounter("opentokend_http_requests_total",
                                    "HTTP requests answered, by route pattern, method and status.",
                                    {"route", "method", "status"}));
  OTD_ASSIGN_OR_RETURN(m.seconds,
                       r.AddHistogram("opentokend_http_request_duration_seconds",
                                      "Time from a complete request header to the response "
                                      "written, by route pattern and method.",
                                      {"route", "method"}, metrics::RequestSecondsBuckets()));
  OTD_ASSIGN_OR_RETURN(
      metrics::GaugeFamily * open,
      r.AddGauge("opentokend_http_connections_open", "Open client connections.", {"transport"}));
  OTD_ASSIGN_OR_RETURN(metrics::CounterFamily * accepted,
                       r.AddCounter("opentokend_http_connections_accepted_total",
                                    "Client connections accepted.", {"transport"}));
  OTD_ASSIGN_OR_RETURN(
      metrics::CounterFamily * rejected,
      r.AddCounter("opentokend_http_connections_rejected_total",
                   "Client connections closed at once: the listener's table "
                   "(limits.max_connections) or the peer's share of it "
                   "(limits.max_connections_per_peer) held only connections with a request "
                   "being handled.",
                   {"transport"}));
  OTD_ASSIGN_OR_RETURN(
      metrics::CounterFamily * evicted,
      r.AddCounter("opentokend_http_connections_evicted_total",
                   "Waiting client connections (TLS handshake, idle keep-alive, request not yet "
                   "complete) closed to make room for a new one, by the limit that was reached.",
                   {"transport", "reason"}));
  for (Transport t : {Transport::kUnix, Transport::kTls, Transport::kTcp}) {
    const bool listens = t == Transport::kUnix  ? o.unix_listener.has_value()
                         : t == Transport::kTls ? o.tls_listener.has_value()
                                                : o.tcp_listener.has_value();
    if (!listens) {
      continue;
    }
    const std::string_view name = TransportName(t);
    m.open[TransportIndex(t)] = &open->With({name});
    m.accepted[TransportIndex(t)] = &accepted->With({name});
    m.rejected[TransportIndex(t)] = &rejected->With({name});
    m.evicted_for_peer[TransportIndex(t)] =
        &evicted->With({name, ReasonOf(Admission::kEvictedForPeer)});
    m.evicted_for_table[TransportIndex(t)] =
        &evicted->With({name, ReasonOf(Admission::kEvictedForTable)});
  }
  return m;
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(ServerOptions o, const Router& router, Logger& log)
      : opt_(std::move(o)),
        router_(router),
        log_(log),
        ioc_(static_cast<int>(std::max(1u, opt_.io_threads))),
        workers_(std::max(1u, opt_.worker_threads)),
        tables_{MakeTable(opt_.limits), MakeTable(opt_.limits), MakeTable(opt_.limits)},
        access_log_(opt_.access_log),
        drain_timer_(control_) {}

  Status Bind();
  Status SetUpMetrics();
  void Run();
  void Stop();
  ~Impl();
  uint16_t tls_port() const { return tls_port_; }
  uint16_t tcp_port() const { return tcp_port_; }
  size_t connections() const { return connections_.load(); }
  Status ReloadTls();

 private:
  // A TLS server context with our protocol and cipher policy and the configured certificate and
  // key (kInvalidArgument naming the file that does not load or match).
  Result<std::shared_ptr<ssl::context>> MakeTlsContext() const;
  std::shared_ptr<ssl::context> CurrentTlsContext() const;
  Status SetUpTls();
  template <class Acceptor, class MakeStream>
  awaitable<void> AcceptLoop(Acceptor& acceptor, Transport transport, MakeStream make_stream);
  // Counts (metrics) and logs (throttled) what admitting a connection did to the table.
  void RecordAdmission(Transport transport, Admission a);
  // The request's client (ctx.peer) and, when a trusted proxy named it, the proxy (ctx.via):
  // api/forwarded.h. Without listen.trusted_proxies nothing is read and ctx.peer stays the
  // connection's peer.
  void SetClient(const ConnectionPeer& who, const Request& req, RequestContext& ctx) const;
  // One connection: the TLS handshake, then requests (ReadRequest, Answer) until it closes.
  template <class Stream>
  awaitable<void> Serve(std::shared_ptr<Conn<Stream>> conn, Transport transport);
  // Reads one request within limits.request_timeout: the raw header checked byte by byte before
  // Beast parses it, the framing guard, 100-continue, the body within its limit, no trailers.
  // Anything wrong is answered (Reject) and ends the connection: nullopt.
  template <class Stream>
  awaitable<std::optional<Request>> ReadRequest(Conn<Stream>& conn, beast::flat_buffer& buffer,
                                                RequestContext& ctx,
                                                std::chrono::steady_clock::time_point started);
  // Runs the request on the workers, writes the answer, counts and logs it. False: the
  // connection ends (Connection: close, a stop, or the answer could not be written).
  template <class Stream>
  awaitable<bool> Answer(Conn<Stream>& conn, Request& req, RequestContext& ctx,
                         std::chrono::steady_clock::time_point started);
  // Keep-alive: waits up to limits.idle_timeout until the next request's first byte is here
  // (buffered already, or readable on the socket). False: timed out, closed or evicted.
  template <class Stream>
  awaitable<bool> AwaitNextRequest(std::shared_ptr<Conn<Stream>> conn,
                                   const beast::flat_buffer& buffer);
  // Answers a request refused before routing (status, vnd.error, Connection: close) unless the
  // connection was evicted meanwhile.
  template <class Stream>
  awaitable<void> Reject(Conn<Stream>& conn, const RequestContext& ctx, http::verb method,
                         unsigned status, const char* code, std::string_view message,
                         std::chrono::steady_clock::time_point started);
  template <class Stream>
  // Writes `res` (within limits.write_timeout); false when it could not be written completely.
  awaitable<bool> Send(Stream& stream, Response res, bool close);
  Response Handle(Request& req, RequestContext& ctx);
  // The answer to a handler (or a deferred finish/start) that threw: logged, 500, no detail.
  Response HandlerFailed(const Request& req, RequestContext& ctx);
  // Runs Handle on the worker pool and completes with the final response on the caller's
  // executor (the connection's strand). A deferred answer (RequestContext::Deferred) is started
  // on the worker, which is then free; the thread that finishes the write posts the completion
  // straight to the connection.
  template <class CompletionToken>
  auto HandleOnWorkers(Request& req, RequestContext& ctx, CompletionToken&& token);
  // Counts one answered request (no-op without ServerOptions::metrics).
  void RecordRequest(std::string_view route, http::verb method, unsigned status,
                     std::chrono::steady_clock::time_point started);
  void Untrack(const std::shared_ptr<ConnBase>& c);
  void MaybeFinishDrain();

  ServerOptions opt_;
  const Router& router_;
  Logger& log_;
  net::io_context ioc_;
  // Serialises what touches the acceptors, drain_timer_ and work_ (Asio objects are not safe for
  // concurrent use): the accept loops, Stop()'s shutdown and MaybeFinishDrain(). With more than one
  // io thread these ran at the same time (TSan: acceptor close() vs. a new async_accept()).
  net::strand<net::io_context::executor_type> control_{net::make_strand(ioc_)};
  net::thread_pool workers_;
  // The TLS context new connections get; ReloadTls() swaps it. An SSL object holds a reference
  // to its SSL_CTX (SSL_new up-refs it), so connections opened before a swap keep the old
  // certificate until they close, whatever happens to this pointer.
  mutable std::mutex tls_mu_;
  std::shared_ptr<ssl::context> ssl_ctx_;
  std::optional<unix_proto::acceptor> unix_acceptor_;
  std::optional<tcp::acceptor> tls_acceptor_;
  uint16_t tls_port_ = 0;
  std::optional<tcp::acceptor> tcp_acceptor_;  // plain HTTP (metrics.tcp)
  uint16_t tcp_port_ = 0;
  std::atomic<size_t> connections_{0};  // open, evicted ones until they are closed
  std::atomic<bool> stopping_{false};
  std::array<LogThrottle, kTransports> refused_log_;  // by TransportIndex
  std::array<LogThrottle, kTransports> evicted_log_;
  std::array<LogThrottle, kTransports> accept_failed_log_;
  std::mutex mu_;
  std::set<std::shared_ptr<ConnBase>> conns_;  // every open connection, for Stop()
  // By TransportIndex; evicted ones are not counted.
  std::array<ConnectionTable, kTransports> tables_;
  AccessLogFilter access_log_;
  net::steady_timer drain_timer_;
  std::optional<HttpMetrics> metrics_;  // immutable after SetUpMetrics()
  // Keeps Run() alive until Stop() has drained the connections.
  net::executor_work_guard<net::io_context::executor_type> work_{ioc_.get_executor()};
  // Deferred answers whose `done` (called on a store or audit writer thread) may still post to a
  // connection's strand. ~Impl waits for them before the io_context goes (ASan: a tokenize's
  // commit completed after the server was destroyed and posted to a freed strand).
  std::mutex deferred_mu_;
  std::condition_variable deferred_cv_;
  size_t deferred_in_flight_ = 0;  // guarded by deferred_mu_
};

Result<std::shared_ptr<ssl::context>> HttpServer::Impl::MakeTlsContext() const {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  error_code ec;
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                       ec);
  SSL_CTX* ctx = context->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx,
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256") != 1) {
    return Internal("cannot restrict TLS versions/ciphers");
  }
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  context->use_certificate_chain_file(opt_.tls_listener->certificate_file, ec);
  if (ec) {
    return InvalidArgument("listen.tls.certificate: cannot load " +
                           opt_.tls_listener->certificate_file);
  }
  context->use_private_key_file(opt_.tls_listener->private_key_file, ssl::context::pem, ec);
  if (ec || SSL_CTX_check_private_key(ctx) != 1) {
    return InvalidArgument("listen.tls.private_key: cannot load " +
                           opt_.tls_listener->private_key_file +
                           " or it does not match the certificate");
  }
  return context;
}

std::shared_ptr<ssl::context> HttpServer::Impl::CurrentTlsContext() const {
  std::lock_guard lock(tls_mu_);
  return ssl_ctx_;
}

Status HttpServer::Impl::SetUpTls() {
  OTD_ASSIGN_OR_RETURN(auto context, MakeTlsContext());
  std::lock_guard lock(tls_mu_);
  ssl_ctx_ = std::move(context);
  return Status::Ok();
}

Status HttpServer::Impl::ReloadTls() {
  if (!opt_.tls_listener) {
    return FailedPrecondition("no TLS listener");
  }
  // Loaded completely before the swap: a broken pair never replaces a working one.
  return SetUpTls();
}

Status HttpServer::Impl::SetUpMetrics() {
  if (opt_.metrics != nullptr) {
    OTD_ASSIGN_OR_RETURN(metrics_, MakeHttpMetrics(*opt_.metrics, opt_));
  }
  return Status::Ok();
}

void HttpServer::Impl::RecordRequest(std::string_view route, http::verb method, unsigned status,
                                     std::chrono::steady_clock::time_point started) {
  if (!metrics_) {
    return;
  }
  if (route.empty()) {
    route = "(unknown)";
  }
  const std::string_view m = MethodLabel(method);
  char buf[8];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, status);
  metrics_->requests->With({route, m, std::string_view(buf, static_cast<size_t>(end - buf))}).Inc();
  metrics_->seconds->With({route, m})
      .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

Status HttpServer::Impl::Bind() {
  error_code ec;
  if (opt_.unix_listener) {
    const auto& u = *opt_.unix_listener;
    unix_acceptor_.emplace(ioc_);
    if (u.inherited_fd >= 0) {
      unix_acceptor_->assign(unix_proto(), u.inherited_fd, ec);
      if (ec) {
        return Unavailable("cannot adopt the inherited Unix socket: " + ec.message());
      }
    } else {
      struct stat st {};
      if (::lstat(u.path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
          return InvalidArgument("listen.unix.path: " + u.path + " exists and is not a socket");
        }
        ::unlink(u.path.c_str());  // a stale socket from an earlier run
      }
      unix_acceptor_->open(unix_proto(), ec);
      if (!ec) {
        unix_acceptor_->bind(unix_proto::endpoint(u.path), ec);
      }
      if (!ec && ::chmod(u.path.c_str(), u.mode) != 0) {
        return Unavailable("cannot set the mode of " + u.path);
      }
      if (!ec) {
        unix_acceptor_->listen(net::socket_base::max_listen_connections, ec);
      }
      if (ec) {
        return Unavailable("cannot listen on " + u.path + ": " + ec.message());
      }
    }
  }
  if (opt_.tls_listener) {
    OTD_RETURN_IF_ERROR(SetUpTls());
    const auto& t = *opt_.tls_listener;
    auto address = net::ip::make_address(t.address, ec);
    if (ec) {
      return InvalidArgument("listen.tls.address: not an IP address");
    }
    tcp::endpoint ep(address, t.port);
    tls_acceptor_.emplace(ioc_);
    tls_acceptor_->open(ep.protocol(), ec);
    if (!ec) {
      tls_acceptor_->set_option(net::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
      tls_acceptor_->bind(ep, ec);
    }
    if (!ec) {
      tls_acceptor_->listen(net::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      return Unavailable("cannot listen on " + t.address + ":" + std::to_string(t.port) + ": " +
                         ec.message());
    }
    tls_port_ = tls_acceptor_->local_endpoint().port();
  }
  if (opt_.tcp_listener) {
    const auto& t = *opt_.tcp_listener;
    auto address = net::ip::make_address(t.address, ec);
    if (ec) {
      return InvalidArgument("metrics.tcp.address: not an IP address");
    }
    tcp::endpoint ep(address, t.port);
    tcp_acceptor_.emplace(ioc_);
    tcp_acceptor_->open(ep.protocol(), ec);
    if (!ec) {
      tcp_acceptor_->set_option(net::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
      tcp_acceptor_->bind(ep, ec);
    }
    if (!ec) {
      tcp_acceptor_->listen(net::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      return Unavailable("cannot listen on " + t.address + ":" + std::to_string(t.port) + ": " +
                         ec.message());
    }
    tcp_port_ = tcp_acceptor_->local_endpoint().port();
  }
  return Status::Ok();
}

void HttpServer::Impl::Untrack(const std::shared_ptr<ConnBase>& c) {
  {
    std::lock_guard lock(mu_);
    conns_.erase(c);
    tables_[TransportIndex(c->transport)].Remove(c);
  }
  connections_.fetch_sub(1);
  MaybeFinishDrain();
}

void HttpServer::Impl::MaybeFinishDrain() {
  if (stopping_.load() && connections_.load() == 0) {
    net::post(control_, [this] {
      drain_timer_.cancel();
      work_.reset();  // lets Run() return once the last handlers are done
    });
  }
}

// The connection's peer (api/forwarded.h's ConnectionPeer: the uid on the Unix socket, the
// address on TLS), and the key that connection caps count by: its identity, except that an IPv6
// peer is its /64 (PeerKeyOf). Decided at accept time, before any header: behind a proxy, the
// proxy's.
struct PeerIds {
  ConnectionPeer who;
  std::string key;
};

PeerIds PeerOf(unix_proto::socket& sock) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  ConnectionPeer who{.unix_socket = true};
  if (::getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    who.uid = cred.uid;
  }
  std::string key = PeerIdOf(who);
  return {std::move(who), std::move(key)};
}

PeerIds PeerOf(tcp::socket& sock) {
  error_code ec;
  sock.set_option(tcp::no_delay(true), ec);
  auto ep = sock.remote_endpoint(ec);
  if (ec) {
    return {ConnectionPeer{}, "ip:unknown"};
  }
  return {ConnectionPeer{.address = ep.address()}, PeerKeyOf(ep.address())};
}

template <class Acceptor, class MakeStream>
awaitable<void> HttpServer::Impl::AcceptLoop(Acceptor& acceptor, Transport transport,
                                             MakeStream make_stream) {
  const std::string_view name = TransportName(transport);
  const size_t ti = TransportIndex(transport);
  for (;;) {
    error_code ec;
    typename Acceptor::protocol_type::socket sock = co_await acceptor.async_accept(
        net::make_strand(ioc_), net::redirect_error(use_awaitable, ec));
    if (stopping_.load()) {
      co_return;
    }
    if (ec) {
      // E.g. EMFILE or ENFILE (out of file descriptors): back off briefly instead of spinning.
      if (int64_t n = accept_failed_log_[ti].Count(); n > 0) {
        log_.Warn("accept_failed", {{"transport", name}, {"error", ec.message()}, {"count", n}});
      }
      net::steady_timer t(ioc_, std::chrono::milliseconds(50));
      co_await t.async_wait(net::redirect_error(use_awaitable, ec));
      continue;
    }
    PeerIds peer = PeerOf(sock);
    using Stream = decltype(make_stream(std::move(sock)));
    auto conn = std::make_shared<Conn<Stream>>(make_stream(std::move(sock)), std::move(peer.who),
                                               std::move(peer.key), transport);
    ConnectionTable::Result admission;
    {
      std::lock_guard lock(mu_);
      admission = tables_[ti].Admit(conn, NowTicks());
      if (admission.admitted()) {
        conns_.insert(conn);
        connections_.fetch_add(1);
      }
    }
    if (admission.evicted) {
      std::static_pointer_cast<ConnBase>(admission.evicted)->ForceClose();
    }
    RecordAdmission(transport, admission.admission);
    if (!admission.admitted()) {
      beast::get_lowest_layer(conn->stream).socket().close(ec);
      continue;
    }
    net::co_spawn(conn->stream.get_executor(), Serve(conn, transport), net::detached);
  }
}

void HttpServer::Impl::RecordAdmission(Transport transport, Admission a) {
  const size_t ti = TransportIndex(transport);
  const std::string_view name = TransportName(transport);
  switch (a) {
    case Admission::kRefusedPeerFull:
    case Admission::kRefusedFull:
      if (metrics_) {
        metrics_->rejected[ti]->Inc();
      }
      if (int64_t n = refused_log_[ti].Count(); n > 0) {
        log_.Warn("connection_refused",
                  {{"transport", name}, {"reason", ReasonOf(a)}, {"count", n}});
      }
      return;
    case Admission::kEvictedForPeer:
    case Admission::kEvictedForTable:
      if (metrics_) {
        (a == Admission::kEvictedForPeer ? metrics_->evicted_for_peer
                                         : metrics_->evicted_for_table)[ti]
            ->Inc();
      }
      if (int64_t n = evicted_log_[ti].Count(); n > 0) {
        log_.Warn("connection_evicted",
                  {{"transport", name}, {"reason", ReasonOf(a)}, {"count", n}});
      }
      break;
    case Admission::kAdmitted: break;
  }
  if (metrics_) {
    metrics_->accepted[ti]->Inc();
    metrics_->open[ti]->Add(1);
  }
}

void HttpServer::Impl::SetClient(const ConnectionPeer& who, const Request& req,
                                 RequestContext& ctx) const {
  if (opt_.trusted_proxies.empty()) {
    return;
  }
  // Every line of the header, in the order received (the field list keeps it).
  const std::string_view name = FieldNameOf(opt_.forwarded_header);
  std::vector<std::string_view> lines;
  for (const auto& f : req) {
    if (AsciiEqualsIgnoreCase(f.name_string(), name)) {
      lines.push_back(f.value());
    }
  }
  std::string client = ClientIdOf(who, opt_.trusted_proxies, opt_.forwarded_header, lines);
  if (client != ctx.peer) {
    ctx.via = std::move(ctx.peer);
    ctx.peer = std::move(client);
    ctx.limit_peer = LimitKeyOf(ctx.peer);
  }
}

Response HttpServer::Impl::Handle(Request& req, RequestContext& ctx) {
  try {
    return router_.Dispatch(req, ctx);
  } catch (const std::exception&) {
    return HandlerFailed(req, ctx);
  }
}

Response HttpServer::Impl::HandlerFailed(const Request& req, RequestContext& ctx) {
  log_.Error("handler_exception", {{"request_id", ctx.request_id}, {"route", ctx.route}});
  return VndError(req, ctx, 500, "internal-error", "internal error");
}

template <class CompletionToken>
auto HttpServer::Impl::HandleOnWorkers(Request& req, RequestContext& ctx, CompletionToken&& token) {
  return net::async_initiate<CompletionToken, void(Response)>(
      [this, &req, &ctx](auto handler) {
        // Shared so that the completion can travel through std::function (copyable) callbacks;
        // the work guard keeps the io_context running until the connection has its answer.
        // Both are released on the connection's strand when it is resumed: copies of `done` may
        // outlive the server on a writer thread, and what they then still hold (an empty
        // optional, a moved-from handler) must not touch the io_context (TSan: a strand
        // destroyed after its io_context).
        using Completion = decltype(handler);
        using Guard = net::executor_work_guard<net::associated_executor_t<Completion>>;
        struct Pending {
          std::optional<Completion> handler;
          std::optional<Guard> work;
        };
        auto ex = net::get_associated_executor(handler);
        auto pending = std::make_shared<Pending>();
        pending->handler.emplace(std::move(handler));
        pending->work.emplace(net::make_work_guard(ex));
        // Makes the response on the connection's strand and resumes the connection with it.
        auto deliver = [pending](auto make) {
          net::post(pending->work->get_executor(), [pending, make = std::move(make)]() mutable {
            Response res = make();
            Completion h = std::move(*pending->handler);
            pending->handler.reset();
            pending->work.reset();
            h(std::move(res));
          });
        };
        net::post(workers_, [this, &req, &ctx, deliver] {
          Response res = Handle(req, ctx);
          if (!ctx.deferred) {
            deliver([res = std::move(res)]() mutable { return std::move(res); });
            return;
          }
          Deferred d = std::move(*ctx.deferred);
          ctx.deferred.reset();
          auto prepared = std::make_shared<Response>(std::move(res));
          auto finish =
              std::make_shared<std::function<Response(Status, Response)>>(std::move(d.finish));
          // Runs on the connection's strand, while the request and its context are still alive.
          auto complete = [this, &req, &ctx, prepared, finish](Status s) -> Response {
            try {
              return (*finish)(std::move(s), std::move(*prepared));
            } catch (const std::exception&) {
              return HandlerFailed(req, ctx);
            }
          };
          // Counts this answer as in flight until `done` has been called (or every copy of it
          // dropped uncalled).
          {
            std::lock_guard lock(deferred_mu_);
            ++deferred_in_flight_;
          }
          struct Ticket {
            explicit Ticket(Impl* i) : impl(i) {}
            Ticket(const Ticket&) = delete;
            Ticket& operator=(const Ticket&) = delete;
            Impl* impl;
            std::atomic<bool> released{false};
            void Release() {
              if (!released.exchange(true)) {
                {
                  std::lock_guard lock(impl->deferred_mu_);
                  --impl->deferred_in_flight_;
                }
                impl->deferred_cv_.notify_all();
              }
            }
            ~Ticket() { Release(); }
          };
          auto ticket = std::make_shared<Ticket>(this);
          try {
            // `done` runs on the writer's thread: it only hands the status to the connection.
            d.start([deliver, complete, ticket](Status s) {
              deliver([complete, s = std::move(s)]() mutable { return complete(std::move(s)); });
              ticket->Release();
            });
          } catch (const std::exception&) {
            deliver([this, &req, &ctx] { return HandlerFailed(req, ctx); });
          }
        });
      },
      token);
}

template <class Stream>
awaitable<bool> HttpServer::Impl::Send(Stream& stream, Response res, bool close) {
  // Every answer, framing errors included (api/browser_policy.h). A route that serves pages of
  // its own sets its own policy; every other answer gets the API's.
  if (res["Content-Security-Policy"].empty()) {
    res.set("Content-Security-Policy", kApiContentSecurityPolicy);
  }
  res.keep_alive(!close);
  if (close) {
    res.set(http::field::connection, "close");
  }
  if (!res.has_content_length() && res.result() != http::status::no_content) {
    res.prepare_payload();
  }
  beast::get_lowest_layer(stream).expires_after(opt_.limits.write_timeout);
  error_code ec;
  co_await http::async_write(stream, res, net::redirect_error(use_awaitable, ec));
  // Responses may carry secrets (a TOTP seed, an access-code secret, detokenized data, a session
  // cookie).
  WipeMessage(res);
  co_return !ec;
}

template <class Stream>
awaitable<void> HttpServer::Impl::Reject(Conn<Stream>& conn, const RequestContext& ctx,
                                         http::verb method, unsigned status, const char* code,
                                         std::string_view message,
                                         std::chrono::steady_clock::time_point started) {
  if (!conn.MarkBusy()) {
    co_return;  // evicted while the request came in: closed, nobody to answer
  }
  co_await Send(conn.stream, VndError(BlankRequest(), ctx, status, code, message), true);
  RecordRequest(kRejectedRoute, method, status, started);
}

template <class Stream>
awaitable<bool> HttpServer::Impl::AwaitNextRequest(std::shared_ptr<Conn<Stream>> conn,
                                                   const beast::flat_buffer& buffer) {
  if (buffer.size() > 0) {
    co_return true;  // pipelined: already here
  }
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    // Bytes that TLS has taken off the socket already (a record, whole or in part, in OpenSSL or
    // in the BIO pair that Asio feeds it from; Asio's own input buffer only holds more when that
    // BIO is full): the socket may never become readable for them.
    SSL* ssl = conn->stream.native_handle();
    if (SSL_has_pending(ssl) == 1 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0) {
      co_return true;
    }
  }
  // Readable socket = the first byte (on TLS: of the record that carries the request); nothing
  // is read here. Beast's stream timeouts only cover its own reads and writes, hence the timer.
  const uint64_t wait = ++conn->idle_wait;
  conn->idle_timer.expires_after(opt_.limits.idle_timeout);
  conn->idle_timer.async_wait([conn, wait](error_code ec) {
    if (!ec && conn->idle_wait == wait) {
      error_code ignored;  // closed as Beast's own timeouts do
      beast::get_lowest_layer(conn->stream).socket().close(ignored);
    }
  });
  error_code ec;
  co_await beast::get_lowest_layer(conn->stream)
      .socket()
      .async_wait(net::socket_base::wait_read, net::redirect_error(use_awaitable, ec));
  ++conn->idle_wait;
  conn->idle_timer.cancel();
  co_return !ec;
}

template <class Stream>
awaitable<std::optional<Request>> HttpServer::Impl::ReadRequest(
    Conn<Stream>& conn, beast::flat_buffer& buffer, RequestContext& ctx,
    std::chrono::steady_clock::time_point started) {
  Stream& stream = conn.stream;
  const Limits& lim = opt_.limits;
  // Host is required on TCP (TLS and plain), not on the Unix socket.
  const bool is_tcp = ctx.transport != Transport::kUnix;
  const std::string_view transport_name = TransportName(ctx.transport);
  error_code ec;
  http::request_parser<http::empty_body> header_parser;
  header_parser.header_limit(static_cast<std::uint32_t>(lim.max_header_bytes));
  // Read the raw header ourselves (bounded), so that it can be checked byte by byte before
  // Beast parses it (CheckRawHeader), then hand exactly those bytes to the parser.
  size_t header_end = 0;
  while (true) {
    auto bytes = buffer.data();
    std::string_view have(static_cast<const char*>(bytes.data()), bytes.size());
    if (size_t pos = have.find("\r\n\r\n"); pos != std::string_view::npos) {
      header_end = pos + 4;
      break;
    }
    if (have.size() >= lim.max_header_bytes) {
      break;
    }
    if (CheckRawHeader(have, /*complete=*/false)) {
      header_end = have.size();  // let the full check below answer it
      break;
    }
    size_t want = std::min<size_t>(4096, lim.max_header_bytes + 4 - have.size());
    size_t n = co_await stream.async_read_some(buffer.prepare(want),
                                               net::redirect_error(use_awaitable, ec));
    buffer.commit(n);
    if (ec) {
      break;
    }
  }
  conn.idle = false;
  auto rejected = [&](unsigned status, std::string_view reason) {
    log_.Info("http_rejected", {{"request_id", ctx.request_id},
                                {"transport", transport_name},
                                {"status", status},
                                {"reason", reason}});
  };
  if (header_end == 0) {
    if (!ec) {
      ec = http::error::header_limit;
    }
    if (!IsQuietClose(ec) && buffer.size() > 0) {
      unsigned status = ec == http::error::header_limit ? 431 : 400;
      const char* msg = status == 431 ? "request header is too large" : "malformed request";
      rejected(status, ec.message());
      co_await Reject(conn, ctx, http::verb::unknown, status, "bad-request", msg, started);
    }
    co_return std::nullopt;
  }
  std::string_view raw_header(static_cast<const char*>(buffer.data().data()), header_end);
  // The guard (not Beast's default 1 MiB) decides on Content-Length, so that too large is 413.
  header_parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  std::optional<FramingError> bad_raw = CheckRawHeader(raw_header);
  if (!bad_raw) {
    size_t used = header_parser.put(net::buffer(raw_header.data(), raw_header.size()), ec);
    if (ec || used != header_end || !header_parser.is_header_done()) {
      bad_raw = FramingError{ec == http::error::header_limit ? 431u : 400u, "malformed request"};
    }
  }
  if (bad_raw) {
    rejected(bad_raw->status, bad_raw->message);
    co_await Reject(conn, ctx, http::verb::unknown, bad_raw->status, "bad-request",
                    bad_raw->message, started);
    co_return std::nullopt;
  }
  OPENSSL_cleanse(const_cast<char*>(raw_header.data()), raw_header.size());
  buffer.consume(header_end);
  if (auto bad = CheckFraming(header_parser.get(), is_tcp, lim)) {
    rejected(bad->status, bad->message);
    const char* code = bad->status == 413 ? "payload-too-large" : "bad-request";
    co_await Reject(conn, ctx, header_parser.get().method(), bad->status, code, bad->message,
                    started);
    co_return std::nullopt;
  }
  if (!header_parser.get()[http::field::expect].empty() && !header_parser.is_done()) {
    http::response<http::empty_body> cont{http::status::continue_, 11};
    co_await http::async_write(stream, cont, net::redirect_error(use_awaitable, ec));
    if (ec) {
      co_return std::nullopt;
    }
  }
  const auto fields_in_header =
      std::distance(header_parser.get().begin(), header_parser.get().end());
  const http::verb method = header_parser.get().method();
  http::request_parser<http::string_body> parser(std::move(header_parser));
  parser.body_limit(lim.max_body_bytes);
  auto reject_extensions = [](std::uint64_t, std::string_view extensions, error_code& e) {
    if (!extensions.empty()) {
      e = http::error::bad_chunk_extension;
    }
  };
  parser.on_chunk_header(reject_extensions);
  co_await http::async_read(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
  if (ec) {
    if (ec == http::error::body_limit) {
      co_await Reject(conn, ctx, method, 413, "payload-too-large", "request body is too large",
                      started);
    } else if (!IsQuietClose(ec)) {
      co_await Reject(conn, ctx, method, 400, "bad-request", "malformed request body", started);
    }
    co_return std::nullopt;
  }
  Request req = parser.release();
  // Beast 1.74 merges chunked trailer fields into the header; framing fields could be smuggled
  // that way (RFC 9112 §7.1.2), so a request with any trailer field is refused.
  if (std::distance(req.begin(), req.end()) != fields_in_header) {
    co_await Reject(conn, ctx, method, 400, "bad-request", "trailer fields are not accepted",
                    started);
    WipeMessage(req);
    co_return std::nullopt;
  }
  co_return std::optional<Request>(std::move(req));
}

template <class Stream>
awaitable<bool> HttpServer::Impl::Answer(Conn<Stream>& conn, Request& req, RequestContext& ctx,
                                         std::chrono::steady_clock::time_point started) {
  const std::string_view transport_name = TransportName(ctx.transport);
  SplitTarget(req.target(), ctx.path, ctx.query);
  // Handlers may block on the HSM: run them on the worker pool.
  Response res = co_await HandleOnWorkers(req, ctx, use_awaitable);
  AddCommonHeaders(res, ctx.request_id);
  const bool close = !req.keep_alive() || stopping_.load();
  unsigned status = res.result_int();
  const bool written = co_await Send(conn.stream, std::move(res), close);
  conn.MarkWaiting(NowTicks());
  RecordRequest(ctx.route, req.method(), status, started);
  auto latency = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count();
  if (access_log_.ShouldLog(status, static_cast<int64_t>(latency))) {
    if (access_log_.options().mode == AccessLogMode::kSampled) {
      log_.Info("http_request", {{"request_id", ctx.request_id},
                                 {"transport", transport_name},
                                 {"method", std::string(http::to_string(req.method()))},
                                 {"route", ctx.route},
                                 {"status", status},
                                 {"latency_us", static_cast<int64_t>(latency)},
                                 {"sample_rate", access_log_.options().sample_rate}});
    } else {
      log_.Info("http_request", {{"request_id", ctx.request_id},
                                 {"transport", transport_name},
                                 {"method", std::string(http::to_string(req.method()))},
                                 {"route", ctx.route},
                                 {"status", status},
                                 {"latency_us", static_cast<int64_t>(latency)}});
    }
  }
  if (!written) {
    // Write timeout or the peer went away: the stream is closed, so nothing more can be
    // answered. Pipelined requests already buffered must not run (a DELETE would take effect
    // without its answer).
    log_.Info("http_write_failed", {{"request_id", ctx.request_id}, {"transport", transport_name}});
  }
  co_return !close && written;
}

template <class Stream>
awaitable<void> HttpServer::Impl::Serve(std::shared_ptr<Conn<Stream>> conn, Transport transport) {
  Stream& stream = conn->stream;
  const Limits& lim = opt_.limits;
  error_code ec;
  bool usable = true;

  if constexpr (std::is_same_v<Stream, TlsStream>) {
    // Short (limits.handshake_timeout): half-open connections do not hold a place for long.
    beast::get_lowest_layer(stream).expires_after(lim.handshake_timeout);
    co_await stream.async_handshake(ssl::stream_base::server,
                                    net::redirect_error(use_awaitable, ec));
    if (ec) {
      usable = false;
    }
  }

  // Bounds everything buffered at once, including a chunk header line (Beast 1.74 has no limit on
  // chunk extensions; ReadRequest also refuses any extension).
  beast::flat_buffer buffer(lim.max_header_bytes + 8 * 1024);
  bool first = true;
  while (usable && !stopping_.load()) {
    conn->idle = true;
    // The whole request (header and body) within the request deadline: from the accept (or the
    // handshake) for the first one, from its first byte for a keep-alive one.
    if (!first && !co_await AwaitNextRequest(conn, buffer)) {
      break;
    }
    beast::get_lowest_layer(stream).expires_after(lim.request_timeout);
    first = false;
    const auto started = std::chrono::steady_clock::now();
    RequestContext ctx;
    ctx.request_id = NewRequestId();
    ctx.transport = transport;
    ctx.peer = conn->peer;
    // The connection table's key is already the limit key of the connection's own peer
    // (PeerKeyOf: an IPv6 peer's /64); only a forwarded client needs LimitKeyOf (SetClient).
    ctx.limit_peer = conn->TrackedConn::peer();
    std::optional<Request> req = co_await ReadRequest(*conn, buffer, ctx, started);
    if (!req) {
      break;
    }
    SetClient(conn->connection_peer, *req, ctx);
    // Complete: from here the connection is never evicted, until its response is out.
    bool more = false;
    if (conn->MarkBusy()) {
      more = co_await Answer(*conn, *req, ctx, started);
    }
    // The request may have held a payload, a password hash, a cookie or a signature.
    WipeMessage(*req);
    WipeSpare(buffer);
    if (!more) {
      break;
    }
  }

  // Nothing a client sent outlives its connection in our buffers.
  auto left = buffer.data();
  OPENSSL_cleanse(left.data(), left.size());
  WipeSpare(buffer);

  // Orderly close: TLS close_notify (bounded), then the socket.
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    if (usable) {
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(net::redirect_error(use_awaitable, ec));
    }
  } else {
    stream.socket().shutdown(unix_proto::socket::shutdown_send, ec);
  }
  beast::get_lowest_layer(stream).close();
  if (metrics_) {
    metrics_->open[TransportIndex(transport)]->Add(-1);
  }
  Untrack(conn);
}

void HttpServer::Impl::Run() {
  if (unix_acceptor_) {
    net::co_spawn(control_,
                  AcceptLoop(*unix_acceptor_, Transport::kUnix,
                             [](unix_proto::socket s) { return UnixStream(std::move(s)); }),
                  net::detached);
  }
  if (tls_acceptor_) {
    net::co_spawn(control_,
                  AcceptLoop(*tls_acceptor_, Transport::kTls,
                             [this](tcp::socket s) {
                               return TlsStream(beast::tcp_stream(std::move(s)),
                                                *CurrentTlsContext());
                             }),
                  net::detached);
  }
  if (tcp_acceptor_) {
    net::co_spawn(control_,
                  AcceptLoop(*tcp_acceptor_, Transport::kTcp,
                             [](tcp::socket s) { return PlainStream(std::move(s)); }),
                  net::detached);
  }
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < std::max(1u, opt_.io_threads); ++i) {
    threads.emplace_back([this] { ioc_.run(); });
  }
  ioc_.run();
  for (auto& t : threads) {
    t.join();
  }
  workers_.join();
}

void HttpServer::Impl::Stop() {
  if (stopping_.exchange(true)) {
    return;
  }
  net::post(control_, [this] {
    error_code ec;
    if (unix_acceptor_) {
      unix_acceptor_->close(ec);
      if (opt_.unix_listener && opt_.unix_listener->inherited_fd < 0) {
        ::unlink(opt_.unix_listener->path.c_str());
      }
    }
    if (tls_acceptor_) {
      tls_acceptor_->close(ec);
    }
    if (tcp_acceptor_) {
      tcp_acceptor_->close(ec);
    }
    {
      std::lock_guard lock(mu_);
      for (auto& c : conns_) {
        c->CloseIfIdle();
      }
    }
    // In-flight requests get this long to finish before their connections are cut.
    drain_timer_.expires_after(std::chrono::seconds(20));
    drain_timer_.async_wait([this](error_code ec2) {
      if (ec2) {
        return;  // cancelled: the drain finished in time
      }
      log_.Warn("drain_timeout", {{"connections", static_cast<int64_t>(connections_.load())}});
      std::lock_guard lock(mu_);
      for (auto& c : conns_) {
        c->ForceClose();
      }
    });
    MaybeFinishDrain();
  });
}

Result<std::unique_ptr<HttpServer>> HttpServer::Create(ServerOptions options, const Router& router,
                                                       Logger& log) {
  if (!options.unix_listener && !options.tls_listener && !options.tcp_listener) {
    return InvalidArgument("no listener configured");
  }
  auto impl = std::make_unique<Impl>(std::move(options), router, log);
  OTD_RETURN_IF_ERROR(impl->SetUpMetrics());
  OTD_RETURN_IF_ERROR(impl->Bind());
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::Impl::~Impl() {
  // No handler runs after this: the workers finish what they hold, then every deferred answer's
  // completion must have been handed over (the writers that call them outlive the server), so
  // nothing posts to a strand of the io_context destroyed below.
  workers_.join();
  std::unique_lock lock(deferred_mu_);
  // 30 s is far beyond any commit or audit batch: more means a completion was lost, which would
  // post to the freed io_context later.
  bool drained = deferred_cv_.wait_for(lock, std::chrono::seconds(30),
                                       [this] { return deferred_in_flight_ == 0; });
  OTD_CHECK(drained);
}

HttpServer::~HttpServer() = default;
void HttpServer::Run() { impl_->Run(); }
void HttpServer::Stop() { impl_->Stop(); }
Status HttpServer::ReloadTls() { return impl_->ReloadTls(); }
uint16_t HttpServer::BoundTlsPort() const { return impl_->tls_port(); }
uint16_t HttpServer::BoundTcpPort() const { return impl_->tcp_port(); }
size_t HttpServer::OpenConnections() const { return impl_->connections(); }

}  // namespace otd::api
