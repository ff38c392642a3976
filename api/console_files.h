#pragma once
// The web console's static files (console/), embedded at build time (cmake/EmbedConsole.cmake)
// and served under /console/ by api/console_routes.cc.

#include <span>
#include <string_view>

namespace otd::api {

struct ConsoleFile {
  std::string_view path;     // relative to console/, e.g. "index.html", "js/app.js"
  std::string_view etag;     // a strong ETag (quoted) derived from the content's SHA-256
  std::string_view content;  // the file, byte for byte
};

std::span<const ConsoleFile> EmbeddedConsoleFiles();

}  // namespace otd::api
