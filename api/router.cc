#include "api/router.h"

#include <algorithm>

#include "api/errors.h"
#include "common/check.h"

namespace otd::api {

namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 1;  // skip the leading '/'
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) {
      j = path.size();
    }
    out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  if (out.size() == 1 && out[0].empty()) {
    out.clear();  // "/"
  }
  return out;
}

bool IsParamChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

}  // namespace

void SplitTarget(std::string_view target, std::string& path, std::string& query) {
  size_t q = target.find('?');
  path = std::string(target.substr(0, q));
  query = q == std::string_view::npos ? "" : std::string(target.substr(q + 1));
}

void Router::Add(RouteSpec route) {
  OTD_CHECK(route.audit.kind != AuditSpec::Kind::kUndecided);
  OTD_CHECK(route.audit.kind == AuditSpec::Kind::kNone || !route.audit.event.empty());
  OTD_CHECK(route.auth.anonymous || route.auth.signature || !route.auth.scope.empty());
  OTD_CHECK(!(route.auth.anonymous && !route.auth.scope.empty() && !route.auth.signature));
  OTD_CHECK(!route.auth.signature || route.pattern.rfind("/account/{id}", 0) == 0);
  OTD_CHECK(!(route.auth.account_in_path && !route.auth.scope.empty()) ||
            route.pattern.rfind("/account/{id}", 0) == 0);
  OTD_CHECK((route.body.kind != BodyKind::kJson && route.body.kind != BodyKind::kOptionalJson) ||
            !route.body.schema.empty());
  OTD_CHECK(route.handler != nullptr);
  std::vector<std::string> segments = SplitPath(route.pattern);
  routes_.push_back({std::move(route), std::move(segments)});
}

std::vector<const RouteSpec*> Router::Routes() const {
  std::vector<const RouteSpec*> out;
  out.reserve(routes_.size());
  for (const auto& e : routes_) {
    out.push_back(&e.spec);
  }
  return out;
}

std::vector<Link> Router::AdvertisedLinks(Advertised::Where where) const {
  std::vector<Link> out;
  for (const auto& e : routes_) {
    for (const auto& a : e.spec.links) {
      if (a.where == where) {
        out.push_back(a.link);
      }
    }
  }
  return out;
}

bool Router::Match(const Entry& e, const std::vector<std::string>& segs,
                   std::map<std::string, std::string>& params) {
  params.clear();
  const auto& pat = e.segments;
  for (size_t i = 0; i < pat.size(); ++i) {
    if (pat[i] == "**") {
      if (i >= segs.size()) {
        return false;
      }
      std::string rest;
      for (size_t k = i; k < segs.size(); ++k) {
        if (segs[k].empty()) {
          return false;
        }
        rest += (k == i ? "" : "/") + segs[k];
      }
      params["**"] = rest;
      return true;
    }
    if (i >= segs.size()) {
      return false;
    }
    if (pat[i].size() > 2 && pat[i].front() == '{' && pat[i].back() == '}') {
      const std::string& v = segs[i];
      if (v.empty() || v.size() > 256 || !std::all_of(v.begin(), v.end(), IsParamChar)) {
        return false;
      }
      params[pat[i].substr(1, pat[i].size() - 2)] = v;
    } else if (pat[i] != segs[i]) {
      return false;
    }
  }
  return pat.size() == segs.size();
}

Response Router::Dispatch(const Request& req, RequestContext& ctx) const {
  std::vector<std::string> segs = SplitPath(ctx.path);
  std::string allow;
  for (const auto& e : routes_) {
    const RouteSpec& r = e.spec;
    std::map<std::string, std::string> params;
    if (!Match(e, segs, params)) {
      continue;
    }
    if (r.method == req.method() ||
        (req.method() == http::verb::head && r.method == http::verb::get)) {
      ctx.route = r.pattern;
      ctx.params = std::move(params);
      Response res = pipeline_.Run(r, req, ctx);
      if (req.method() == http::verb::head) {
        res.body().clear();
      }
      return res;
    }
    allow += (allow.empty() ? "" : ", ") + std::string(http::to_string(r.method));
  }
  if (!allow.empty()) {
    ctx.route = "(method-not-allowed)";
    Response res = VndError(req, ctx, 405, "method-not-allowed", "method not allowed");
    res.set(http::field::allow, allow);
    return res;
  }
  ctx.route = "(not-found)";
  return VndError(req, ctx, 404, "not-found", "not found");
}

}  // namespace otd::api
