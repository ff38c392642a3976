// Client::Send: one HTTP/1.1 request per connection over the Unix socket or TLS (Boost.Beast,
// synchronous). The TLS peer is verified against the CA file and the URL's host name or IP.
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cctype>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "opentoken/client.h"

namespace opentoken {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

constexpr std::uint64_t kMaxReplyBytes = 64ULL * 1024 * 1024;

struct Url {
  std::string host;  // without brackets
  std::string port;
  std::string host_header;
};

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

Result<Url> ParseUrl(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Error{Error::Kind::kUsage, 0, "--url must start with https://", {}};
  }
  std::string_view rest = url.substr(kScheme.size());
  while (!rest.empty() && rest.back() == '/') {
    rest.remove_suffix(1);
  }
  if (rest.empty() || rest.find('/') != std::string_view::npos ||
      rest.find('@') != std::string_view::npos) {
    return Error{Error::Kind::kUsage, 0, "--url must be https://HOST[:PORT] (no path)", {}};
  }
  Url u;
  u.host_header = std::string(rest);
  if (rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return Error{Error::Kind::kUsage, 0, "--url: unterminated [IPv6] host", {}};
    }
    u.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    u.port = rest.empty() ? "443" : std::string(rest.substr(1));
  } else {
    const size_t colon = rest.rfind(':');
    u.host = std::string(rest.substr(0, colon));
    u.port = colon == std::string_view::npos ? "443" : std::string(rest.substr(colon + 1));
  }
  if (u.host.empty() || u.port.empty() ||
      u.port.find_first_not_of("0123456789") != std::string::npos) {
    return Error{Error::Kind::kUsage, 0, "--url: bad host or port", {}};
  }
  return u;
}

Error Transport(const std::string& what, const beast::error_code& ec) {
  return Error{Error::Kind::kTransport, 0, what + ": " + ec.message(), {}};
}

// An allocator that wipes what it frees: the read buffer holds the raw reply (a detokenized
// payload, a cookie, an access-code secret).
template <class T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() = default;
  template <class U>
  WipingAllocator(const WipingAllocator<U>& /*other*/) noexcept {}  // NOLINT
  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, size_t n) noexcept {
    OPENSSL_cleanse(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  template <class U>
  bool operator==(const WipingAllocator<U>& /*other*/) const noexcept {
    return true;
  }
};

// The request's header fields hold the Authorization header or the cookie: wiped when freed too.
using WipedRequest = http::request<http::string_body, http::basic_fields<WipingAllocator<char>>>;

using Clock = std::chrono::steady_clock;
using Done = std::function<void(beast::error_code)>;

// Starts one asynchronous operation (start(done)) and runs the io_context until it completes or
// the deadline passes; on timeout `abort` closes the socket and the aborted handler is drained
// before returning (it refers to the caller's stack).
beast::error_code Await(asio::io_context& ioc, Clock::time_point deadline,
                        const std::function<void(const Done&)>& start,
                        const std::function<void()>& abort) {
  bool done = false;
  beast::error_code result;
  start([&](beast::error_code ec) {
    result = ec;
    done = true;
  });
  ioc.restart();
  const Clock::time_point now = Clock::now();
  if (deadline > now) {
    ioc.run_for(deadline - now);
  }
  if (!done) {
    abort();
    ioc.restart();
    ioc.run();
    return asio::error::timed_out;
  }
  return result;
}

template <class Stream>
Result<Response> Exchange(asio::io_context& ioc, Clock::time_point deadline, Stream& stream,
                          const WipedRequest& req, const std::function<void()>& abort) {
  beast::error_code ec = Await(
      ioc, deadline,
      [&](const Done& done) {
        http::async_write(stream, req, [done](beast::error_code e, size_t) { done(e); });
      },
      abort);
  if (ec) {
    return Transport("sending the request", ec);
  }
  beast::basic_flat_buffer<WipingAllocator<char>> buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxReplyBytes);
  ec = Await(
      ioc, deadline,
      [&](const Done& done) {
        http::async_read(stream, buffer, parser, [done](beast::error_code e, size_t) { done(e); });
      },
      abort);
  if (ec) {
    return Transport("reading the reply", ec);
  }
  auto& msg = parser.get();
  Response r;
  r.status = static_cast<int>(msg.result_int());
  for (const auto& field : msg) {
    r.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  r.body = std::move(msg.body());
  return r;
}

}  // namespace

std::string Response::Get(std::string_view name) const {
  for (const Header& h : headers) {
    if (IEquals(h.first, name)) {
      return h.second;
    }
  }
  return {};
}

std::vector<std::string> Response::Links() const {
  std::vector<std::string> out;
  for (const Header& h : headers) {
    if (!IEquals(h.first, "link")) {
      continue;
    }
    // Split on commas outside <...> and "...".
    bool in_angle = false;
    bool in_quote = false;
    std::string cur;
    for (char c : h.second) {
      if (c == '<' && !in_quote) {
        in_angle = true;
      } else if (c == '>' && !in_quote) {
        in_angle = false;
      } else if (c == '"') {
        in_quote = !in_quote;
      }
      if (c == ',' && !in_angle && !in_quote) {
        out.push_back(cur);
        cur.clear();
        continue;
      }
      cur.push_back(c);
    }
    if (!cur.empty()) {
      out.push_back(cur);
    }
  }
  return out;
}

std::string Response::FindLink(std::string_view rel, std::string_view title) const {
  for (const std::string& link : Links()) {
    const size_t open = link.find('<');
    const size_t close = link.find('>');
    if (open == std::string::npos || close == std::string::npos || close < open) {
      continue;
    }
    const std::string params = link.substr(close + 1);
    const bool rel_ok = params.find("rel=\"" + std::string(rel) + "\"") != std::string::npos;
    const bool title_ok =
        title.empty() || params.find("title=\"" + std::string(title) + "\"") != std::string::npos;
    if (rel_ok && title_ok) {
      return link.substr(open + 1, close - open - 1);
    }
  }
  return {};
}

Error HttpError(const Response& r) {
  Error e{Error::Kind::kHttp, r.status, {}, {}};
  nlohmann::json doc = nlohmann::json::parse(r.body, nullptr, false);
  if (doc.is_object()) {
    if (doc.contains("message") && doc["message"].is_string()) {
      e.message = doc["message"].get<std::string>();  // vnd.error and {"type","message"}
    }
    if (doc.contains("code") && doc["code"].is_string()) {
      e.code = doc["code"].get<std::string>();
    } else if (doc.contains("type") && doc["type"].is_string()) {
      e.code = doc["type"].get<std::string>();
    }
    const nlohmann::json* data = doc.contains("data") ? &doc["data"] : nullptr;
    if (data != nullptr && data->is_object() && data->contains("attributes") &&
        (*data)["attributes"].is_object() && (*data)["attributes"].contains("message") &&
        (*data)["attributes"]["message"].is_string()) {
      e.message = (*data)["attributes"]["message"].get<std::string>();  // /v1 shape
      if (data->contains("id") && (*data)["id"].is_string()) {
        e.code = (*data)["id"].get<std::string>();
      }
    }
  }
  if (e.message.empty()) {
    e.message = "HTTP " + std::to_string(r.status);
  }
  return e;
}

Client::Client(Endpoint endpoint) : endpoint_(std::move(endpoint)) {}

std::string Client::HostHeader() const {
  if (!endpoint_.url.empty()) {
    Result<Url> u = ParseUrl(endpoint_.url);
    return u.ok() ? u->host_header : std::string();
  }
  return "localhost";
}

Result<Response> Client::Send(Request request, bool authenticate) const {
  WipedRequest req;
  req.method_string(request.method);
  req.target(request.target);
  req.version(11);
  bool has_host = false;
  for (const Header& h : request.headers) {
    has_host = has_host || IEquals(h.first, "host");
    req.insert(h.first, h.second);
  }
  if (!has_host) {
    req.set(http::field::host, HostHeader());
  }
  if (authenticate && !bearer_.Empty()) {
    req.set(http::field::authorization, "Bearer " + bearer_.Reveal());
  } else if (authenticate && !cookie_.Empty()) {
    req.set(http::field::cookie, "login=" + cookie_.Reveal());
  }
  req.set(http::field::user_agent, "opentoken/" + std::string(kVersion));
  req.set(http::field::connection, "close");
  req.body() = std::move(request.body);
  if (!req.body().empty() || request.method == "POST" || request.method == "PUT" ||
      request.method == "PATCH") {
    req.content_length(req.body().size());
  }
  Wipe(request.body);

  asio::io_context ioc;
  beast::error_code ec;
  const Clock::time_point deadline =
      Clock::now() +
      std::chrono::seconds(endpoint_.timeout_seconds > 0 ? endpoint_.timeout_seconds : 60);
  Result<Response> result = Error{};
  if (endpoint_.url.empty()) {
    if (endpoint_.socket_path.empty()) {
      return Error{Error::Kind::kUsage,
                   0,
                   "no daemon given: use --socket PATH or --url https://HOST:PORT "
                   "(or OPENTOKEN_SOCKET / OPENTOKEN_URL, or a profile)",
                   {}};
    }
    asio::local::stream_protocol::socket sock(ioc);
    auto abort = [&sock] {
      beast::error_code ignored;
      sock.close(ignored);
    };
    const asio::local::stream_protocol::endpoint where(endpoint_.socket_path);
    ec = Await(
        ioc, deadline,
        [&](const Done& done) {
          sock.async_connect(where, [done](beast::error_code e) { done(e); });
        },
        abort);
    if (ec) {
      result = Transport("connecting to " + endpoint_.socket_path, ec);
    } else {
      result = Exchange(ioc, deadline, sock, req, abort);
    }
  } else {
    Result<Url> url = ParseUrl(endpoint_.url);
    if (!url.ok()) {
      return url.error();
    }
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                    asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    if (!endpoint_.cacert.empty()) {
      ctx.load_verify_file(endpoint_.cacert, ec);
      if (ec) {
        return Error{
            Error::Kind::kLocal, 0, "--cacert " + endpoint_.cacert + ": " + ec.message(), {}};
      }
    } else {
      ctx.set_default_verify_paths(ec);
    }
    ctx.set_verify_mode(asio::ssl::verify_peer);
    asio::ssl::stream<asio::ip::tcp::socket> stream(ioc, ctx);
    SSL* ssl = stream.native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, url->host.c_str()) != 1) {
      // Not an IP address: verify the DNS name, and send it as SNI.
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (X509_VERIFY_PARAM_set1_host(param, url->host.c_str(), 0) != 1 ||
          SSL_set_tlsext_host_name(ssl, url->host.c_str()) != 1) {
        return Error{Error::Kind::kUsage, 0, "--url: bad host name", {}};
      }
    }
    asio::ip::tcp::resolver resolver(ioc);
    auto endpoints = resolver.resolve(url->host, url->port, ec);
    if (ec) {
      return Transport("resolving " + url->host, ec);
    }
    auto abort = [&stream] {
      beast::error_code ignored;
      stream.next_layer().close(ignored);
    };
    ec = Await(
        ioc, deadline,
        [&](const Done& done) {
          asio::async_connect(
              stream.next_layer(), endpoints,
              [done](beast::error_code e, const asio::ip::tcp::endpoint&) { done(e); });
        },
        abort);
    if (ec) {
      return Transport("connecting to " + endpoint_.url, ec);
    }
    ec = Await(
        ioc, deadline,
        [&](const Done& done) {
          stream.async_handshake(asio::ssl::stream_base::client,
                                 [done](beast::error_code e) { done(e); });
        },
        abort);
    if (ec) {
      return Transport("TLS handshake with " + endpoint_.url +
                           " (is --cacert the certificate the daemon presents?)",
                       ec);
    }
    result = Exchange(ioc, deadline, stream, req, abort);
    abort();  // Connection: close; the server closes too (no close_notify needed)
  }
  std::string& sent = req.body();
  Wipe(sent);
  return result;
}

}  // namespace opentoken
