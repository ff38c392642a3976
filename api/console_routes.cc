// The web console (issue 19): static pages, styles and JavaScript modules from console/, embedded
// at build time, served under /console/ when `console.enabled` (daemon/config.h). The console is
// a client of the public API on the same origin: it follows the links from `GET /` and holds no
// privilege of its own, so its routes are anonymous and no security event (audit: none).
//
// Its answers carry their own Content-Security-Policy (kConsoleContentSecurityPolicy: scripts,
// styles, images and fetches from this origin only, no inline script or style, no framing), so
// the server does not add the API's `sandbox` policy to them; `Cache-Control: no-cache` with a
// strong ETag (a 304 for a matching If-None-Match) instead of the API's `no-store`: the files
// hold no secret and the browser revalidates each time, so an upgraded daemon is never mixed
// with an old script.

#include <string>

#include "api/console_files.h"
#include "api/routes.h"

namespace otd::api {

namespace {

std::string_view ContentTypeOf(std::string_view path) {
  auto ends = [&path](std::string_view suffix) {
    return path.size() >= suffix.size() && path.substr(path.size() - suffix.size()) == suffix;
  };
  if (ends(".html")) {
    return "text/html; charset=utf-8";
  }
  if (ends(".css")) {
    return "text/css; charset=utf-8";
  }
  if (ends(".svg")) {
    return "image/svg+xml";
  }
  return "text/javascript; charset=utf-8";  // EmbedConsole.cmake embeds html, css, js, svg
}

const ConsoleFile* FindConsoleFile(std::string_view path) {
  for (const ConsoleFile& f : EmbeddedConsoleFiles()) {
    if (f.path == path) {
      return &f;
    }
  }
  return nullptr;
}

// Whether an If-None-Match list names `etag` (or is "*").
bool NoneMatchHits(std::string_view header, std::string_view etag) {
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
      item.remove_prefix(1);
    }
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
      item.remove_suffix(1);
    }
    if (item.substr(0, 2) == "W/") {
      item.remove_prefix(2);  // weak comparison (RFC 9110 §13.1.2)
    }
    if (item == etag || item == "*") {
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    header.remove_prefix(comma + 1);
  }
  return false;
}

void AddConsoleHeaders(Response& res) {
  res.set("Content-Security-Policy", kConsoleContentSecurityPolicy);
  res.set("Referrer-Policy", "no-referrer");
  res.set("Cross-Origin-Opener-Policy", "same-origin");
  res.set("Cross-Origin-Resource-Policy", "same-origin");
  res.set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()");
}

Reply Serve(const Call& call, std::string_view path) {
  const ConsoleFile* f = FindConsoleFile(path);
  if (f == nullptr) {
    return call.Error(404, "not-found", "not found");
  }
  if (NoneMatchHits(call.req[http::field::if_none_match], f->etag)) {
    Response res{http::status::not_modified, call.req.version()};
    res.set(http::field::etag, f->etag);
    res.set(http::field::cache_control, "no-cache");
    AddConsoleHeaders(res);
    return res;
  }
  Response res{http::status::ok, call.req.version()};
  res.set(http::field::content_type, ContentTypeOf(f->path));
  res.set(http::field::etag, f->etag);
  res.set(http::field::cache_control, "no-cache");
  AddConsoleHeaders(res);
  res.body() = std::string(f->content);
  res.prepare_payload();
  return res;
}

}  // namespace

std::vector<RouteSpec> ConsoleRoutes(const Services&) {
  const AuthSpec anyone{.anonymous = true};
  std::vector<RouteSpec> r;
  r.push_back({.method = http::verb::get,
               .pattern = "/console",
               .auth = anyone,
               .audit = AuditSpec::None(),
               .handler = [](Call& c) -> Reply {
                 Response res{http::status::moved_permanently, c.req.version()};
                 res.set(http::field::location, std::string(kConsolePath));
                 return res;
               }});
  r.push_back({.method = http::verb::get,
               .pattern = std::string(kConsolePath),
               .auth = anyone,
               .audit = AuditSpec::None(),
               .links = {{.link = {.href = std::string(kConsolePath),
                                   .rel = "service",
                                   .title = "console"}}},
               .handler = [](Call& c) { return Serve(c, "index.html"); }});
  r.push_back({.method = http::verb::get,
               .pattern = std::string(kConsolePath) + "**",
               .auth = anyone,
               .audit = AuditSpec::None(),
               .handler = [](Call& c) { return Serve(c, c.param("**")); }});
  return r;
}

}  // namespace otd::api
