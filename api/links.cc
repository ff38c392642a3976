#include "api/links.h"

namespace otd::api {

std::string FormatLink(const Link& link) {
  std::string s = "<" + link.href + ">; rel=\"" + link.rel + "\"";
  if (!link.profile.empty()) {
    s += "; profile=\"" + link.profile + "\"";
  }
  if (link.templated) {
    s += "; templated=\"true\"";
  }
  if (!link.title.empty()) {
    s += "; title=\"" + link.title + "\"";
  }
  return s;
}

void AddLink(Response& res, const Link& link) { res.insert(http::field::link, FormatLink(link)); }

void AddStandardLinks(Response& res, const std::string& self) {
  AddLink(res, {.href = "/", .rel = "up", .title = "self-discovery"});
  AddLink(res, {.href = self, .rel = "self"});
}

}  // namespace otd::api
