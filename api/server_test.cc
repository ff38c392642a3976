// HttpServer with deferred answers (RequestContext::Deferred): a real server on a real Unix
// socket, a Beast client. The worker that ran the handler is free while the answer waits, the
// answer is what finish() makes of the status, and a stop waits for it.
#include "api/server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <gtest/gtest.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "api/errors.h"
#include "tests/support/temp_dir.h"

namespace otd::api {
namespace {

namespace net = boost::asio;
using unix_proto = net::local::stream_protocol;

// The `done` of the one pending deferred answer, handed over by the server's worker.
class Slot {
 public:
  void Put(std::function<void(Status)> done) {
    std::lock_guard lock(mu_);
    done_ = std::move(done);
    cv_.notify_all();
  }
  std::function<void(Status)> Take() {
    std::unique_lock lock(mu_);
    EXPECT_TRUE(cv_.wait_for(lock, std::chrono::seconds(20), [&] { return done_ != nullptr; }));
    auto d = std::move(done_);
    done_ = nullptr;
    return d;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void(Status)> done_;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The server's own contract (RequestContext::deferred), set by the handler directly.
    router_.Add({.method = http::verb::post,
                 .pattern = "/slow",
                 .auth = {.anonymous = true},
                 .audit = AuditSpec::None(),
                 .handler = [this](Call& call) -> Reply {
                   const Request& req = call.req;
                   RequestContext& ctx = call.ctx;
                   Response res{http::status::created, req.version()};
                   res.body() = "prepared:" + req.body();
                   ctx.deferred = Deferred{
                       .start = [this](std::function<void(Status)> done) {
                         slot_.Put(std::move(done));
                       },
                       .finish = [&req, &ctx](Status s, Response prepared) {
                         if (!s.ok()) {
                           return VndError(req, ctx, 503, "service-unavailable",
                                           "the write failed");
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
    o.io_threads = 1;
    o.worker_threads = 1;  // one worker: a request waiting for its write must not hold it
    auto server = HttpServer::Create(std::move(o), router_, log_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
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
  };

  testing::TempDir dir_;
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

}  // namespace
}  // namespace otd::api
