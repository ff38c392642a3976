#pragma once
// Request/response types shared by the API layer, and the per-request context.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

namespace otd::api {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

enum class Transport { kUnix, kTls };

struct RequestContext {
  std::string request_id;
  Transport transport = Transport::kUnix;
  std::string peer;                           // "uid:<n>" (Unix socket) or the IP (TLS); rate limits
  std::string path;                           // raw path of the target, without the query
  std::string query;                          // raw query string, without '?'
  std::string route;                          // matched route pattern (safe to log; no ids)
  std::map<std::string, std::string> params;  // route parameters ({id} -> value)
};

// Splits an origin-form target into path and query.
void SplitTarget(std::string_view target, std::string& path, std::string& query);

}  // namespace otd::api
