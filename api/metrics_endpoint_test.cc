#include "api/metrics_endpoint.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace otd::api {
namespace {

Response Send(const Router& router, http::verb m, const std::string& target) {
  Request req{m, target, 11};
  RequestContext ctx;
  SplitTarget(target, ctx.path, ctx.query);
  return router.Dispatch(req, ctx);
}

TEST(MetricsEndpointTest, ServesTheRegistryAsPrometheusText) {
  metrics::Registry registry;
  auto* c = *registry.AddCounter("x_total", "X.", {"k"});
  c->With({"a"}).Inc(3);
  Router router;
  RegisterMetricsRoutes(router, registry);
  Response r = Send(router, http::verb::get, "/metrics");
  EXPECT_EQ(r.result_int(), 200);
  EXPECT_EQ(r[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.body(), "# HELP x_total X.\n# TYPE x_total counter\nx_total{k=\"a\"} 3\n");
  // Rendered per scrape.
  c->With({"a"}).Inc();
  EXPECT_NE(Send(router, http::verb::get, "/metrics").body().find("x_total{k=\"a\"} 4\n"),
            std::string::npos);
  Response head = Send(router, http::verb::head, "/metrics");
  EXPECT_EQ(head.result_int(), 200);
  EXPECT_TRUE(head.body().empty());
}

TEST(MetricsEndpointTest, NothingElseIsServed) {
  metrics::Registry registry;
  Router router;
  RegisterMetricsRoutes(router, registry);
  for (const char* target : {"/", "/healthCheck", "/metrics/", "/metrics/x", "/metricsx"}) {
    Response r = Send(router, http::verb::get, target);
    EXPECT_EQ(r.result_int(), 404) << target;
    EXPECT_EQ(r[http::field::content_type], "application/vnd.error+json") << target;
  }
  for (http::verb m : {http::verb::post, http::verb::put, http::verb::delete_, http::verb::patch}) {
    Response r = Send(router, m, "/metrics");
    EXPECT_EQ(r.result_int(), 405);
    EXPECT_EQ(r[http::field::allow], "GET");
    EXPECT_EQ(r[http::field::content_type], "application/vnd.error+json");
  }
}

// --- metrics.tcp bearer token (issue 18 part 5) ---
Response SendWith(const Router& router, std::vector<std::string> authorizations) {
  Request req{http::verb::get, "/metrics", 11};
  for (const auto& a : authorizations) {
    req.insert(http::field::authorization, a);
  }
  RequestContext ctx;
  SplitTarget("/metrics", ctx.path, ctx.query);
  return router.Dispatch(req, ctx);
}

TEST(MetricsEndpointTest, BearerTokenIsRequiredWhenSet) {
  metrics::Registry registry;
  (void)*registry.AddCounter("x_total", "X.");
  Router router;
  RegisterMetricsRoutes(router, registry, SecretBytes::CopyFrom("0123456789abcdef-token"));
  const std::string good = "Bearer 0123456789abcdef-token";
  EXPECT_EQ(SendWith(router, {good}).result_int(), 200);
  EXPECT_NE(SendWith(router, {good}).body().find("x_total 0"), std::string::npos);
  EXPECT_EQ(SendWith(router, {"bearer 0123456789abcdef-token"}).result_int(), 200);
  for (const std::vector<std::string>& bad : {std::vector<std::string>{},
                                              {"Bearer 0123456789abcdef-toke"},
                                              {"Bearer 0123456789abcdef-tokenX"},
                                              {"Bearer "},
                                              {"Basic 0123456789abcdef-token"},
                                              {"0123456789abcdef-token"},
                                              {good, good}}) {
    Response r = SendWith(router, bad);
    EXPECT_EQ(r.result_int(), 401) << (bad.empty() ? "(none)" : bad[0]);
    EXPECT_EQ(r[http::field::www_authenticate], "Bearer realm=\"opentokend-metrics\"");
    EXPECT_EQ(r.body().find("x_total"), std::string::npos);
  }
}

}  // namespace
}  // namespace otd::api
