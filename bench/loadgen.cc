// otd-loadgen: closed-loop HTTP/1.1 load generator for opentokend (issue 6).
//
// N keep-alive connections over the Unix socket or TLS; every request that needs it is signed
// with OT1-HMAC-SHA256-HEX exactly as a real client does (fresh X-OpenToken-Date per request,
// canonical content of doc/api/signed-requests.md: METHOD \n PATH \n QUERY \n signed headers \n
// \n BODY, HMAC keyed with the access-code secret bytes). One thread runs every connection
// (C++20 coroutines on one io_context) so the generator takes at most one of the machine's cores.
//
// Phases: prepare (create the tokens the detokenize modes read), warm-up (requests not recorded),
// measure (fixed duration). Prints one JSON line:
//   {"mode":..., "transport":..., "connections":..., "duration_s":..., "requests":..., "rps":...,
//    "p50_ms":..., "p90_ms":..., "p99_ms":..., "p999_ms":..., "max_ms":..., "errors":...,
//    "statuses":{"201":...}, "reads":..., "writes":..., "total_requests":...}
// (total_requests: every request sent, the prepare phase, warm-up and tail included: what the
// daemon's audit trail and log bytes of the run are divided by).
//
// Usage:
//   otd-loadgen (--unix PATH | --tls HOST:PORT --cacert FILE) --account ID --code CODE
//               --secret SECRET [--mode tokenize64|tokenize4k|detok-private|detok-public|mixed]
//               [--connections 32] [--warmup 3] [--duration 10] [--tokens 256]
//               [--threads 1] [--seed N]
//               [--count N] [--save-ids FILE --save-every K] [--ids-file FILE]
//               [--rate R [--max-queue Q] [--drain 5]]
//
// --rate R: open loop (issue 20). Requests arrive as a Poisson process of rate R per second
// (exponential gaps from an RNG seeded with --seed), from the start of the warm-up on. An arrival
// goes to an idle connection, or waits in a FIFO queue until one is free (at most --connections
// requests are in flight); its latency runs from its *scheduled* arrival time to the end of its
// response, so time spent waiting for a connection (or for a late generator) counts: no
// coordinated omission. An arrival that finds Q (default max(1000, R)) requests queued is dropped
// and counted. After the last arrival the queue drains for at most --drain seconds; requests still
// unanswered then are recorded with the latency they had reached and counted as incomplete.
// Extra JSON fields: "open_loop", "rate", "scheduled", "dropped", "late" (sent more than 1 ms
// after their scheduled time), "dispatch_late" (of which the generator itself queued more than
// 1 ms late: a starved generator, not a busy daemon), "max_send_delay_ms", "incomplete".
// Percentiles are exact (every latency is kept and sorted). --coordinated-omission measures from
// the actual send time instead: only for bench/openloop_selftest.py, to show that its checks catch
// that mistake.
//
// --count N: bulk mode (bench/bulk_load): no warm-up, no time limit; the connections send N
// requests in all and stop; every request is recorded; rps = N / elapsed. --save-ids appends the
// token id of every K-th successful tokenize (one per line) to FILE. --ids-file: detok-private
// (and mixed) read the ids in FILE (e.g. a sample saved over a whole bulk load) instead of the
// `--tokens` it would create first.

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>  // before Boost 1.74 awaitable.hpp, which uses std::exchange without it
#include <vector>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/build_info.h"

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using net::awaitable;
using net::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

enum class Mode { kTokenize64, kTokenize4k, kDetokPrivate, kDetokPublic, kMixed };

struct Options {
  std::string unix_path;
  std::string tls_host;
  std::string tls_port;
  std::string cacert;
  std::string account;
  std::string code;
  std::string secret;
  std::string mode_name = "tokenize64";
  Mode mode = Mode::kTokenize64;
  int connections = 32;
  double warmup = 3;
  double duration = 10;
  int tokens = 256;
  int threads = 1;
  uint64_t seed = 1;
  int64_t count = 0;  // > 0: bulk mode
  std::string save_ids;
  int64_t save_every = 1000;
  std::string ids_file;
  double rate = 0;  // > 0: open loop
  int64_t max_queue = 0;
  double drain = 5;
  bool coordinated_omission = false;
};

[[noreturn]] void Die(const std::string& msg) {
  std::cerr << "otd-loadgen: " << msg << "\n";
  std::exit(2);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc)
        Die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--version") {
      std::cout << otd::VersionText("otd-loadgen");
      std::exit(0);
    } else if (a == "--unix") {
      o.unix_path = next();
    } else if (a == "--tls") {
      std::string hp = next();
      auto c = hp.rfind(':');
      if (c == std::string::npos)
        Die("--tls wants HOST:PORT");
      o.tls_host = hp.substr(0, c);
      o.tls_port = hp.substr(c + 1);
    } else if (a == "--cacert") {
      o.cacert = next();
    } else if (a == "--account") {
      o.account = next();
    } else if (a == "--code") {
      o.code = next();
    } else if (a == "--secret") {
      o.secret = next();
    } else if (a == "--mode") {
      o.mode_name = next();
    } else if (a == "--connections") {
      o.connections = std::stoi(next());
    } else if (a == "--warmup") {
      o.warmup = std::stod(next());
    } else if (a == "--duration") {
      o.duration = std::stod(next());
    } else if (a == "--tokens") {
      o.tokens = std::stoi(next());
    } else if (a == "--threads") {
      o.threads = std::stoi(next());
    } else if (a == "--seed") {
      o.seed = std::stoull(next());
    } else if (a == "--count") {
      o.count = std::stoll(next());
    } else if (a == "--save-ids") {
      o.save_ids = next();
    } else if (a == "--save-every") {
      o.save_every = std::stoll(next());
    } else if (a == "--ids-file") {
      o.ids_file = next();
    } else if (a == "--rate") {
      o.rate = std::stod(next());
    } else if (a == "--max-queue") {
      o.max_queue = std::stoll(next());
    } else if (a == "--drain") {
      o.drain = std::stod(next());
    } else if (a == "--coordinated-omission") {
      o.coordinated_omission = true;
    } else {
      Die("unknown argument " + a);
    }
  }
  static const std::map<std::string, Mode> kModes = {{"tokenize64", Mode::kTokenize64},
                                                     {"tokenize4k", Mode::kTokenize4k},
                                                     {"detok-private", Mode::kDetokPrivate},
                                                     {"detok-public", Mode::kDetokPublic},
                                                     {"mixed", Mode::kMixed}};
  auto it = kModes.find(o.mode_name);
  if (it == kModes.end())
    Die("unknown mode " + o.mode_name);
  o.mode = it->second;
  if (o.unix_path.empty() == o.tls_host.empty())
    Die("give exactly one of --unix and --tls");
  if (!o.tls_host.empty() && o.cacert.empty())
    Die("--tls needs --cacert");
  if (o.account.empty() || o.code.empty() || o.secret.empty())
    Die("--account, --code, --secret are required");
  if (o.connections < 1 || o.threads < 1 || o.duration <= 0 || o.count < 0 || o.save_every < 1)
    Die("bad numbers");
  if (o.count > 0)
    o.warmup = 0;
  if (o.rate < 0 || o.max_queue < 0 || o.drain < 0 || (o.rate > 0 && o.count > 0))
    Die("bad open-loop numbers (--rate excludes --count)");
  if (o.rate > 0) {
    o.threads = 1;  // the open loop's queue and counters live on one io_context
    if (o.max_queue == 0)
      o.max_queue = std::max<int64_t>(1000, static_cast<int64_t>(o.rate));
  }
  return o;
}

// --- OT1 signing ------------------------------------------------------------------------------

// The X-OpenToken-Date of now (second resolution, formatted at most once a second per thread).
std::string_view DateNow() {
  thread_local time_t cached = 0;
  thread_local char buf[32];
  time_t now = std::time(nullptr);
  if (now != cached) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cached = now;
  }
  return buf;
}

std::string Hex(const unsigned char* p, size_t n) {
  static const char* k = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = k[p[i] >> 4];
    s[2 * i + 1] = k[p[i] & 15];
  }
  return s;
}

struct Signer {
  std::string code;
  std::string secret;
  std::string host;  // value of the Host header (lower-case)

  // Sets Host, Content-Type, X-OpenToken-Date and Authorization on `req` (body already set).
  void Sign(http::request<http::string_body>& req, std::string_view content_type) const {
    std::string_view date = DateNow();
    req.set(http::field::host, host);
    req.set(http::field::content_type, content_type);
    req.set("X-OpenToken-Date", date);
    std::string_view target = req.target();
    auto q = target.find('?');
    std::string_view path = target.substr(0, q);
    std::string_view query =
        q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
    std::string canonical;
    canonical.reserve(128 + req.body().size());
    canonical.append(req.method_string()).append("\n");
    canonical.append(path).append("\n").append(query).append("\n");
    canonical.append("host:").append(host).append("\n");
    canonical.append("content-type:").append(content_type).append("\n");
    canonical.append("x-opentoken-date:").append(date).append("\n");
    canonical.append("\n");
    canonical.append(req.body());
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(canonical.data()), canonical.size(), mac, &len);
    std::string auth =
        "OT1-HMAC-SHA256-HEX; access-code=" + code +
        "; signed-headers=host content-type x-opentoken-date; signature=" + Hex(mac, len);
    req.set(http::field::authorization, auth);
  }
};

// --- shared run state ----------------------------------------------------------------------

struct Phase {
  Clock::time_point start;  // end of the prepare phase: start of the warm-up
  Clock::time_point measure_start;
  Clock::time_point measure_end;
};

struct ConnStats {
  std::vector<uint32_t> latencies_us;  // measured requests only
  uint64_t errors = 0;
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t total = 0;  // every request answered or failed, warm-up and tail included
  std::map<int, uint64_t> statuses;
};

// Open-loop state: touched only from the one io_context thread.
struct OpenLoop {
  std::deque<Clock::time_point> queue;                      // scheduled arrivals not yet sent
  std::vector<net::steady_timer*> idle;                     // workers waiting for an arrival
  std::vector<std::optional<Clock::time_point>> in_flight;  // per worker: scheduled time
  bool done = false;                                        // no more arrivals
  int active_workers = 0;
  net::steady_timer* stopper = nullptr;
  ConnStats st;  // every recorded request
  uint64_t scheduled = 0, dropped = 0, late = 0, incomplete = 0, dispatch_late = 0;
  int64_t max_send_delay_us = 0;
};

struct Shared {
  OpenLoop ol;
  const Options* opt = nullptr;
  std::atomic<int64_t> remaining{0};  // bulk mode: requests not yet started
  std::atomic<int64_t> created{0};    // bulk mode: successful tokenizes (for --save-every)
  std::FILE* ids_out = nullptr;

  Signer signer;
  std::string token_base;  // /account/{id}/token
  std::vector<std::string> private_ids;
  std::vector<std::string> public_ids;
  std::string body64;
  std::string body4k;
  Phase phase;
  std::mutex mu;
  std::vector<ConnStats> results;
  std::string first_error;
  uint64_t prepared = 0;  // requests of the prepare phase
};

enum class Kind { kTokenize64, kTokenize4k, kTokenizePublic, kGetPrivate, kGetPublic };

void Build(const Shared& sh, Kind kind, std::mt19937_64& rng,
           http::request<http::string_body>& req) {
  req = {};
  req.version(11);
  req.keep_alive(true);
  switch (kind) {
    case Kind::kTokenize64:
    case Kind::kTokenize4k:
    case Kind::kTokenizePublic: {
      req.method(http::verb::post);
      req.target(kind == Kind::kTokenizePublic ? sh.token_base + "?public=true" : sh.token_base);
      const bool bin = kind == Kind::kTokenize4k;
      req.body() = bin ? sh.body4k : sh.body64;
      req.prepare_payload();
      sh.signer.Sign(req, bin ? "application/octet-stream" : "text/plain");
      break;
    }
    case Kind::kGetPrivate: {
      req.method(http::verb::get);
      req.target(sh.token_base + "/" + sh.private_ids[rng() % sh.private_ids.size()]);
      sh.signer.Sign(req, "text/plain");
      break;
    }
    case Kind::kGetPublic: {
      req.method(http::verb::get);
      req.target(sh.token_base + "/" + sh.public_ids[rng() % sh.public_ids.size()]);
      req.set(http::field::host, sh.signer.host);
      break;
    }
  }
}

Kind PickKind(Mode m, std::mt19937_64& rng) {
  switch (m) {
    case Mode::kTokenize64: return Kind::kTokenize64;
    case Mode::kTokenize4k: return Kind::kTokenize4k;
    case Mode::kDetokPrivate: return Kind::kGetPrivate;
    case Mode::kDetokPublic: return Kind::kGetPublic;
    case Mode::kMixed: return rng() % 10 < 8 ? Kind::kGetPrivate : Kind::kTokenize64;
  }
  return Kind::kTokenize64;
}

bool IsWrite(Kind k) {
  return k == Kind::kTokenize64 || k == Kind::kTokenize4k || k == Kind::kTokenizePublic;
}

// --- transports ------------------------------------------------------------------------------

struct UnixConn {
  net::local::stream_protocol::socket sock;
  explicit UnixConn(net::io_context& io) : sock(io) {}
  awaitable<void> Connect(const Options& o) {
    co_await sock.async_connect(net::local::stream_protocol::endpoint(o.unix_path), use_awaitable);
  }
  auto& stream() { return sock; }
};

struct TlsConn {
  ssl::context& ctx;
  net::io_context& io;
  std::unique_ptr<ssl::stream<net::ip::tcp::socket>> s;
  TlsConn(net::io_context& i, ssl::context& c) : ctx(c), io(i) {}
  awaitable<void> Connect(const Options& o) {
    s = std::make_unique<ssl::stream<net::ip::tcp::socket>>(io, ctx);
    net::ip::tcp::resolver res(io);
    auto eps = co_await res.async_resolve(o.tls_host, o.tls_port, use_awaitable);
    co_await net::async_connect(s->next_layer(), eps, use_awaitable);
    s->next_layer().set_option(net::ip::tcp::no_delay(true));
    SSL_set_tlsext_host_name(s->native_handle(), o.tls_host.c_str());
    s->set_verify_mode(ssl::verify_peer);
    s->set_verify_callback(ssl::host_name_verification(o.tls_host));
    co_await s->async_handshake(ssl::stream_base::client, use_awaitable);
  }
  auto& stream() { return *s; }
};

template <class Conn>
awaitable<void> Exchange(Conn& c, beast::flat_buffer& buf, http::request<http::string_body>& req,
                         http::response<http::string_body>& res) {
  co_await http::async_write(c.stream(), req, use_awaitable);
  res = {};
  co_await http::async_read(c.stream(), buf, res, use_awaitable);
}

// Prepare phase: creates `count` tokens of `kind` on one connection, appending the ids.
template <class Conn>
awaitable<void> Prepare(Conn& c, Shared& sh, Kind kind, int count, std::vector<std::string>& ids) {
  beast::flat_buffer buf;
  std::mt19937_64 rng(7);
  http::request<http::string_body> req;
  http::response<http::string_body> res;
  for (int i = 0; i < count; ++i) {
    Build(sh, kind, rng, req);
    co_await Exchange(c, buf, req, res);
    if (res.result_int() != 201) {
      Die("prepare: tokenize returned " + std::to_string(res.result_int()) + ": " + res.body());
    }
    std::string loc(res[http::field::location]);
    ids.push_back(loc.substr(loc.rfind('/') + 1));
    ++sh.prepared;
  }
}

// One request of `kind` on `c`, connecting first when it is not: the answer's HTTP status, or 0
// with `err` set when the exchange failed (the connection is then re-opened next time).
template <class Conn>
awaitable<int> SendOne(Conn& c, Shared& sh, Kind kind, std::mt19937_64& rng, bool& connected,
                       beast::flat_buffer& buf, http::request<http::string_body>& req,
                       http::response<http::string_body>& res, std::string& err) {
  int status = 0;
  try {
    if (!connected) {
      co_await c.Connect(*sh.opt);
      connected = true;
      buf.clear();
    }
    Build(sh, kind, rng, req);
    co_await Exchange(c, buf, req, res);
    status = res.result_int();
    if (!res.keep_alive()) {
      connected = false;
      beast::error_code ec;
      if constexpr (std::is_same_v<Conn, UnixConn>) {
        c.sock.close(ec);
      } else {
        c.s->next_layer().close(ec);
      }
    }
  } catch (const std::exception& e) {
    err = e.what();
    connected = false;
  }
  co_return status;
}

template <class Conn>
awaitable<void> Worker(std::shared_ptr<Conn> c, Shared& sh, int index) {
  ConnStats st;
  std::mt19937_64 rng(sh.opt->seed * 1000003 + static_cast<uint64_t>(index));
  beast::flat_buffer buf;
  http::request<http::string_body> req;
  http::response<http::string_body> res;
  bool connected = false;
  const bool bulk = sh.opt->count > 0;
  st.latencies_us.reserve(bulk ? static_cast<size_t>(sh.opt->count / sh.opt->connections + 1)
                               : static_cast<size_t>(sh.opt->duration * 2000));
  for (;;) {
    auto t0 = Clock::now();
    if (bulk ? sh.remaining.fetch_sub(1) <= 0 : t0 >= sh.phase.measure_end)
      break;
    Kind kind = PickKind(sh.opt->mode, rng);
    std::string err;
    const int status = co_await SendOne(*c, sh, kind, rng, connected, buf, req, res, err);
    auto t1 = Clock::now();
    ++st.total;
    if (bulk) {
      if (err.empty() && status == 201 && IsWrite(kind) && sh.ids_out != nullptr &&
          sh.created.fetch_add(1) % sh.opt->save_every == 0) {
        std::string loc(res[http::field::location]);
        std::string id = loc.substr(loc.rfind('/') + 1) + "\n";
        std::lock_guard lock(sh.mu);
        std::fwrite(id.data(), 1, id.size(), sh.ids_out);
      }
    } else if (t0 < sh.phase.measure_start || t1 > sh.phase.measure_end) {
      continue;  // warm-up / tail
    }
    const int want = IsWrite(kind) ? 201 : 200;
    if (!err.empty() || status != want) {
      ++st.errors;
      std::lock_guard lock(sh.mu);
      if (sh.first_error.empty()) {
        sh.first_error =
            !err.empty() ? err
                         : "status " + std::to_string(status) + ": " + res.body().substr(0, 200);
      }
    }
    if (status != 0)
      ++st.statuses[status];
    (IsWrite(kind) ? st.writes : st.reads)++;
    st.latencies_us.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
  }
  std::lock_guard lock(sh.mu);
  sh.results.push_back(std::move(st));
}

// --- open loop -------------------------------------------------------------------------------

int64_t Micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

// Poisson arrivals from sh.phase.start to measure_end into the queue; wakes an idle worker.
awaitable<void> Dispatcher(Shared& sh, net::io_context& io) {
  OpenLoop& ol = sh.ol;
  const Options& o = *sh.opt;
  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.rate);
  net::steady_timer timer(io);
  Clock::time_point t = sh.phase.start;
  for (;;) {
    t += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    if (t >= sh.phase.measure_end)
      break;
    if (Clock::now() < t) {
      timer.expires_at(t);
      co_await timer.async_wait(use_awaitable);
    }
    const bool measured = t >= sh.phase.measure_start;
    if (measured) {
      ++ol.scheduled;
      if (Micros(Clock::now() - t) > 1000)
        ++ol.dispatch_late;  // the generator itself woke late (a busy machine)
    }
    if (static_cast<int64_t>(ol.queue.size()) >= o.max_queue) {
      if (measured)
        ++ol.dropped;
      continue;
    }
    ol.queue.push_back(t);
    if (!ol.idle.empty()) {
      net::steady_timer* w = ol.idle.back();
      ol.idle.pop_back();
      w->cancel();
    }
  }
  ol.done = true;
  for (net::steady_timer* w : ol.idle)
    w->cancel();
  ol.idle.clear();
}

void RecordOpen(Shared& sh, Kind kind, int status, const std::string& err,
                const http::response<http::string_body>& res, int64_t latency_us) {
  ConnStats& st = sh.ol.st;
  const int want = IsWrite(kind) ? 201 : 200;
  if (!err.empty() || status != want) {
    ++st.errors;
    if (sh.first_error.empty()) {
      sh.first_error = !err.empty()
                           ? err
                           : "status " + std::to_string(status) + ": " + res.body().substr(0, 200);
    }
  }
  if (status != 0)
    ++st.statuses[status];
  (IsWrite(kind) ? st.writes : st.reads)++;
  st.latencies_us.push_back(static_cast<uint32_t>(std::max<int64_t>(0, latency_us)));
}

// One connection of the open loop: takes the oldest queued arrival whenever it is free.
template <class Conn>
awaitable<void> OpenWorker(std::shared_ptr<Conn> c, Shared& sh, int index, net::io_context& io) {
  OpenLoop& ol = sh.ol;
  std::mt19937_64 rng(sh.opt->seed * 1000003 + static_cast<uint64_t>(index));
  beast::flat_buffer buf;
  http::request<http::string_body> req;
  http::response<http::string_body> res;
  net::steady_timer wake(io);
  bool connected = false;
  try {
    co_await c->Connect(*sh.opt);  // before the first arrival, if it can
    connected = true;
  } catch (const std::exception&) {}
  for (;;) {
    if (ol.queue.empty()) {
      if (ol.done)
        break;
      ol.idle.push_back(&wake);
      wake.expires_at(Clock::time_point::max());
      boost::system::error_code ec;
      co_await wake.async_wait(net::redirect_error(use_awaitable, ec));
      continue;
    }
    const Clock::time_point sched = ol.queue.front();
    ol.queue.pop_front();
    const Clock::time_point sent = Clock::now();
    ol.in_flight[static_cast<size_t>(index)] = sched;
    Kind kind = PickKind(sh.opt->mode, rng);
    std::string err;
    const int status = co_await SendOne(*c, sh, kind, rng, connected, buf, req, res, err);
    ol.in_flight[static_cast<size_t>(index)].reset();
    ++ol.st.total;
    const Clock::time_point done = Clock::now();
    if (sched < sh.phase.measure_start)
      continue;  // warm-up
    const int64_t delay = Micros(sent - sched);
    ol.max_send_delay_us = std::max(ol.max_send_delay_us, delay);
    if (delay > 1000)
      ++ol.late;
    RecordOpen(sh, kind, status, err, res,
               Micros(done - (sh.opt->coordinated_omission ? sent : sched)));
  }
  if (--ol.active_workers == 0 && ol.stopper != nullptr)
    ol.stopper->cancel();
}

// Ends a drain that takes longer than --drain: records what is still queued or in flight with the
// latency it has reached (a lower bound), counts it incomplete and stops the io_context.
awaitable<void> Stopper(Shared& sh, net::io_context& io) {
  OpenLoop& ol = sh.ol;
  net::steady_timer timer(io);
  ol.stopper = &timer;
  timer.expires_at(sh.phase.measure_end +
                   std::chrono::microseconds(static_cast<int64_t>(sh.opt->drain * 1e6)));
  boost::system::error_code ec;
  co_await timer.async_wait(net::redirect_error(use_awaitable, ec));
  ol.stopper = nullptr;
  if (ol.active_workers == 0)
    co_return;
  const Clock::time_point now = Clock::now();
  std::vector<Clock::time_point> left(ol.queue.begin(), ol.queue.end());
  for (auto& f : ol.in_flight) {
    if (f)
      left.push_back(*f);
  }
  http::response<http::string_body> none;
  std::mt19937_64 rng(1);
  for (Clock::time_point sched : left) {
    if (sched < sh.phase.measure_start)
      continue;
    ++ol.incomplete;
    RecordOpen(sh, PickKind(sh.opt->mode, rng), 0, "unanswered at the end of the drain", none,
               Micros(now - sched));
  }
  io.stop();
}

template <class Conn, class Make>
void RunOpen(Shared& sh, Make make) {
  const Options& o = *sh.opt;
  net::io_context io(1);
  sh.ol.in_flight.resize(static_cast<size_t>(o.connections));
  sh.ol.active_workers = o.connections;
  for (int i = 0; i < o.connections; ++i)
    net::co_spawn(io, OpenWorker<Conn>(make(io), sh, i, io), net::detached);
  net::co_spawn(io, Dispatcher(sh, io), net::detached);
  net::co_spawn(io, Stopper(sh, io), net::detached);
  io.run();
}

template <class Conn, class Make>
void RunAll(Shared& sh, Make make) {
  const Options& o = *sh.opt;
  // Prepare: tokens for the detokenize modes, on one connection.
  {
    net::io_context io;
    auto c = make(io);
    bool failed = false;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
          try {
            co_await c->Connect(o);
            if ((o.mode == Mode::kDetokPrivate || o.mode == Mode::kMixed) &&
                sh.private_ids.empty()) {
              co_await Prepare(*c, sh, Kind::kTokenize64, o.tokens, sh.private_ids);
            }
            if (o.mode == Mode::kDetokPublic) {
              co_await Prepare(*c, sh, Kind::kTokenizePublic, o.tokens, sh.public_ids);
            }
          } catch (const std::exception& e) {
            std::cerr << "otd-loadgen: prepare failed: " << e.what() << "\n";
            failed = true;
          }
        },
        net::detached);
    io.run();
    if (failed)
      std::exit(1);
  }
  auto now = Clock::now();
  sh.phase.start = now;
  sh.remaining = o.count;
  sh.phase.measure_start = now + std::chrono::microseconds(static_cast<int64_t>(o.warmup * 1e6));
  sh.phase.measure_end =
      sh.phase.measure_start + std::chrono::microseconds(static_cast<int64_t>(o.duration * 1e6));
  if (o.rate > 0) {
    RunOpen<Conn>(sh, make);
    sh.results.push_back(std::move(sh.ol.st));
    return;
  }
  std::vector<std::unique_ptr<net::io_context>> ios;
  for (int t = 0; t < o.threads; ++t)
    ios.push_back(std::make_unique<net::io_context>(1));
  for (int i = 0; i < o.connections; ++i) {
    auto& io = *ios[static_cast<size_t>(i % o.threads)];
    net::co_spawn(io, Worker<Conn>(make(io), sh, i), net::detached);
  }
  std::vector<std::thread> threads;
  for (int t = 1; t < o.threads; ++t)
    threads.emplace_back([&, t] { ios[static_cast<size_t>(t)]->run(); });
  ios[0]->run();
  for (auto& t : threads)
    t.join();
}

double Percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty())
    return 0;
  size_t idx = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  idx = std::min(sorted.size() - 1, idx == 0 ? 0 : idx - 1);
  return sorted[idx] / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
  Shared sh;
  sh.opt = &o;
  sh.signer.code = o.code;
  sh.signer.secret = o.secret;
  sh.signer.host = o.unix_path.empty() ? o.tls_host + ":" + o.tls_port : "localhost";
  for (auto& ch : sh.signer.host)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  sh.token_base = "/account/" + o.account + "/token";
  // 64 B of text and 4 KiB of random binary, as a real payload would be.
  sh.body64 = std::string("4111-1111-1111-1111 exp 12/30 name ALICE EXAMPLE cvv 123 ref 0001");
  sh.body64.resize(64, '.');
  sh.body4k.resize(4096);
  RAND_bytes(reinterpret_cast<unsigned char*>(sh.body4k.data()),
             static_cast<int>(sh.body4k.size()));

  if (!o.save_ids.empty()) {
    sh.ids_out = std::fopen(o.save_ids.c_str(), "a");
    if (sh.ids_out == nullptr)
      Die("cannot open " + o.save_ids);
  }
  if (!o.ids_file.empty()) {
    std::FILE* f = std::fopen(o.ids_file.c_str(), "r");
    if (f == nullptr)
      Die("cannot open " + o.ids_file);
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      std::string id(line);
      while (!id.empty() && (id.back() == '\n' || id.back() == '\r'))
        id.pop_back();
      if (!id.empty())
        sh.private_ids.push_back(id);
    }
    std::fclose(f);
    if (sh.private_ids.empty())
      Die(o.ids_file + " holds no ids");
  }
  if (!o.unix_path.empty()) {
    RunAll<UnixConn>(sh, [](net::io_context& io) { return std::make_shared<UnixConn>(io); });
  } else {
    ssl::context ctx(ssl::context::tls_client);
    ctx.load_verify_file(o.cacert);
    RunAll<TlsConn>(sh, [&ctx](net::io_context& io) { return std::make_shared<TlsConn>(io, ctx); });
  }

  if (sh.ids_out != nullptr)
    std::fclose(sh.ids_out);
  // Bulk mode: the run lasts from the start of the measurement until every connection is done.
  const double elapsed =
      o.count > 0 ? std::chrono::duration<double>(Clock::now() - sh.phase.measure_start).count()
                  : o.duration;
  std::vector<uint32_t> all;
  uint64_t errors = 0, reads = 0, writes = 0, total = sh.prepared;
  std::map<int, uint64_t> statuses;
  for (auto& r : sh.results) {
    total += r.total;
    all.insert(all.end(), r.latencies_us.begin(), r.latencies_us.end());
    errors += r.errors;
    reads += r.reads;
    writes += r.writes;
    for (auto [k, v] : r.statuses)
      statuses[k] += v;
  }
  std::sort(all.begin(), all.end());
  std::string st = "{";
  for (auto [k, v] : statuses) {
    if (st.size() > 1)
      st += ",";
    st += "\"" + std::to_string(k) + "\":" + std::to_string(v);
  }
  st += "}";
  st += ",\"total_requests\":" + std::to_string(total);
  if (o.rate > 0) {
    const OpenLoop& ol = sh.ol;
    char extra[320];
    std::snprintf(extra, sizeof extra,
                  ",\"open_loop\":true,\"rate\":%.1f,\"scheduled\":%" PRIu64 ",\"dropped\":%" PRIu64
                  ",\"late\":%" PRIu64 ",\"max_send_delay_ms\":%.3f,\"incomplete\":%" PRIu64
                  ",\"max_queue\":%" PRId64 ",\"dispatch_late\":%" PRIu64,
                  o.rate, ol.scheduled, ol.dropped, ol.late,
                  static_cast<double>(ol.max_send_delay_us) / 1000.0, ol.incomplete, o.max_queue,
                  ol.dispatch_late);
    st += extra;
  }
  std::printf(
      "{\"mode\":\"%s\",\"transport\":\"%s\",\"connections\":%d,\"warmup_s\":%.1f,\"duration_s\":%."
      "3f,"
      "\"requests\":%zu,\"rps\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%."
      "3f,"
      "\"max_ms\":%.3f,\"errors\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
      ",\"statuses\":%s}\n",
      o.mode_name.c_str(), o.unix_path.empty() ? "tls" : "unix", o.connections, o.warmup, elapsed,
      all.size(), static_cast<double>(all.size()) / elapsed, Percentile(all, 0.50),
      Percentile(all, 0.90), Percentile(all, 0.99), Percentile(all, 0.999),
      all.empty() ? 0.0 : all.back() / 1000.0, errors, reads, writes, st.c_str());
  if (!sh.first_error.empty())
    std::fprintf(stderr, "otd-loadgen: first error: %s\n", sh.first_error.c_str());
  return 0;
}
