#include "api/router.h"

#include <gtest/gtest.h>

namespace otd::api {
namespace {

Reply Ok(Call& call) {
  Response r{http::status::ok, call.req.version()};
  std::string body = call.ctx.route;
  for (const auto& [k, v] : call.ctx.params) {
    body += "|" + k + "=" + v;
  }
  r.body() = body;
  return r;
}

// An anonymous, unaudited route answering Ok.
RouteSpec Spec(http::verb method, std::string pattern) {
  return {.method = method,
          .pattern = std::move(pattern),
          .auth = {.anonymous = true},
          .audit = AuditSpec::None(),
          .handler = Ok};
}

Response Send(const Router& router, http::verb m, const std::string& target) {
  Request req{m, target, 11};
  RequestContext ctx;
  SplitTarget(target, ctx.path, ctx.query);
  return router.Dispatch(req, ctx);
}

TEST(RouterTest, MatchesParametersAndWildcards) {
  Router r;
  r.Add(Spec(http::verb::get, "/"));
  r.Add(Spec(http::verb::get, "/registration/{id}/qr"));
  r.Add(Spec(http::verb::get, "/schema/**"));
  EXPECT_EQ(Send(r, http::verb::get, "/").body(), "/");
  EXPECT_EQ(Send(r, http::verb::get, "/registration/abc-_9/qr").body(),
            "/registration/{id}/qr|id=abc-_9");
  EXPECT_EQ(Send(r, http::verb::get, "/schema/meta/email.json").body(),
            "/schema/**|**=meta/email.json");
  EXPECT_EQ(Send(r, http::verb::get, "/registration/a%20b/qr").result_int(), 404);
  EXPECT_EQ(Send(r, http::verb::get, "/registration//qr").result_int(), 404);
  EXPECT_EQ(Send(r, http::verb::get, "/schema").result_int(), 404);
}

TEST(RouterTest, AnswersMethodNotAllowedWithAllow) {
  Router r;
  r.Add(Spec(http::verb::get, "/x"));
  r.Add(Spec(http::verb::post, "/x"));
  Response res = Send(r, http::verb::delete_, "/x");
  EXPECT_EQ(res.result_int(), 405);
  EXPECT_EQ(res[http::field::allow], "GET, POST");
}

TEST(RouterTest, QueryStringIsNotPartOfThePath) {
  Router r;
  r.Add(Spec(http::verb::post, "/account/{id}/token"));
  EXPECT_EQ(Send(r, http::verb::post, "/account/A1/token?public=true").result_int(), 200);
}

TEST(RouterDeathTest, ARouteWithoutAnAuditDecisionIsRefused) {
  Router r;
  RouteSpec undecided = Spec(http::verb::get, "/x");
  undecided.audit = {};
  EXPECT_DEATH(r.Add(std::move(undecided)), "invariant_failed");
  RouteSpec no_credentials = Spec(http::verb::get, "/y");
  no_credentials.auth = {};
  EXPECT_DEATH(r.Add(std::move(no_credentials)), "invariant_failed");
}

}  // namespace
}  // namespace otd::api
