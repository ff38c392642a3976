#pragma once
// Router: the route table (api/route.h) and the dispatch of a request to the pipeline
// (api/pipeline.h). Patterns are '/'-separated segments; `{name}` matches one non-empty segment
// of URL-safe characters, a final `**` matches one or more remaining segments (params["**"]).
// Unknown path → 404; known path, other method → 405 with `Allow`; HEAD runs GET without the
// body.
//
// Add() checks each route's declaration (a broken one is a programming error: OTD_CHECK): an
// audit decision, credentials that make sense together, a schema for JSON bodies.
//
// Thread safety: built once before serving, then only read; Dispatch is reentrant. Handlers run
// on a worker thread (they may block on the HSM).

#include <string>
#include <vector>

#include "api/http.h"
#include "api/pipeline.h"
#include "api/route.h"

namespace otd::api {

class Router {
 public:
  // `services` (null: only anonymous, unaudited routes, e.g. the metrics listener) must outlive
  // the router.
  explicit Router(const Services* services = nullptr) : pipeline_(services) {}
  void Add(RouteSpec route);
  // Fills ctx.route and ctx.params; returns the answer (including 404/405); may set
  // ctx.deferred (api/http.h).
  Response Dispatch(const Request& req, RequestContext& ctx) const;
  // The table, in the order added.
  std::vector<const RouteSpec*> Routes() const;
  // Links of every route advertised at `where` (api/route.h Advertised), in the order added.
  std::vector<Link> AdvertisedLinks(Advertised::Where where) const;

 private:
  struct Entry {
    RouteSpec spec;
    std::vector<std::string> segments;
  };
  static bool Match(const Entry& e, const std::vector<std::string>& segs,
                    std::map<std::string, std::string>& params);
  Pipeline pipeline_;
  std::vector<Entry> routes_;
};

}  // namespace otd::api
