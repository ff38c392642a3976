// HttpServer::ReloadTls (SIGHUP): a real TLS listener on 127.0.0.1, pairs made by the openssl
// command, an Asio TLS client that compares the certificate it was shown.
#include <sys/socket.h>
#include <sys/time.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "api/server.h"
#include "common/testing/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace otd::api {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;

// DER of the first certificate in a PEM file; empty when it does not parse.
std::string CertDer(const std::string& pem_path) {
  FILE* f = std::fopen(pem_path.c_str(), "r");
  if (f == nullptr) {
    return "";
  }
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (x == nullptr) {
    return "";
  }
  unsigned char* der = nullptr;
  const int n = i2d_X509(x, &der);
  std::string out = n > 0 ? std::string(reinterpret_cast<char*>(der), static_cast<size_t>(n)) : "";
  OPENSSL_free(der);
  X509_free(x);
  return out;
}

// A keep-alive TLS client connection (no verification: the test compares the certificate).
struct TlsClient {
  net::io_context ioc;
  ssl::context ctx{ssl::context::tls_client};
  ssl::stream<tcp::socket> stream{ioc, ctx};
  boost::beast::flat_buffer buf;

  explicit TlsClient(uint16_t port) {
    stream.next_layer().connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    timeval tv{.tv_sec = 10, .tv_usec = 0};
    ::setsockopt(stream.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL_set_tlsext_host_name(stream.native_handle(), "localhost");
    stream.handshake(ssl::stream_base::client);
  }
  std::string PeerDer() {
    X509* x = SSL_get_peer_certificate(stream.native_handle());
    if (x == nullptr) {
      return "";
    }
    unsigned char* der = nullptr;
    const int n = i2d_X509(x, &der);
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(std::max(n, 0)));
    OPENSSL_free(der);
    X509_free(x);
    return out;
  }
  unsigned Get(const std::string& target) {
    namespace http = boost::beast::http;
    http::request<http::string_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "localhost");
    http::write(stream, req);
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    return res.result_int();
  }
};

class ServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"a", "b"}) {
      const std::string cmd =
          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
          "-subj /CN=localhost -keyout " +
          dir_.Sub(std::string(name) + ".key") + " -out " + dir_.Sub(std::string(name) + ".pem") +
          " >/dev/null 2>&1";
      ASSERT_EQ(std::system(cmd.c_str()), 0);
    }
    Install("a.pem", "a.key");
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
    o.tls_listener = TlsListener{.address = "127.0.0.1",
                                 .port = 0,
                                 .certificate_file = dir_.Sub("cert.pem"),
                                 .private_key_file = dir_.Sub("key.pem")};
    o.io_threads = 1;
    o.worker_threads = 1;
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
  // Copies the given pair over the configured certificate and key files.
  void Install(const std::string& cert, const std::string& key) {
    fs::copy_file(dir_.Sub(cert), dir_.Sub("cert.pem"), fs::copy_options::overwrite_existing);
    fs::copy_file(dir_.Sub(key), dir_.Sub("key.pem"), fs::copy_options::overwrite_existing);
  }
  uint16_t port() const { return server_->BoundTlsPort(); }

  testing::TempDir dir_;
  std::ostringstream log_sink_;
  Logger log_{log_sink_};
  Router router_;
  std::unique_ptr<HttpServer> server_;
  std::thread runner_;
};

TEST_F(ServerTlsTest, ReloadServesTheNewCertificateToNewConnectionsOnly) {
  const std::string a = CertDer(dir_.Sub("a.pem"));
  const std::string b = CertDer(dir_.Sub("b.pem"));
  ASSERT_FALSE(a.empty());
  ASSERT_NE(a, b);
  TlsClient before(port());
  EXPECT_EQ(before.PeerDer(), a);
  EXPECT_EQ(before.Get("/fast"), 200u);

  Install("b.pem", "b.key");
  Status s = server_->ReloadTls();
  ASSERT_OK(s);
  TlsClient after(port());
  EXPECT_EQ(after.PeerDer(), b);
  EXPECT_EQ(after.Get("/fast"), 200u);
  // The connection opened before the reload keeps working (keep-alive), with its certificate.
  EXPECT_EQ(before.Get("/fast"), 200u);
  EXPECT_EQ(before.PeerDer(), a);
}

TEST_F(ServerTlsTest, ABrokenOrMismatchedPairIsRefusedAndTheOldOneStays) {
  const std::string a = CertDer(dir_.Sub("a.pem"));
  {  // not a certificate
    std::ofstream(dir_.Sub("cert.pem"), std::ios::trunc) << "-----BEGIN CERTIFICATE-----\nxx\n";
    Status s = server_->ReloadTls();
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("listen.tls.certificate"), std::string::npos) << s.message();
  }
  {  // a certificate with another certificate's key
    Install("b.pem", "a.key");
    Status s = server_->ReloadTls();
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("does not match"), std::string::npos) << s.message();
  }
  {  // the key file gone
    fs::remove(dir_.Sub("key.pem"));
    EXPECT_EQ(server_->ReloadTls().code(), Code::kInvalidArgument);
  }
  TlsClient client(port());
  EXPECT_EQ(client.PeerDer(), a);
  EXPECT_EQ(client.Get("/fast"), 200u);
}

TEST(ServerTlsReloadTest, WithoutATlsListenerThereIsNothingToReload) {
  testing::TempDir dir;
  std::ostringstream sink;
  Logger log(sink);
  Router router;
  ServerOptions o;
  o.unix_listener = UnixListener{.path = dir.Sub("s.sock")};
  auto server = HttpServer::Create(std::move(o), router, log);
  ASSERT_OK(server);
  EXPECT_EQ((*server)->ReloadTls().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace otd::api
