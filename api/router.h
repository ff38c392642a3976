#pragma once
// Router: maps (method, path) to a handler. Patterns are '/'-separated segments; `{name}` matches
// one non-empty segment of URL-safe characters, a final `**` matches one or more remaining segments
// (exposed as params["**"]). Unknown path → 404; known path, other method → 405 with `Allow`.
//
// Handlers run on a worker thread (they may block on the HSM or the store). Thread safety: the
// router is built once before serving, then only read.

#include <functional>
#include <string>
#include <vector>

#include "api/http.h"

namespace otd::api {

using Handler = std::function<Response(const Request&, RequestContext&)>;

class Router {
 public:
  void Add(http::verb method, std::string pattern, Handler handler);
  // Replaces every registered handler h with wrap(method, pattern, h) (used for the audit trail).
  void WrapHandlers(const std::function<Handler(http::verb, const std::string&, Handler)>& wrap);
  // Fills ctx.route and ctx.params; returns the response (including 404/405).
  Response Dispatch(const Request& req, RequestContext& ctx) const;

 private:
  struct Route {
    http::verb method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
  };
  static bool Match(const Route& r, const std::vector<std::string>& path_segments,
                    std::map<std::string, std::string>& params);
  std::vector<Route> routes_;
};

}  // namespace otd::api
