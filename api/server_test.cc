// HttpServer on a real Unix socket with a Beast client:
//  * deferred answers (RequestContext::Deferred): the worker that ran the handler is free while
//    the answer waits, the answer is what finish() makes of the status, and a stop waits for it;
//  * the connection table (issue 14 item 5): who is evicted for a newcomer, a connection whose
//    request is being handled never; a keep-alive request's deadline starts at its first byte.
// All clients here are one peer (this process's uid); several peers: connection_table_test.cc
// and tests/integration/test_connection_fairness.py.
#include "api/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <gtest/gtest.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/errors.h"
#include "common/testing/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace otd::api {
namespace {

namespace net = boost::asio;
using unix_proto = net::local::stream_protocol;

// The `done`s of the pending deferred answers, handed over by the server's worker, in order.
class Slot {
 public:
  void Put(std::function<void(Status)> done) {
    std::lock_guard lock(mu_);
    done_.push_back(std::move(done));
    cv_.notify_all();
  }
  std::function<void(Status)> Take() {
    std::unique_lock lock(mu_);
    EXPECT_TRUE(cv_.wait_for(lock, std::chrono::seconds(20), [&] { return !done_.empty(); }));
    if (done_.empty()) {
      return nullptr;
    }
    auto d = std::move(done_.front());
    done_.pop_front();
    return d;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void(Status)>> done_;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The server's own contract (RequestContext::deferred), set by the handler directly.
    router_.Add(
        {.method = http::verb::post,
         .pattern = "/slow",
         .auth = {.anonymous = true},
         .audit = AuditSpec::None(),
         .handler = [this](Call& call) -> Reply {
           const Request& req = call.req;
           RequestContext& ctx = call.ctx;
           Response res{http::status::created, req.version()};
           res.body() = "prepared:" + req.body();
           ctx.deferred = Deferred{
               .start = [this](std::function<void(Status)> done) { slot_.Put(std::move(done)); },
               .finish =
                   [&req, &ctx](Status s, Response prepared) {
                     if (!s.ok()) {
                       return VndError(req, ctx, 503, "service-unavailable", "the write failed");
                     }
                     prepared.body() += " finished";
                     return prepared;
                   }};
           return res;
         }});
    router_.Add({.method = http::verb::get,
                 .pattern = "/fast",
                 .auth = {.anonymous = true},
                 .audit = AuditSpec::None(),
                 .handler = [](Call& call) -> Reply {
                   Response res{http::status::ok, call.req.version()};
                   res.body() = "fast";
                   return res;
                 }});
    ServerOptions o;
    o.unix_listener = UnixListener{.path = dir_.Sub("s.sock")};
    o.limits = TestLimits();
    o.metrics = &metrics_;
    o.io_threads = 1;
    o.worker_threads = 1;  // one worker: a request waiting for its write must not hold it
    auto server = HttpServer::Create(std::move(o), router_, log_);
    ASSERT_OK(server);
    server_ = std::move(server).value();
    runner_ = std::thread([this] { server_->Run(); });
  }
  void TearDown() override {
    if (server_) {
      server_->Stop();
    }
    if (runner_.joinable()) {
      runner_.join();
    }
  }
  virtual Limits TestLimits() const { return Limits{}; }

  // A keep-alive client connection.
  struct Client {
    net::io_context ioc;
    unix_proto::socket sock{ioc};
    boost::beast::flat_buffer buf;
    explicit Client(const std::string& path) {
      sock.connect(unix_proto::endpoint(path));
      // A read that would wait for a worker the server does not free fails instead of hanging.
      timeval tv{.tv_sec = 10, .tv_usec = 0};
      ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    void Send(http::verb method, const std::string& target, const std::string& body = "") {
      http::request<http::string_body> req{method, target, 11};
      req.set(http::field::host, "localhost");
      req.body() = body;
      req.prepare_payload();
      http::write(sock, req);
    }
    http::response<http::string_body> Read() {
      http::response<http::string_body> res;
      http::read(sock, buf, res);
      return res;
    }
    // True once the server has closed the connection (EOF or reset), false if it is still open
    // after `wait`.
    bool ClosedWithin(std::chrono::milliseconds wait) {
      pollfd p{.fd = sock.native_handle(), .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) {
        return false;
      }
      char c;
      return ::recv(sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
    }
  };

  // Waits until the server has admitted `n` connections (the order of accepts is the order of
  // waiting).
  void WaitOpen(size_t n) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (server_->OpenConnections() != n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(server_->OpenConnections(), n);
  }
  std::unique_ptr<Client> Connect(size_t open_after) {
    auto c = std::make_unique<Client>(dir_.Sub("s.sock"));
    WaitOpen(open_after);
    return c;
  }

  testing::TempDir dir_;
  metrics::Registry metrics_;
  std::ostringstream log_sink_;
  Logger log_{log_sink_};
  Router router_;
  Slot slot_;
  std::unique_ptr<HttpServer> server_;
  std::thread runner_;
};

TEST_F(ServerTest, ADeferredAnswerFreesTheWorkerAndSendsWhatFinishMakes) {
  Client slow(dir_.Sub("s.sock"));
  slow.Send(http::verb::post, "/slow", "abc");
  auto done = slot_.Take();  // the handler ran; its write is "in flight"
  ASSERT_TRUE(done);
  // The only worker is free: another connection is answered meanwhile.
  Client fast(dir_.Sub("s.sock"));
  fast.Send(http::verb::get, "/fast");
  auto r = fast.Read();
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(r.body(), "fast");
  // The write completes on another thread (as the store's writer does).
  std::thread([done] { done(Status::Ok()); }).join();
  auto s = slow.Read();
  EXPECT_EQ(s.result_int(), 201u);
  EXPECT_EQ(s.body(), "prepared:abc finished");
  // Same connection, next request: keep-alive still works after a deferred answer.
  slow.Send(http::verb::get, "/fast");
  EXPECT_EQ(slow.Read().body(), "fast");
}

TEST_F(ServerTest, AFailedWriteIsAnsweredWithFinishsError) {
  Client c(dir_.Sub("s.sock"));
  c.Send(http::verb::post, "/slow", "abc");
  auto done = slot_.Take();
  std::thread([done] { done(Unavailable("disk full")); }).join();
  auto r = c.Read();
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(r.body().find("prepared:abc"), std::string::npos) << r.body();
}

TEST_F(ServerTest, StopWaitsForAPendingDeferredAnswer) {
  Client c(dir_.Sub("s.sock"));
  c.Send(http::verb::post, "/slow", "abc");
  auto done = slot_.Take();
  std::thread stopper([this] { server_->Stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(runner_.joinable());
  done(Status::Ok());
  auto r = c.Read();
  EXPECT_EQ(r.result_int(), 201u);
  EXPECT_EQ(r.body(), "prepared:abc finished");
  EXPECT_EQ(r[http::field::connection], "close");
  stopper.join();
  runner_.join();  // Run() returned: the drain saw the answer out
  server_.reset();
}

// One listener of 4, at most 3 per peer (all clients here are one peer), no floor on how long a
// connection must have waited before its own peer's newcomer may take its place.
class ServerConnectionsTest : public ServerTest {
 protected:
  Limits TestLimits() const override {
    Limits l;
    l.max_connections = 4;
    l.max_connections_per_peer = 3;
    l.peer_eviction_min_wait = std::chrono::milliseconds(0);  // ages here are milliseconds
    return l;
  }
};

TEST_F(ServerConnectionsTest, APeerAtItsCapLosesItsLongestWaitingConnectionNotTheNewcomer) {
  auto a = Connect(1);
  auto b = Connect(2);
  auto c = Connect(3);
  Client d(dir_.Sub("s.sock"));  // the peer's fourth: `a` has waited longest
  EXPECT_TRUE(a->ClosedWithin(std::chrono::seconds(5)));
  EXPECT_FALSE(b->ClosedWithin(std::chrono::milliseconds(50)));
  EXPECT_FALSE(c->ClosedWithin(std::chrono::milliseconds(50)));
  d.Send(http::verb::get, "/fast");
  EXPECT_EQ(d.Read().body(), "fast");
  b->Send(http::verb::get, "/fast");
  EXPECT_EQ(b->Read().body(), "fast");
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("opentokend_http_connections_evicted_total{transport=\"unix\","
                      "reason=\"max_connections_per_peer\"} 1"),
            std::string::npos)
      << text;
}

TEST_F(ServerConnectionsTest, AKeepAliveConnectionWaitsFromItsLastAnswer) {
  auto served = Connect(1);  // accepted first...
  auto silent = Connect(2);
  auto other = Connect(3);
  served->Send(http::verb::get, "/fast");  // ...but answered since
  EXPECT_EQ(served->Read().body(), "fast");
  Client d(dir_.Sub("s.sock"));
  EXPECT_TRUE(silent->ClosedWithin(std::chrono::seconds(5)));
  EXPECT_FALSE(served->ClosedWithin(std::chrono::milliseconds(50)));
  served->Send(http::verb::get, "/fast");
  EXPECT_EQ(served->Read().body(), "fast");
}

TEST_F(ServerConnectionsTest, AConnectionWhoseRequestIsBeingHandledIsNeverEvicted) {
  std::vector<std::unique_ptr<Client>> busy;
  std::vector<std::function<void(Status)>> done;
  for (size_t i = 1; i <= 3; ++i) {
    busy.push_back(Connect(i));
    busy.back()->Send(http::verb::post, "/slow", "abc");
    done.push_back(slot_.Take());  // handled: its answer is pending
    ASSERT_TRUE(done.back());
  }
  // The peer's share is all busy: its newcomer is refused, nobody else is cut.
  Client refused(dir_.Sub("s.sock"));
  EXPECT_TRUE(refused.ClosedWithin(std::chrono::seconds(5)));
  for (auto& b : busy) {
    EXPECT_FALSE(b->ClosedWithin(std::chrono::milliseconds(20)));
  }
  for (size_t i = 0; i < 3; ++i) {
    std::thread([d = done[i]] { d(Status::Ok()); }).join();
    auto r = busy[i]->Read();
    EXPECT_EQ(r.result_int(), 201u);
    EXPECT_EQ(r.body(), "prepared:abc finished");
  }
  // Answered, they wait for their next request again: now the first of them makes room.
  Client newcomer(dir_.Sub("s.sock"));
  EXPECT_TRUE(busy[0]->ClosedWithin(std::chrono::seconds(5)));
  newcomer.Send(http::verb::get, "/fast");
  EXPECT_EQ(newcomer.Read().body(), "fast");
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("opentokend_http_connections_rejected_total{transport=\"unix\"} 1"),
            std::string::npos)
      << text;
}

// As above, with a floor of 300 ms.
class ServerChurnTest : public ServerConnectionsTest {
 protected:
  Limits TestLimits() const override {
    Limits l = ServerConnectionsTest::TestLimits();
    l.peer_eviction_min_wait = std::chrono::milliseconds(300);
    return l;
  }
};

TEST_F(ServerChurnTest, APeerThatChurnsIsRefusedRatherThanCutItsOwnFreshConnections) {
  auto a = Connect(1);
  auto b = Connect(2);
  auto c = Connect(3);
  Client churn(dir_.Sub("s.sock"));  // at once: nobody has waited 300 ms
  EXPECT_TRUE(churn.ClosedWithin(std::chrono::seconds(5)));
  EXPECT_FALSE(a->ClosedWithin(std::chrono::milliseconds(20)));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  Client later(dir_.Sub("s.sock"));  // now `a` has waited long enough
  EXPECT_TRUE(a->ClosedWithin(std::chrono::seconds(5)));
  later.Send(http::verb::get, "/fast");
  EXPECT_EQ(later.Read().body(), "fast");
}

// A short request deadline, a long keep-alive wait.
class ServerDeadlinesTest : public ServerTest {
 protected:
  Limits TestLimits() const override {
    Limits l;
    l.request_timeout = std::chrono::milliseconds(1000);
    l.idle_timeout = std::chrono::milliseconds(8000);
    return l;
  }
};

TEST_F(ServerDeadlinesTest, AKeepAliveRequestHasTheRequestDeadlineFromItsFirstByte) {
  Client c(dir_.Sub("s.sock"));
  c.Send(http::verb::get, "/fast");
  EXPECT_EQ(c.Read().body(), "fast");
  // Idle for longer than the request deadline: still within the keep-alive wait.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  c.Send(http::verb::get, "/fast");
  EXPECT_EQ(c.Read().body(), "fast");
  // The first bytes of the next request, then nothing: cut at the request deadline.
  const std::string part = "GET /fa";
  ASSERT_EQ(::send(c.sock.native_handle(), part.data(), part.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(part.size()));
  auto sent = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.ClosedWithin(std::chrono::seconds(6)));
  auto held = std::chrono::steady_clock::now() - sent;
  EXPECT_GE(held, std::chrono::milliseconds(900));
  EXPECT_LT(held, std::chrono::milliseconds(4000));
}

}  // namespace
}  // namespace otd::api
