#include "daemon/config.h"
#include "common/testing/status_matchers.h"
#include "daemon/config_schema.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace otd::daemon {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

const char* kMinimal = R"({
  "listen": {"unix": {"path": "/run/x.sock"}},
  "mail": {"spool_dir": "/var/mail/x"},
  "storage": {"path": "/var/lib/x"},
  "hsm": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "opentokend", "pin_file": "/p"}
})";

std::string Without(std::string json, const std::string& what, const std::string& with) {
  auto pos = json.find(what);
  EXPECT_NE(pos, std::string::npos) << what;
  return json.replace(pos, what.size(), with);
}

std::string ErrorOf(const std::string& json) {
  auto r = ParseConfig(json);
  EXPECT_THAT(r, Not(IsOk())) << json;
  return r.ok() ? "" : r.status().message();
}

TEST(ConfigTest, MinimalConfigGetsDefaults) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_EQ(c->unix_listen->path, "/run/x.sock");
  EXPECT_EQ(c->unix_listen->mode, 0660u);
  EXPECT_FALSE(c->tls_listen.has_value());
  EXPECT_EQ(c->limits.max_body_bytes, 1024u * 1024u);
  EXPECT_EQ(c->hsm_max_sessions, 8u);
  EXPECT_EQ(c->hsm_reinitialize_after_ms, 1000u);
}

TEST(ConfigTest, FullConfigParses) {
  auto c = ParseConfig(R"({
    "listen": {"unix": {"path": "/run/x.sock", "mode": "0600"},
               "tls": {"address": "0.0.0.0", "port": 9443, "certificate": "/c", "private_key": "/k"}},
    "storage": {"path": "/d", "map_size_mb": 64},
    "hsm": {"module": "/m.so", "token_label": "t", "max_sessions": 4, "reinitialize_after_ms": 0},
    "mail": {"spool_dir": "/mail", "from": "vault@example.com"},
    "public_url": "https://vault.example.com",
    "workers": 3, "log_level": "debug",
    "limits": {"max_body_bytes": 2048, "request_timeout_ms": 500, "max_connections": 10}
  })");
  ASSERT_OK(c);
  EXPECT_EQ(c->unix_listen->mode, 0600u);
  EXPECT_EQ(c->tls_listen->port, 9443);
  EXPECT_EQ(c->storage_map_size_mb, 64u);
  EXPECT_EQ(c->limits.max_body_bytes, 2048u);
  EXPECT_EQ(c->limits.max_connections, 10u);
  EXPECT_TRUE(c->hsm_pin_file.empty());  // the systemd credential is used then
  EXPECT_EQ(c->hsm_reinitialize_after_ms, 0u);
}

TEST(ConfigTest, ConnectionLimitsDefaultPerPeerToHalfAndAreNamed) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_EQ(c->limits.max_connections, 512u);
  EXPECT_EQ(c->limits.max_connections_per_peer, 256u);
  EXPECT_EQ(c->limits.handshake_timeout_ms, 3000u);
  auto with_limits = [](const std::string& limits) {
    return Without(kMinimal, R"("storage": {"path": "/var/lib/x"})",
                   R"("storage": {"path": "/var/lib/x"}, "limits": )" + limits);
  };
  // Absent: half of the configured max_connections (at least 1).
  c = ParseConfig(with_limits(R"({"max_connections": 10})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->limits.max_connections_per_peer, 5u);
  c = ParseConfig(with_limits(R"({"max_connections": 1})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->limits.max_connections_per_peer, 1u);
  c = ParseConfig(with_limits(
      R"({"max_connections": 10, "max_connections_per_peer": 10, "handshake_timeout_ms": 500})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->limits.max_connections_per_peer, 10u);
  EXPECT_EQ(c->limits.handshake_timeout_ms, 500u);
  EXPECT_EQ(ErrorOf(with_limits(R"({"max_connections": 10, "max_connections_per_peer": 11})")),
            "limits.max_connections_per_peer: must not be larger than limits.max_connections (10)");
  EXPECT_EQ(ErrorOf(with_limits(R"({"max_connections_per_peer": 0})")),
            "limits.max_connections_per_peer: must be an integer between 1 and 100000");
  EXPECT_EQ(ErrorOf(with_limits(R"({"handshake_timeout_ms": 99})")),
            "limits.handshake_timeout_ms: must be an integer between 100 and 600000");
}

TEST(ConfigTest, UnknownKeysAreNamed) {
  EXPECT_EQ(ErrorOf(Without(kMinimal, R"("storage": {"path": "/var/lib/x"})",
                            R"("storage": {"path": "/var/lib/x", "nosync": true})")),
            "storage.nosync: unknown configuration key");
  EXPECT_EQ(ErrorOf(Without(kMinimal, "\"listen\"", "\"verbose\": 1, \"listen\"")),
            "verbose: unknown configuration key");
}

TEST(ConfigTest, BadValuesAreNamed) {
  auto tls = [](const std::string& port) {
    return Without(
        kMinimal, R"({"unix": {"path": "/run/x.sock"}})",
        R"({"tls": {"port": )" + port + R"(, "certificate": "/c", "private_key": "/k"}})");
  };
  EXPECT_NE(ErrorOf(tls("0")).find("listen.tls.port"), std::string::npos);
  EXPECT_NE(ErrorOf(tls("70000")).find("listen.tls.port"), std::string::npos);
  EXPECT_NE(ErrorOf(tls("\"8443\"")).find("listen.tls.port"), std::string::npos);
  EXPECT_NE(ErrorOf(tls("-1")).find("listen.tls.port"), std::string::npos);
  EXPECT_NE(ErrorOf(Without(kMinimal, R"("/run/x.sock"})", R"("/run/x.sock", "mode": "0666"})"))
                .find("listen.unix.mode"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Without(kMinimal, R"("token_label": "opentokend")", R"("token_label": "")"))
                .find("hsm.token_label"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(Without(kMinimal, R"("pin_file": "/p")", R"("pin_file": "/p", "max_sessions": 0)"))
          .find("hsm.max_sessions"),
      std::string::npos);
}

TEST(ConfigTest, TokenSerialSelectsTheTokenAndMakesTheLabelOptional) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_TRUE(c->hsm_token_serial.empty());  // default: by label only
  auto both =
      ParseConfig(Without(kMinimal, R"("token_label": "opentokend")",
                          R"("token_label": "opentokend", "token_serial": "6c6de8a782f574e3")"));
  ASSERT_OK(both);
  EXPECT_EQ(both->hsm_token_serial, "6c6de8a782f574e3");
  EXPECT_EQ(both->hsm_token_label, "opentokend");
  auto serial_only = ParseConfig(
      Without(kMinimal, R"("token_label": "opentokend")", R"("token_serial": "0123456789abcdef")"));
  ASSERT_OK(serial_only);
  EXPECT_TRUE(serial_only->hsm_token_label.empty());
  EXPECT_EQ(ErrorOf(Without(kMinimal, R"("token_label": "opentokend",)", "")),
            "hsm.token_label: is required (unless hsm.token_serial is set)");
  for (const char* bad : {R"("")", R"("0123456789abcdef0")", R"("12 34")", "17"}) {
    const std::string with = std::string(R"("token_label": "opentokend", "token_serial": )") + bad;
    EXPECT_NE(
        ErrorOf(Without(kMinimal, R"("token_label": "opentokend")", with)).find("hsm.token_serial"),
        std::string::npos)
        << bad;
  }
}

TEST(ConfigTest, MissingSectionsAreNamed) {
  EXPECT_EQ(ErrorOf(R"({"storage": {"path": "/d"}, "hsm": {"module": "/m", "token_label": "t"}})"),
            "listen: is required");
  EXPECT_EQ(ErrorOf(Without(kMinimal, R"("mail": {"spool_dir": "/var/mail/x"},)", "")),
            "mail: is required");
  EXPECT_EQ(ErrorOf(Without(kMinimal, R"("storage": {"path": "/var/lib/x"},)", "")),
            "storage: is required");
  EXPECT_EQ(ErrorOf(Without(kMinimal, R"({"unix": {"path": "/run/x.sock"}})", "{}")),
            "listen: needs at least one of listen.unix or listen.tls");
}

TEST(ConfigTest, RejectsMalformedAndDuplicateJson) {
  EXPECT_NE(ErrorOf("{").find("config:"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"listen": {}, "listen": {}})").find("duplicate"), std::string::npos);
  EXPECT_NE(ErrorOf("[]").find("config:"), std::string::npos);
}

TEST(ConfigTest, MailNeedsExactlyOneTransport) {
  auto mail = [](const std::string& m) {
    return Without(kMinimal, R"("mail": {"spool_dir": "/var/mail/x"})", "\"mail\": " + m);
  };
  EXPECT_NE(ErrorOf(mail(R"({"spool_dir": "/m", "smtp_url": "smtp://h:25"})")).find("mail"),
            std::string::npos);
  EXPECT_NE(ErrorOf(mail(R"({"smtp_url": "http://h"})")).find("mail.smtp_url"), std::string::npos);
  EXPECT_NE(ErrorOf(mail(R"({"spool_dir": "/m", "from": "nobody"})")).find("mail.from"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(mail(R"({"smtp_url": "smtp://h", "require_tls": "yes"})")).find("mail.require_tls"),
      std::string::npos);
  EXPECT_OK(ParseConfig(
      mail(R"({"smtp_url": "smtp://h:2525", "from": "v@example.com", "require_tls": true})")));
}

TEST(ConfigTest, AccountsSectionIsBoundedAndNamed) {
  auto with = [](const std::string& a) {
    return Without(kMinimal, "\"listen\"", "\"accounts\": " + a + ", \"listen\"");
  };
  auto c = ParseConfig(with(R"({"session_lifetime_seconds": 900, "totp_issuer": "Vault"})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->accounts.session_lifetime_seconds, 900);
  EXPECT_EQ(c->accounts.registration_lifetime_seconds, 86400);
  EXPECT_NE(
      ErrorOf(with(R"({"session_lifetime_seconds": 5})")).find("accounts.session_lifetime_seconds"),
      std::string::npos);
  EXPECT_NE(ErrorOf(with(R"({"totp_issuer": "a:b"})")).find("accounts.totp_issuer"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with(R"({"lockout": 1})")).find("accounts.lockout"), std::string::npos);
}

TEST(ConfigTest, RegistrationLimitsHaveDefaultsAndBoundsNamingTheKey) {
  auto d = ParseConfig(kMinimal);
  ASSERT_OK(d);
  EXPECT_EQ(d->accounts.registrations_per_address, 4u);
  EXPECT_EQ(d->accounts.registrations_per_peer, 20u);
  EXPECT_EQ(d->accounts.max_pending_registrations, 10'000u);
  EXPECT_EQ(d->accounts.max_pending_registrations_per_peer, 10u);
  EXPECT_EQ(d->storage_unauthenticated_write_limit_percent, 90u);

  auto accounts = [](const std::string& a) {
    return Without(kMinimal, "\"listen\"", "\"accounts\": " + a + ", \"listen\"");
  };
  auto c = ParseConfig(accounts(R"({"registrations_per_address": 2, "registrations_per_peer": 500,
                                    "max_pending_registrations": 50000,
                                    "max_pending_registrations_per_peer": 100})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->accounts.registrations_per_address, 2u);
  EXPECT_EQ(c->accounts.registrations_per_peer, 500u);
  EXPECT_EQ(c->accounts.max_pending_registrations, 50'000u);
  EXPECT_EQ(c->accounts.max_pending_registrations_per_peer, 100u);
  for (const std::string key :
       {"registrations_per_address", "registrations_per_peer", "max_pending_registrations",
        "max_pending_registrations_per_peer"}) {
    for (const std::string bad : {"0", "\"5\"", "-1", "2.5"}) {
      EXPECT_NE(ErrorOf(accounts("{\"" + key + "\": " + bad + "}")).find("accounts." + key),
                std::string::npos)
          << key << " " << bad;
    }
  }
  EXPECT_NE(ErrorOf(accounts(R"({"registrations_per_address": 1001})")).find("between 1 and 1000"),
            std::string::npos);
  EXPECT_NE(ErrorOf(accounts(R"({"max_pending_registrations": 10000001})"))
                .find("accounts.max_pending_registrations"),
            std::string::npos);

  auto storage = [](const std::string& extra) {
    return Without(kMinimal, R"("storage": {"path": "/var/lib/x"})",
                   R"("storage": {"path": "/var/lib/x", )" + extra + "}");
  };
  auto s = ParseConfig(storage(R"("unauthenticated_write_limit_percent": 75)"));
  ASSERT_OK(s);
  EXPECT_EQ(s->storage_unauthenticated_write_limit_percent, 75u);
  // 100 would let registrations fill the map: there is always a reserve.
  for (const char* bad : {"0", "100", "-5", "50.5", "true"}) {
    EXPECT_NE(ErrorOf(storage(std::string(R"("unauthenticated_write_limit_percent": )") + bad))
                  .find("storage.unauthenticated_write_limit_percent: must be an integer between 1 "
                        "and 99"),
              std::string::npos)
        << bad;
  }
}

TEST(ConfigTest, StorageBackendAndPostgresqlKeys) {
  auto storage = [](const std::string& extra) {
    return Without(kMinimal, R"("storage": {"path": "/var/lib/x"})",
                   R"("storage": {"path": "/var/lib/x", )" + extra + "}");
  };
  auto d = ParseConfig(kMinimal);
  ASSERT_OK(d);
  EXPECT_EQ(d->storage_backend, "lmdb");
  EXPECT_EQ(d->storage_pg_pool_size, 8u);
  EXPECT_EQ(d->storage_pg_statement_timeout_ms, 5000u);
  EXPECT_EQ(d->storage_pg_connect_timeout_ms, 5000u);

  auto pg = ParseConfig(storage(
      R"("backend": "postgresql", "postgresql": {"conninfo": "host=a,b dbname=otd )"
      R"(target_session_attrs=read-write", "password_file": "/etc/otd/pgpw", "pool_size": 16, )"
      R"("statement_timeout_ms": 2000, "connect_timeout_ms": 3000})"));
  ASSERT_OK(pg);
  EXPECT_EQ(pg->storage_backend, "postgresql");
  EXPECT_EQ(pg->storage_pg_conninfo, "host=a,b dbname=otd target_session_attrs=read-write");
  EXPECT_EQ(pg->storage_pg_password_file, "/etc/otd/pgpw");
  EXPECT_EQ(pg->storage_pg_pool_size, 16u);
  EXPECT_EQ(pg->storage_pg_statement_timeout_ms, 2000u);
  EXPECT_EQ(pg->storage_pg_connect_timeout_ms, 3000u);
  EXPECT_OK(ParseConfig(storage(R"("backend": "postgresql", "postgresql": )"
                                R"({"conninfo": "postgresql:///otd?host=/run/postgresql"})")));

  EXPECT_EQ(ErrorOf(storage(R"("backend": "sqlite")")),
            R"(storage.backend: must be "lmdb" or "postgresql")");
  EXPECT_EQ(ErrorOf(storage(R"("backend": "postgresql")")),
            R"(storage.postgresql: is required with storage.backend "postgresql")");
  EXPECT_EQ(ErrorOf(storage(R"("postgresql": {"pool_size": 2})")),
            "storage.postgresql.conninfo: is required");
  // No password in the config, in either conninfo form; the message does not repeat it.
  for (const char* bad :
       {"host=h password=hunter2", "host=h password = 'hunter2'", "postgresql://u:hunter2@h/db"}) {
    std::string e =
        ErrorOf(storage(R"("postgresql": {"conninfo": ")" + std::string(bad) + R"("})"));
    EXPECT_NE(e.find("storage.postgresql.conninfo: must not contain a password"), std::string::npos)
        << bad << ": " << e;
    EXPECT_EQ(e.find("hunter2"), std::string::npos);
  }
  EXPECT_NE(ErrorOf(storage(R"("postgresql": {"conninfo": "host='unterminated"})"))
                .find("storage.postgresql.conninfo: is not a valid libpq connection string"),
            std::string::npos);
  EXPECT_EQ(ErrorOf(storage(R"("postgresql": {"conninfo": "dbname=otd", "tls": true})")),
            "storage.postgresql.tls: unknown configuration key");
  auto with = [&](const std::string& key, const std::string& v) {
    return ErrorOf(
        storage(R"("postgresql": {"conninfo": "dbname=otd", ")" + key + "\": " + v + "}"));
  };
  // At least 2: a scan holds one connection while its callback may read with another.
  EXPECT_EQ(with("pool_size", "1"),
            "storage.postgresql.pool_size: must be an integer between 2 and 256");
  EXPECT_EQ(with("pool_size", "257").find("storage.postgresql.pool_size"), 0u);
  EXPECT_EQ(with("statement_timeout_ms", "99"),
            "storage.postgresql.statement_timeout_ms: must be an integer between 100 and 600000");
  EXPECT_EQ(with("connect_timeout_ms", "999"),
            "storage.postgresql.connect_timeout_ms: must be an integer between 1000 and 600000");
  EXPECT_EQ(with("password_file", "\"\""),
            "storage.postgresql.password_file: must be a non-empty string");
}

TEST(ConfigTest, AccessTokensSectionIsBoundedAndTheEmailScopeCapped) {
  auto with = [](const std::string& a) {
    return Without(kMinimal, "\"listen\"", "\"access_tokens\": " + a + ", \"listen\"");
  };
  auto d = ParseConfig(kMinimal);
  ASSERT_OK(d);
  EXPECT_EQ(d->access_tokens.email_scope,
            (std::vector<std::string>{"account.read", "accessTokens.read", "accessTokens.delete"}));
  EXPECT_EQ(d->access_tokens.email_requests_per_address, 5u);
  auto c = ParseConfig(with(R"({"default_lifetime_seconds": 3600, "email_scope": ["account.read"],
                                "email_requests_per_address": 2})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->access_tokens.default_lifetime_seconds, 3600);
  EXPECT_EQ(c->access_tokens.email_scope, std::vector<std::string>{"account.read"});
  EXPECT_EQ(c->access_tokens.email_requests_per_address, 2u);
  // Scopes that mint or change credentials are never mailed.
  for (const char* scope : {"accessCodes.create", "accessCodes", "accessTokens",
                            "accessTokens.create", "accessTokens.update", "devices"}) {
    EXPECT_NE(ErrorOf(with(std::string(R"({"email_scope": [")") + scope + "\"]}"))
                  .find("access_tokens.email_scope"),
              std::string::npos)
        << scope;
  }
  EXPECT_NE(ErrorOf(with(R"({"email_scope": []})")).find("access_tokens.email_scope"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(with(R"({"email_scope": ["account", "account"]})")).find("access_tokens.email_scope"),
      std::string::npos);
  EXPECT_NE(
      ErrorOf(with(R"({"max_lifetime_seconds": 10})")).find("access_tokens.max_lifetime_seconds"),
      std::string::npos);
  EXPECT_NE(ErrorOf(with(R"({"default_lifetime_seconds": 7200, "max_lifetime_seconds": 3600})"))
                .find("access_tokens.default_lifetime_seconds"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with(R"({"scopes": 1})")).find("access_tokens.scopes"), std::string::npos);
}

TEST(ConfigTest, EmailTokensPerAccountDefaultsToFiveAndIsBounded) {
  auto with = [](const std::string& a) {
    return Without(kMinimal, "\"listen\"", "\"access_tokens\": " + a + ", \"listen\"");
  };
  auto d = ParseConfig(kMinimal);
  ASSERT_OK(d);
  EXPECT_EQ(d->access_tokens.email_tokens_per_account, 5u);
  auto c = ParseConfig(with(R"({"email_tokens_per_account": 1})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->access_tokens.email_tokens_per_account, 1u);
  c = ParseConfig(with(R"({"email_tokens_per_account": 100})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->access_tokens.email_tokens_per_account, 100u);
  for (const char* bad : {"0", "101", "-1", "2.5", "\"5\"", "true"}) {
    EXPECT_NE(ErrorOf(with(std::string(R"({"email_tokens_per_account": )") + bad + "}"))
                  .find("access_tokens.email_tokens_per_account"),
              std::string::npos)
        << bad;
  }
}

TEST(ConfigTest, MetricsListenOnASocketNextToTheApiSocketByDefault) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_TRUE(c->metrics.enabled);
  EXPECT_EQ(c->metrics.unix_path, "/run/opentokend-metrics.sock");
  EXPECT_EQ(c->metrics.unix_mode, 0600u);

  auto relative = ParseConfig(Without(kMinimal, "\"/run/x.sock\"", "\"x.sock\""));
  ASSERT_OK(relative);
  EXPECT_EQ(relative->metrics.unix_path, "opentokend-metrics.sock");
  auto nested = ParseConfig(Without(kMinimal, "\"/run/x.sock\"", "\"/run/opentokend/api.sock\""));
  ASSERT_OK(nested);
  EXPECT_EQ(nested->metrics.unix_path, "/run/opentokend/opentokend-metrics.sock");
}

TEST(ConfigTest, ConsoleIsOnByDefaultAndItsSectionIsStrict) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_TRUE(c->console_enabled);
  auto with = [](const std::string& v) {
    return Without(kMinimal, "\"listen\"", "\"console\": " + v + ", \"listen\"");
  };
  auto off = ParseConfig(with(R"({"enabled": false})"));
  ASSERT_OK(off);
  EXPECT_FALSE(off->console_enabled);
  auto on = ParseConfig(with(R"({"enabled": true})"));
  ASSERT_OK(on);
  EXPECT_TRUE(on->console_enabled);
  EXPECT_EQ(ErrorOf(with(R"({"enabled": "no"})")), "console.enabled: must be true or false");
  EXPECT_EQ(ErrorOf(with(R"({"path": "/ui/"})")), "console.path: unknown configuration key");
  EXPECT_EQ(ErrorOf(with("true")), "console: must be an object");
}

TEST(ConfigTest, MetricsSectionIsStrictAndNamed) {
  auto with = [](const std::string& m) {
    return Without(kMinimal, "\"listen\"", "\"metrics\": " + m + ", \"listen\"");
  };
  auto c = ParseConfig(with(R"({"unix": {"path": "/run/admin/m.sock", "mode": "0660"}})"));
  ASSERT_OK(c);
  EXPECT_EQ(c->metrics.unix_path, "/run/admin/m.sock");
  EXPECT_EQ(c->metrics.unix_mode, 0660u);
  auto off = ParseConfig(with(R"({"enabled": false})"));
  ASSERT_OK(off);
  EXPECT_FALSE(off->metrics.enabled);
  EXPECT_TRUE(off->metrics.unix_path.empty());

  EXPECT_EQ(ErrorOf(with(R"({"port": 9100})")), "metrics.port: unknown configuration key");
  EXPECT_EQ(ErrorOf(with(R"({"unix": {"path": "/m.sock", "owner": "x"}})")),
            "metrics.unix.owner: unknown configuration key");
  EXPECT_EQ(ErrorOf(with(R"({"enabled": "yes"})")), "metrics.enabled: must be true or false");
  EXPECT_EQ(ErrorOf(with(R"({"unix": []})")), "metrics.unix: must be an object");
  EXPECT_EQ(ErrorOf(with(R"({"unix": {"path": ""}})")),
            "metrics.unix.path: must be a non-empty string");
  // Scraping is for the service user (and a chosen group) only: no access for others.
  for (const char* mode : {"0606", "0644", "0666", "0x60", "1777", "06000"}) {
    EXPECT_NE(ErrorOf(with(std::string(R"({"unix": {"mode": ")") + mode + "\"}}"))
                  .find("metrics.unix.mode"),
              std::string::npos)
        << mode;
  }
  EXPECT_EQ(ErrorOf(with(R"({"unix": {"path": "/run/x.sock"}})")),
            "metrics.unix.path: must differ from listen.unix.path");
  EXPECT_NE(ErrorOf(with(R"({"unix": {"path": "/)" + std::string(100, 'm') + R"("}})"))
                .find("metrics.unix.path"),
            std::string::npos);
  // A default that would be too long is reported under the metrics key too.
  const std::string deep = "/" + std::string(80, 'd') + "/api.sock";
  EXPECT_NE(
      ErrorOf(Without(kMinimal, "\"/run/x.sock\"", "\"" + deep + "\"")).find("metrics.unix.path"),
      std::string::npos);
}

TEST(ConfigTest, MetricsWithoutAUnixListenerNeedAnExplicitPath) {
  const std::string tls_only = Without(kMinimal, R"({"unix": {"path": "/run/x.sock"}})",
                                       R"({"tls": {"certificate": "/c", "private_key": "/k"}})");
  EXPECT_EQ(ErrorOf(tls_only),
            "metrics.unix.path: is required when there is no listen.unix (or set metrics.enabled "
            "to false)");
  auto with = [&](const std::string& m) {
    return Without(tls_only, "\"listen\"", "\"metrics\": " + m + ", \"listen\"");
  };
  auto explicit_path = ParseConfig(with(R"({"unix": {"path": "/run/m.sock"}})"));
  ASSERT_OK(explicit_path);
  EXPECT_EQ(explicit_path->metrics.unix_path, "/run/m.sock");
  EXPECT_OK(ParseConfig(with(R"({"enabled": false})")));
}

// --- metrics.tcp (issue 18 part 5) ---
TEST(ConfigTest, MetricsTcpIsOffByDefaultAndStrict) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_FALSE(c->metrics.tcp.has_value());
  auto with = [](const std::string& m) {
    return Without(kMinimal, "\"listen\"", "\"metrics\": " + m + ", \"listen\"");
  };
  auto on = ParseConfig(with(R"({"tcp": {"port": 9464}})"));
  ASSERT_OK(on);
  ASSERT_TRUE(on->metrics.tcp.has_value());
  EXPECT_EQ(on->metrics.tcp->address, "127.0.0.1");
  EXPECT_EQ(on->metrics.tcp->port, 9464);
  EXPECT_TRUE(on->metrics.tcp->bearer_token_file.empty());
  auto full = ParseConfig(with(
      R"({"tcp": {"address": "::1", "port": 1, "bearer_token_file": "/etc/o/metrics-token"}})"));
  ASSERT_OK(full);
  EXPECT_EQ(full->metrics.tcp->address, "::1");
  EXPECT_EQ(full->metrics.tcp->bearer_token_file, "/etc/o/metrics-token");

  EXPECT_EQ(ErrorOf(with(R"({"tcp": {}})")),
            "metrics.tcp.port: is required (remove metrics.tcp to turn the TCP listener off)");
  EXPECT_EQ(ErrorOf(with(R"({"tcp": {"port": 0}})")),
            "metrics.tcp.port: must be an integer between 1 and 65535");
  EXPECT_EQ(ErrorOf(with(R"({"tcp": {"port": 65536}})")),
            "metrics.tcp.port: must be an integer between 1 and 65535");
  EXPECT_EQ(ErrorOf(with(R"({"tcp": {"port": 9464, "tls": true}})")),
            "metrics.tcp.tls: unknown configuration key");
  EXPECT_EQ(ErrorOf(with(R"({"tcp": {"port": 9464, "bearer_token_file": "t"}})")),
            "metrics.tcp.bearer_token_file: must be an absolute path");
  EXPECT_EQ(ErrorOf(with(R"({"tcp": {"port": 9464, "address": ""}})")),
            "metrics.tcp.address: must be a non-empty string");
  EXPECT_EQ(ErrorOf(with(R"({"enabled": false, "tcp": {"port": 9464}})")),
            "metrics.tcp: needs metrics.enabled");
}

// --- listen.trusted_proxies, listen.forwarded_header (issue 18 part 6) ---
TEST(ConfigTest, TrustedProxiesAreNoneByDefaultAndStrict) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_TRUE(c->trusted_proxies.empty());
  EXPECT_EQ(c->forwarded_header, "x-forwarded-for");
  auto with = [](const std::string& extra) {
    return Without(kMinimal, R"("unix": {"path": "/run/x.sock"})",
                   R"("unix": {"path": "/run/x.sock"}, )" + extra);
  };
  auto on = ParseConfig(with(R"("trusted_proxies": ["uid:33", "127.0.0.1", "fd00::/8"],
                                "forwarded_header": "forwarded")"));
  ASSERT_OK(on);
  EXPECT_EQ(on->trusted_proxies, (std::vector<std::string>{"uid:33", "127.0.0.1", "fd00::/8"}));
  EXPECT_EQ(on->forwarded_header, "forwarded");
  EXPECT_OK(ParseConfig(with(R"("trusted_proxies": [])")));

  const std::string list =
      "listen.trusted_proxies: must be an array of at most 256 non-empty strings";
  EXPECT_EQ(ErrorOf(with(R"("trusted_proxies": "10.0.0.0/8")")), list);
  EXPECT_EQ(ErrorOf(with(R"("trusted_proxies": [""])")), list);
  EXPECT_EQ(ErrorOf(with(R"("trusted_proxies": [8])")), list);
  std::string many = "\"trusted_proxies\": [";
  for (int i = 0; i < 257; ++i) {
    many += (i ? ", " : "") + std::string("\"uid:") + std::to_string(i) + "\"";
  }
  EXPECT_EQ(ErrorOf(with(many + "]")), list);
  EXPECT_EQ(ErrorOf(with(R"("trusted_proxies": ["unix", "10.0.0.0/33"])")),
            "listen.trusted_proxies: entry 1 (\"10.0.0.0/33\"): prefix length must be 0..32");
  EXPECT_EQ(ErrorOf(with(R"("trusted_proxies": ["10.0.0.1/8"])")),
            "listen.trusted_proxies: entry 0 (\"10.0.0.1/8\"): has bits set after the prefix "
            "length (write the network address)");
  EXPECT_EQ(ErrorOf(with(R"("trusted_proxies": ["*"])")),
            "listen.trusted_proxies: entry 0 (\"*\"): must be \"unix\", \"uid:<n>\", or an IPv4 "
            "or IPv6 address or CIDR");
  EXPECT_EQ(ErrorOf(with(R"("trusted_proxies": ["uid:www-data"])")),
            "listen.trusted_proxies: entry 0 (\"uid:www-data\"): a uid must be a decimal number "
            "(uid:33)");
  EXPECT_EQ(ErrorOf(with(R"("trusted_proxies": ["unix", "unix"])")),
            "listen.trusted_proxies: entry 1 (\"unix\"): listed twice");
  EXPECT_EQ(ErrorOf(with(R"("forwarded_header": "X-Real-IP")")),
            "listen.forwarded_header: must be \"x-forwarded-for\" or \"forwarded\"");
  EXPECT_EQ(ErrorOf(with(R"("forwarded_header": "")")),
            "listen.forwarded_header: must be a non-empty string");
}

// --- log.* (issue 18 part 7) ---
TEST(ConfigTest, LogSectionHasDefaultsAndIsStrict) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_EQ(c->log_priority_prefix, "auto");
  EXPECT_EQ(c->log_access, "on");
  EXPECT_EQ(c->log_access_sample_rate, 100u);
  EXPECT_EQ(c->log_access_slow_ms, 1000u);
  auto with = [](const std::string& l) {
    return Without(kMinimal, "\"listen\"", "\"log\": " + l + ", \"listen\"");
  };
  auto set = ParseConfig(with(R"({"priority_prefix": "on", "access": "sampled",
                                  "access_sample_rate": 10, "access_slow_ms": 250})"));
  ASSERT_OK(set);
  EXPECT_EQ(set->log_priority_prefix, "on");
  EXPECT_EQ(set->log_access, "sampled");
  EXPECT_EQ(set->log_access_sample_rate, 10u);
  EXPECT_EQ(set->log_access_slow_ms, 250u);
  EXPECT_EQ(ErrorOf(with(R"({"priority_prefix": "yes"})")),
            "log.priority_prefix: must be one of auto, on, off");
  EXPECT_EQ(ErrorOf(with(R"({"access": "some"})")), "log.access: must be one of on, off, sampled");
  EXPECT_EQ(ErrorOf(with(R"({"access_sample_rate": 0})")),
            "log.access_sample_rate: must be an integer between 1 and 1000000");
  EXPECT_EQ(ErrorOf(with(R"({"access_slow_ms": 0})")),
            "log.access_slow_ms: must be an integer between 1 and 600000");
  EXPECT_EQ(ErrorOf(with(R"({"level": "info"})")), "log.level: unknown configuration key");
}

TEST(ConfigTest, PublicUrlMustBeHttpWithoutTrailingSlash) {
  EXPECT_NE(ErrorOf(Without(kMinimal, "\"listen\"", R"("public_url": "ftp://x", "listen")"))
                .find("public_url"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Without(kMinimal, "\"listen\"", R"("public_url": "https://x/", "listen")"))
                .find("public_url"),
            std::string::npos);
}

TEST(ConfigTest, AuditNodeKeys) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_EQ(c->audit_node_id, "");
  EXPECT_EQ(c->audit_anchor_interval_seconds, 60);
  auto audit = [](const std::string& body) {
    return Without(kMinimal, R"("storage": {"path": "/var/lib/x"})",
                   R"("storage": {"path": "/var/lib/x"}, "audit": {)" + body + "}");
  };
  auto set = ParseConfig(audit(R"("node_id": "db-1.a_b", "anchor_interval_seconds": 0)"));
  ASSERT_OK(set);
  EXPECT_EQ(set->audit_node_id, "db-1.a_b");
  EXPECT_EQ(set->audit_anchor_interval_seconds, 0);
  EXPECT_NE(ErrorOf(audit(R"("node_id": "a/b")")).find("audit.node_id"), std::string::npos);
  EXPECT_NE(ErrorOf(audit(R"("node_id": ")" + std::string(65, 'a') + "\"")).find("audit.node_id"),
            std::string::npos);
  EXPECT_NE(ErrorOf(audit(R"("anchor_interval_seconds": -1)")).find("anchor_interval_seconds"),
            std::string::npos);
  EXPECT_NE(ErrorOf(audit(R"("anchor_interval_seconds": 86401)")).find("anchor_interval_seconds"),
            std::string::npos);
}

// --- issue 18 part 4: config path, duplicate keys, the schema ---------------------------------

TEST(ConfigPathTest, FlagThenEnvironmentThenDefault) {
  EXPECT_EQ(ResolveConfigPath("/flag.json", "/env.json"), "/flag.json");
  EXPECT_EQ(ResolveConfigPath("", "/env.json"), "/env.json");
  EXPECT_EQ(ResolveConfigPath("", ""), "/etc/opentokend/opentokend.json");
  EXPECT_EQ(ResolveConfigPath("", nullptr), "/etc/opentokend/opentokend.json");
}

TEST(ConfigTest, DuplicateKeyIsNamed) {
  EXPECT_EQ(
      ErrorOf(Without(kMinimal, R"("pin_file": "/p")", R"("pin_file": "/p", "module": "/m")")),
      "config: JSON object has a duplicate key: hsm.module");
  EXPECT_EQ(ErrorOf(Without(kMinimal, "\"listen\"", "\"workers\": 1, \"workers\": 2, \"listen\"")),
            "config: JSON object has a duplicate key: workers");
}

// Every key the loader knows, each set to a non-default value the loader accepts.
const char* kEveryKey = R"({
  "listen": {"unix": {"path": "/run/x.sock", "mode": "0600"},
             "tls": {"address": "0.0.0.0", "port": 9443, "certificate": "/c", "private_key": "/k"},
             "trusted_proxies": ["uid:33", "unix", "10.0.0.0/8", "2001:db8::/32", "192.0.2.7"],
             "forwarded_header": "forwarded"},
  "storage": {"path": "/d", "backend": "postgresql", "map_size_mb": 64,
              "unauthenticated_write_limit_percent": 80,
              "postgresql": {"conninfo": "dbname=otd", "password_file": "/pw", "pool_size": 4,
                             "statement_timeout_ms": 1000, "connect_timeout_ms": 2000}},
  "hsm": {"module": "/m.so", "token_label": "t", "token_serial": "abc123", "pin_file": "/p",
          "max_sessions": 4, "reinitialize_after_ms": 0},
  "mail": {"smtp_url": "smtps://relay:465", "from": "v@example.com", "outbox_dir": "/o",
           "require_tls": true, "ca_file": "/ca"},
  "accounts": {"registration_lifetime_seconds": 600, "challenge_lifetime_seconds": 60,
               "session_lifetime_seconds": 300, "totp_issuer": "Vault",
               "login_free_failures": 3, "login_base_delay_seconds": 2,
               "login_max_delay_seconds": 60, "login_peer_free_failures": 10,
               "registrations_per_address": 2, "registrations_per_peer": 5,
               "max_pending_registrations": 100, "max_pending_registrations_per_peer": 3},
  "public_url": "https://vault.example.com",
  "workers": 3, "log_level": "debug",
  "signature": {"past_seconds": 120, "future_seconds": 30},
  "access_codes": {"lifetime_seconds": 3600},
  "tokens": {"max_lifetime_seconds": 86400},
  "access_tokens": {"default_lifetime_seconds": 3600, "max_lifetime_seconds": 7200,
                    "email_lifetime_seconds": 3600, "email_scope": ["account.read"],
                    "email_requests_per_address": 2, "email_requests_per_peer": 5,
                    "email_tokens_per_account": 2},
  "audit": {"path": "/log/audit.log", "node_id": "node-1", "anchor_interval_seconds": 30},
  "metrics": {"enabled": true, "unix": {"path": "/run/m.sock", "mode": "0660"}},
  "console": {"enabled": false},
  "limits": {"max_header_bytes": 4096, "max_body_bytes": 4096, "max_json_body_bytes": 1024,
             "request_timeout_ms": 500, "idle_timeout_ms": 500, "write_timeout_ms": 500,
             "handshake_timeout_ms": 500, "max_connections": 10, "max_connections_per_peer": 5}
})";

TEST(ConfigSchemaTest, EveryKeyTheLoaderKnowsIsInTheSchema) {
  ASSERT_OK(ParseConfig(kEveryKey));  // ParseConfig checks the schema too
  ASSERT_OK(ParseConfig(kMinimal));
  auto doc = nlohmann::json::parse(kEveryKey);
  EXPECT_OK(ValidateConfigSchema(doc));
  // The schema is a draft 7 document the API's validator compiles.
  auto schema = nlohmann::json::parse(ConfigSchemaDocument());
  EXPECT_EQ(schema["$schema"], "http://json-schema.org/draft-07/schema#");
}

TEST(ConfigSchemaTest, SchemaErrorsNameTheKey) {
  auto doc = nlohmann::json::parse(kEveryKey);
  auto with = [&](const std::string& pointer, nlohmann::json value) {
    nlohmann::json d = doc;
    d[nlohmann::json::json_pointer(pointer)] = std::move(value);
    Status s = ValidateConfigSchema(d);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << pointer;
    return s.message();
  };
  EXPECT_EQ(with("/listen/tls/port", 70000).rfind("listen.tls.port: ", 0), 0u);
  EXPECT_EQ(with("/limits/max_connections", "10").rfind("limits.max_connections: ", 0), 0u);
  EXPECT_EQ(with("/hsm/bogus", 1), "hsm.bogus: unknown field");
  EXPECT_EQ(with("/log_level", "loud").rfind("log_level: ", 0), 0u);
  EXPECT_EQ(with("/hsm/token_serial", "has space").rfind("hsm.token_serial: ", 0), 0u);
  nlohmann::json missing = doc;
  missing.erase("hsm");
  Status s = ValidateConfigSchema(missing);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("hsm"), std::string::npos) << s.message();
}

}  // namespace

// --- audit segments (issue 18 part 2) ---
TEST(ConfigTest, AuditSegmentKeys) {
  auto c = ParseConfig(kMinimal);
  ASSERT_OK(c);
  EXPECT_EQ(c->audit_directory, "");
  EXPECT_EQ(c->audit_segment_max_bytes, 64ull * 1024 * 1024);
  EXPECT_EQ(c->audit_segment_max_seconds, 86400);
  auto audit = [](const std::string& body) {
    return Without(kMinimal, R"("storage": {"path": "/var/lib/x"})",
                   R"("storage": {"path": "/var/lib/x"}, "audit": {)" + body + "}");
  };
  auto set = ParseConfig(audit(R"("directory": "/var/log/opentokend", "segment_max_bytes": 4096, )"
                               R"("segment_max_seconds": 0)"));
  ASSERT_OK(set);
  EXPECT_EQ(set->audit_directory, "/var/log/opentokend");
  EXPECT_EQ(set->audit_segment_max_bytes, 4096u);
  EXPECT_EQ(set->audit_segment_max_seconds, 0);
  EXPECT_FALSE(set->audit_syslog);
  auto syslog = ParseConfig(audit(R"("syslog": true)"));
  ASSERT_OK(syslog);
  EXPECT_TRUE(syslog->audit_syslog);
  EXPECT_NE(ErrorOf(audit(R"("syslog": "yes")")).find("audit.syslog"), std::string::npos);
  EXPECT_NE(ErrorOf(audit(R"("directory": "log")")).find("audit.directory"), std::string::npos);
  EXPECT_NE(ErrorOf(audit(R"("directory": "/a", "path": "/b/audit.log")")).find("audit.directory"),
            std::string::npos);
  EXPECT_NE(ErrorOf(audit(R"("segment_max_bytes": 4095)")).find("audit.segment_max_bytes"),
            std::string::npos);
  EXPECT_NE(ErrorOf(audit(R"("segment_max_seconds": -1)")).find("audit.segment_max_seconds"),
            std::string::npos);
  EXPECT_NE(ErrorOf(audit(R"("segment_max_seconds": 31536001)")).find("segment_max_seconds"),
            std::string::npos);
}
// --- end audit segments ---

}  // namespace otd::daemon
