#include "api/router.h"

#include <gtest/gtest.h>

namespace otd::api {
namespace {

Response Ok(const Request& req, RequestContext& ctx) {
  Response r{http::status::ok, req.version()};
  std::string body = ctx.route;
  for (const auto& [k, v] : ctx.params) {
    body += "|" + k + "=" + v;
  }
  r.body() = body;
  return r;
}

Response Call(const Router& router, http::verb m, const std::string& target) {
  Request req{m, target, 11};
  RequestContext ctx;
  SplitTarget(target, ctx.path, ctx.query);
  return router.Dispatch(req, ctx);
}

TEST(RouterTest, MatchesParametersAndWildcards) {
  Router r;
  r.Add(http::verb::get, "/", Ok);
  r.Add(http::verb::get, "/registration/{id}/qr", Ok);
  r.Add(http::verb::get, "/schema/**", Ok);
  EXPECT_EQ(Call(r, http::verb::get, "/").body(), "/");
  EXPECT_EQ(Call(r, http::verb::get, "/registration/abc-_9/qr").body(),
            "/registration/{id}/qr|id=abc-_9");
  EXPECT_EQ(Call(r, http::verb::get, "/schema/meta/email.json").body(),
            "/schema/**|**=meta/email.json");
  EXPECT_EQ(Call(r, http::verb::get, "/registration/a%20b/qr").result_int(), 404);
  EXPECT_EQ(Call(r, http::verb::get, "/registration//qr").result_int(), 404);
  EXPECT_EQ(Call(r, http::verb::get, "/schema").result_int(), 404);
}

TEST(RouterTest, AnswersMethodNotAllowedWithAllow) {
  Router r;
  r.Add(http::verb::get, "/x", Ok);
  r.Add(http::verb::post, "/x", Ok);
  Response res = Call(r, http::verb::delete_, "/x");
  EXPECT_EQ(res.result_int(), 405);
  EXPECT_EQ(res[http::field::allow], "GET, POST");
}

TEST(RouterTest, QueryStringIsNotPartOfThePath) {
  Router r;
  r.Add(http::verb::post, "/account/{id}/token", Ok);
  EXPECT_EQ(Call(r, http::verb::post, "/account/A1/token?public=true").result_int(), 200);
}

}  // namespace
}  // namespace otd::api
