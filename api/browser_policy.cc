#include "api/browser_policy.h"

#include <algorithm>
#include <array>

#include "api/request_helpers.h"
#include "common/ascii.h"

namespace otd::api {

namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// "scheme://authority" of an absolute URL, lower-cased, with the scheme's default port removed;
// empty when `url` is not an http(s) URL.
std::string NormalizedOrigin(std::string_view url) {
  std::string u = AsciiLowerCopy(url);
  std::string_view scheme;
  if (StartsWith(u, "https://")) {
    scheme = "https";
  } else if (StartsWith(u, "http://")) {
    scheme = "http";
  } else {
    return "";
  }
  std::string_view rest = std::string_view(u).substr(scheme.size() + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty()) {
    return "";
  }
  const std::string_view default_port = scheme == "https" ? ":443" : ":80";
  if (EndsWith(authority, default_port)) {
    authority.remove_suffix(default_port.size());
  }
  return std::string(scheme) + "://" + std::string(authority);
}

bool IsStateChanging(http::verb v) {
  return v == http::verb::post || v == http::verb::put || v == http::verb::patch ||
         v == http::verb::delete_;
}

}  // namespace

bool IsInlineSafeMediaType(std::string_view content_type) {
  const std::string type = MediaType(content_type);
  static constexpr std::array<std::string_view, 10> kExact = {
      "text/plain", "text/csv",   "application/json", "application/octet-stream",
      "image/png",  "image/jpeg", "image/gif",        "image/webp",
      "image/avif", "image/bmp"};
  if (std::find(kExact.begin(), kExact.end(), type) != kExact.end()) {
    return true;
  }
  // JSON dialects render as text; audio and video open in the browser's media player.
  if (StartsWith(type, "application/") && EndsWith(type, "+json")) {
    return type.find_first_of(" ,;\"") == std::string::npos;
  }
  for (std::string_view family : {"audio/", "video/"}) {
    if (StartsWith(type, family) && type.size() > family.size() &&
        type.find_first_of(" ,;\"/", family.size()) == std::string::npos) {
      return true;
    }
  }
  return false;
}

void AddPayloadDisposition(Response& res, std::string_view content_type) {
  if (!IsInlineSafeMediaType(content_type)) {
    res.set(http::field::content_disposition, "attachment");
  }
}

std::optional<std::string> CrossSiteRefusal(const Request& req, std::string_view public_url) {
  if (!IsStateChanging(req.method())) {
    return std::nullopt;
  }
  if (AsciiEqualsIgnoreCase(req["Sec-Fetch-Site"], "cross-site")) {
    return "cross-site request refused (Sec-Fetch-Site: cross-site)";
  }
  size_t origins = 0;
  std::string_view origin;
  for (const auto& f : req) {
    if (f.name() == http::field::origin) {
      ++origins;
      origin = f.value();
    }
  }
  if (origins == 0) {
    return std::nullopt;  // not sent by a browser
  }
  const std::string refused = "cross-site request refused (Origin is not this service)";
  if (origins > 1) {
    return refused;
  }
  const std::string from = NormalizedOrigin(origin);  // "null" and garbage give ""
  if (from.empty()) {
    return refused;
  }
  if (!public_url.empty() && from == NormalizedOrigin(public_url)) {
    return std::nullopt;
  }
  std::string_view host = req[http::field::host];
  if (!host.empty()) {
    const std::string scheme = from.substr(0, from.find("://"));
    if (from == NormalizedOrigin(scheme + "://" + std::string(host))) {
      return std::nullopt;
    }
  }
  return refused;
}

}  // namespace otd::api
