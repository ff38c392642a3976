#include "api/browser_policy.h"

#include <gtest/gtest.h>

namespace otd::api {
namespace {

TEST(BrowserPolicyTest, OnlyPassiveMediaTypesAreInline) {
  for (const char* t : {"text/plain", "Text/Plain; charset=utf-8", "application/json",
                        "application/problem+json", "application/octet-stream", "image/png",
                        "image/jpeg", "audio/ogg", "video/mp4", "text/csv"}) {
    EXPECT_TRUE(IsInlineSafeMediaType(t)) << t;
  }
  for (const char* t : {"text/html",
                        "TEXT/HTML; charset=utf-8",
                        "application/xhtml+xml",
                        "image/svg+xml",
                        "text/xml",
                        "application/xml",
                        "application/rss+xml",
                        "text/javascript",
                        "application/javascript",
                        "application/ecmascript",
                        "text/css",
                        "application/pdf",
                        "text/xsl",
                        "multipart/x-mixed-replace",
                        "application/x-shockwave-flash",
                        "",
                        "text/plain, text/html",
                        "nonsense",
                        "audio/",
                        "audio/x, text/html",
                        "application/x+json, text/html",
                        "image/svg"}) {
    EXPECT_FALSE(IsInlineSafeMediaType(t)) << t;
  }
}

TEST(BrowserPolicyTest, AttachmentOnlyForActiveTypes) {
  Response html;
  AddPayloadDisposition(html, "text/html");
  EXPECT_EQ(html[http::field::content_disposition], "attachment");
  Response text;
  AddPayloadDisposition(text, "text/plain");
  EXPECT_TRUE(text[http::field::content_disposition].empty());
}

Request Req(http::verb method, std::initializer_list<std::pair<std::string, std::string>> h) {
  Request r{method, "/account/x/accessCode", 11};
  for (const auto& [k, v] : h) {
    r.insert(k, v);
  }
  return r;
}

TEST(BrowserPolicyTest, CrossSiteStateChangesAreRefused) {
  const std::string pub = "https://vault.example";
  // No browser headers: curl and server-side clients.
  EXPECT_FALSE(CrossSiteRefusal(Req(http::verb::post, {{"Host", "vault.example"}}), pub));
  // Same origin as public_url, with and without the default port; or as the request's Host.
  EXPECT_FALSE(CrossSiteRefusal(Req(http::verb::post, {{"Origin", "https://vault.example"}}), pub));
  EXPECT_FALSE(
      CrossSiteRefusal(Req(http::verb::delete_, {{"Origin", "https://VAULT.example:443"}}), pub));
  EXPECT_FALSE(CrossSiteRefusal(
      Req(http::verb::patch, {{"Origin", "https://127.0.0.1:8443"}, {"Host", "127.0.0.1:8443"}}),
      ""));
  EXPECT_FALSE(CrossSiteRefusal(
      Req(http::verb::post, {{"Origin", "http://localhost"}, {"Host", "localhost"}}), ""));
  // Another site, an opaque origin (sandboxed documents send "null"), garbage, two Origins.
  EXPECT_TRUE(CrossSiteRefusal(Req(http::verb::post, {{"Origin", "https://evil.example"}}), pub));
  EXPECT_TRUE(CrossSiteRefusal(
      Req(http::verb::post, {{"Origin", "null"}, {"Host", "vault.example"}}), pub));
  EXPECT_TRUE(CrossSiteRefusal(
      Req(http::verb::post, {{"Origin", "https://vault.example:444"}, {"Host", "vault.example"}}),
      pub));
  EXPECT_TRUE(CrossSiteRefusal(
      Req(http::verb::post, {{"Origin", "http://vault.example"}, {"Host", "other"}}), pub));
  EXPECT_TRUE(CrossSiteRefusal(Req(http::verb::post, {{"Origin", "https://vault.example"},
                                                      {"Origin", "https://vault.example"}}),
                               pub));
  EXPECT_TRUE(CrossSiteRefusal(Req(http::verb::post, {{"Sec-Fetch-Site", "cross-site"},
                                                      {"Origin", "https://vault.example"}}),
                               pub));
  // Reads are not state changes (the cookie is SameSite=Strict anyway).
  EXPECT_FALSE(CrossSiteRefusal(Req(http::verb::get, {{"Origin", "https://evil.example"}}), pub));
}

}  // namespace
}  // namespace otd::api
