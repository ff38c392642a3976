#pragma once
// Link headers (RFC 8288) in the shape the OpenToken docs use (doc/api/links.md):
//   Link: </>; rel="up"; title="self-discovery"
// Each link is its own `Link` header field, in the order added.

#include <string>
#include <vector>

#include "api/http.h"

namespace otd::api {

struct Link {
  std::string href;
  std::string rel;
  std::string title;    // optional
  std::string profile;  // optional: JSON schema describing the request body
  bool templated = false;
};

std::string FormatLink(const Link& link);
void AddLink(Response& res, const Link& link);
// The two links every response carries: up → self-discovery, and self.
void AddStandardLinks(Response& res, const std::string& self);

}  // namespace otd::api
