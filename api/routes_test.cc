// The API's route table as built for the daemon: every route has an audit decision, the security
// events are the documented ones (docs/api-notes.md "Audit trail"), and the discovery links are
// the table's.

#include "api/routes.h"

#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "api/schemas.h"
#include "service/testing/service_env.h"

namespace otd::api {
namespace {

class RoutesTest : public ::testing::Test, public service::ServiceEnv {
 protected:
  std::unique_ptr<SchemaValidator> schemas_ = std::move(SchemaValidator::Create()).value();
  service::MailRequestQueue queue_{*vault_, *store_, clock_, log_};
  service::Accounts accounts_{*vault_, *store_, *mailer_, clock_, log_, {}};
  service::AccessCodes codes_{*vault_, *token_, *store_, clock_, log_, {}};
  service::Tokens tokens_{*vault_, *store_, clock_, log_, {}};
  service::AccessTokens access_tokens_{*vault_, *store_, *mailer_, queue_, clock_, log_, {}};
  Services services_{.vault = *vault_,
                     .accounts = accounts_,
                     .access_codes = codes_,
                     .tokens = tokens_,
                     .access_tokens = access_tokens_,
                     .schemas = *schemas_,
                     .clock = clock_,
                     .log = log_};
};

TEST_F(RoutesTest, EveryRouteHasAnAuditDecisionAndTheEventsAreTheDocumentedOnes) {
  std::unique_ptr<Router> router = BuildApiRouter(services_);
  std::map<std::string, std::string> events;  // "METHOD pattern" -> event
  std::set<std::string> routes;
  for (const RouteSpec* r : router->Routes()) {
    const std::string key = std::string(http::to_string(r->method)) + " " + r->pattern;
    EXPECT_TRUE(routes.insert(key).second) << "declared twice: " << key;
    ASSERT_NE(r->audit.kind, AuditSpec::Kind::kUndecided) << key;
    if (r->audit.kind == AuditSpec::Kind::kEvent) {
      events[key] = std::string(r->audit.event);
    }
  }
  const std::map<std::string, std::string> documented = {
      {"POST /registration", "registration_started"},
      {"POST /registration/{id}", "registration_secured"},
      {"GET /registration/{id}/confirm/{code}", "registration_confirmed"},
      {"POST /account/{id}/login", "login"},
      {"GET /account/{id}/logout", "logout"},
      {"POST /account/{id}/logout", "logout"},
      {"POST /account/{id}/accessCode", "access_code_created"},
      {"DELETE /account/{id}/accessCode/{code}", "access_code_revoked"},
      {"POST /account/{id}/token", "tokenize"},
      {"GET /account/{id}/token/{tokenId}", "detokenize"},
      {"DELETE /account/{id}/token/{tokenId}", "token_deleted"},
      {"POST /access-tokens", "access_token_created"},
      {"PATCH /access-tokens/{accessTokenId}", "access_token_updated"},
      {"DELETE /access-tokens/{accessTokenId}", "access_token_revoked"},
      {"POST /v1/access_tokens", "access_token_mailed"},
      {"POST /v1/access_tokens/delete", "access_token_deletion_code_mailed"},
      {"DELETE /v1/access_tokens", "access_token_mail_revoked"},
  };
  EXPECT_EQ(events, documented);
  // Only detokenize fails closed.
  for (const RouteSpec* r : router->Routes()) {
    EXPECT_EQ(r->audit.fail_closed,
              r->pattern == "/account/{id}/token/{tokenId}" && r->method == http::verb::get)
        << r->pattern;
  }
}

TEST_F(RoutesTest, DiscoveryAdvertisesTheTablesServiceLinks) {
  std::unique_ptr<Router> router = BuildApiRouter(services_);
  std::set<std::string> titles;
  for (const Link& l : router->AdvertisedLinks(Advertised::Where::kDiscovery)) {
    titles.insert(l.title);
  }
  EXPECT_EQ(titles,
            (std::set<std::string>{"health-check", "openapi", "registration-register",
                                   "account-login", "account-token-create", "account-accessTokens",
                                   "access-tokens-email", "access-tokens-email-delete"}));
  std::set<std::string> account;
  for (const Link& l : router->AdvertisedLinks(Advertised::Where::kAccount)) {
    account.insert(l.title);
  }
  EXPECT_EQ(account, (std::set<std::string>{"account-accessCode", "account-logout",
                                            "account-accessTokens", "account-token-create"}));
}

// Issue 17: schema/openapi.json (as embedded and served at /openapi.json) describes exactly the
// routes of the table: every (method, path template) of one is in the other. The table's final
// `**` is the description's `{path}` (OpenAPI has no multi-segment parameter); /console/ routes
// (the web console, issue 19) are not part of the API description.
TEST_F(RoutesTest, TheOpenApiDescriptionHasExactlyTheRoutesOfTheTable) {
  const auto doc = nlohmann::json::parse(OpenApiDocument());
  ASSERT_EQ(doc.at("openapi").get<std::string>().rfind("3.1.", 0), 0u);
  std::set<std::string> described;
  for (const auto& [path, item] : doc.at("paths").items()) {
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters" || method == "summary" || method == "description") {
        continue;
      }
      std::string upper = method;
      for (char& c : upper) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
      EXPECT_TRUE(described.insert(upper + " " + path).second) << upper << " " << path;
      EXPECT_TRUE(op.contains("operationId")) << upper << " " << path;
    }
  }
  std::set<std::string> table;
  std::unique_ptr<Router> router = BuildApiRouter(services_);
  for (const RouteSpec* r : router->Routes()) {
    std::string pattern = r->pattern;
    if (pattern.rfind("/console/", 0) == 0 || pattern == "/console") {
      continue;
    }
    if (pattern.size() >= 2 && pattern.compare(pattern.size() - 2, 2, "**") == 0) {
      pattern.replace(pattern.size() - 2, 2, "{path}");
    }
    table.insert(std::string(http::to_string(r->method)) + " " + pattern);
  }
  EXPECT_EQ(described, table);
}

TEST_F(RoutesTest, OpenApiPathParametersAreDeclared) {
  const auto doc = nlohmann::json::parse(OpenApiDocument());
  for (const auto& [path, item] : doc.at("paths").items()) {
    for (const auto& [method, op] : item.items()) {
      std::set<std::string> in_path;
      for (size_t open = path.find('{'); open != std::string::npos;
           open = path.find('{', open + 1)) {
        in_path.insert(path.substr(open + 1, path.find('}', open) - open - 1));
      }
      std::set<std::string> declared;
      for (const auto& p : op.value("parameters", nlohmann::json::array())) {
        if (p.at("in") == "path") {
          declared.insert(p.at("name").get<std::string>());
        }
      }
      EXPECT_EQ(in_path, declared) << method << " " << path;
    }
  }
}

TEST_F(RoutesTest, TheConsoleIsAnonymousUnauditedAndOnlyThereWhenEnabled) {
  auto console_routes = [](const Router& router) {
    std::vector<const RouteSpec*> out;
    for (const RouteSpec* r : router.Routes()) {
      if (r->pattern.rfind("/console", 0) == 0) {
        out.push_back(r);
      }
    }
    return out;
  };
  EXPECT_TRUE(console_routes(*BuildApiRouter(services_)).empty());
  Services enabled = services_;
  enabled.console_enabled = true;
  std::unique_ptr<Router> router = BuildApiRouter(enabled);
  std::vector<const RouteSpec*> routes = console_routes(*router);
  ASSERT_EQ(routes.size(), 3u);
  for (const RouteSpec* r : routes) {
    EXPECT_EQ(r->method, http::verb::get) << r->pattern;
    EXPECT_TRUE(r->auth.anonymous) << r->pattern;
    EXPECT_TRUE(r->auth.scope.empty()) << r->pattern;
    EXPECT_EQ(r->audit.kind, AuditSpec::Kind::kNone) << r->pattern;
  }
  std::set<std::string> titles;
  for (const Link& l : router->AdvertisedLinks(Advertised::Where::kDiscovery)) {
    titles.insert(l.title);
  }
  EXPECT_TRUE(titles.count("console"));
}

}  // namespace
}  // namespace otd::api
