#include "daemon/runtime.h"
#include "common/testing/status_matchers.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace otd::daemon {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

namespace fs = std::filesystem;

class PinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/otd-pin-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& content, mode_t mode) {
    std::string p = dir_ + "/" + name;
    std::ofstream(p) << content;
    ::chmod(p.c_str(), mode);
    return p;
  }
  std::string dir_;
};

TEST_F(PinTest, ReadsPinFileAndStripsNewline) {
  Config c;
  c.hsm_pin_file = Write("pin", "1234\n", 0600);
  auto pin = ReadPin(c);
  ASSERT_OK(pin);
  EXPECT_EQ(pin->RevealString(SecretAccess::Grant()), "1234");
}

TEST_F(PinTest, RefusesPinFileReadableByOthers) {
  Config c;
  c.hsm_pin_file = Write("pin", "1234", 0644);
  auto pin = ReadPin(c);
  ASSERT_THAT(pin, Not(IsOk()));
  EXPECT_EQ(pin.status().code(), Code::kInvalidArgument);
  EXPECT_NE(pin.status().message().find("hsm.pin_file"), std::string::npos);
}

TEST_F(PinTest, RefusesEmptyAndMissingPin) {
  Config c;
  c.hsm_pin_file = Write("pin", "\n", 0600);
  EXPECT_THAT(ReadPin(c), Not(IsOk()));
  c.hsm_pin_file = dir_ + "/absent";
  EXPECT_THAT(ReadPin(c), Not(IsOk()));
}

TEST_F(PinTest, FallsBackToTheSystemdCredential) {
  Write("pin", "cred-pin", 0400);
  ::setenv("CREDENTIALS_DIRECTORY", dir_.c_str(), 1);
  Config c;
  auto pin = ReadPin(c);
  ::unsetenv("CREDENTIALS_DIRECTORY");
  ASSERT_OK(pin);
  EXPECT_EQ(pin->RevealString(SecretAccess::Grant()), "cred-pin");
  EXPECT_THAT(ReadPin(c), Not(IsOk()));  // neither file nor credential
}

TEST_F(PinTest, PostgresPasswordFromFileOrCredentialOrNone) {
  Config c;
  c.storage_backend = "postgresql";
  c.storage_pg_conninfo = "host=/run/postgresql dbname=otd";
  c.storage_pg_pool_size = 3;
  auto none = PgOptionsFrom(c);  // no file, no credential: no password (peer/trust auth)
  ASSERT_OK(none);
  EXPECT_TRUE(none->password.empty());
  EXPECT_EQ(none->pool_size, 3u);
  EXPECT_EQ(none->conninfo, "host=/run/postgresql dbname=otd");

  Write("pgpassword", "cred-pw\n", 0400);
  ::setenv("CREDENTIALS_DIRECTORY", dir_.c_str(), 1);
  auto cred = PgOptionsFrom(c);
  ::unsetenv("CREDENTIALS_DIRECTORY");
  ASSERT_OK(cred);
  EXPECT_EQ(cred->password.RevealString(SecretAccess::Grant()), "cred-pw");

  c.storage_pg_password_file = Write("pw", "file-pw", 0600);
  auto file = PgOptionsFrom(c);
  ASSERT_OK(file);
  EXPECT_EQ(file->password.RevealString(SecretAccess::Grant()), "file-pw");

  c.storage_pg_password_file = Write("pw2", "x", 0644);
  auto loose = PgOptionsFrom(c);
  ASSERT_THAT(loose, Not(IsOk()));
  EXPECT_NE(loose.status().message().find("storage.postgresql.password_file"), std::string::npos);
  c.storage_pg_password_file = dir_ + "/absent";
  EXPECT_THAT(PgOptionsFrom(c), Not(IsOk()));  // a named file must exist
}

TEST(AccountsOptionsTest, RegistrationLimitsComeFromTheConfig) {
  Config c;
  c.accounts.registrations_per_address = 2;
  c.accounts.registrations_per_peer = 7;
  c.accounts.max_pending_registrations = 123;
  c.accounts.max_pending_registrations_per_peer = 5;
  c.storage_unauthenticated_write_limit_percent = 60;
  const service::RegistrationLimitsOptions r = AccountsOptionsFrom(c).registration_limits;
  EXPECT_EQ(r.address_rate_limit.free_failures, 2u);
  EXPECT_EQ(r.peer_rate_limit.free_failures, 7u);
  EXPECT_EQ(r.max_pending, 123u);
  EXPECT_EQ(r.max_pending_per_peer, 5u);
  EXPECT_EQ(r.max_map_percent, 60u);
  // The backoff shape of the e-mail routes: 60 s doubling to an hour.
  EXPECT_EQ(r.address_rate_limit.base_delay_seconds, 60);
  EXPECT_EQ(r.peer_rate_limit.max_delay_seconds, 3600);
  EXPECT_EQ(r.peer_rate_limit.forget_after_seconds, 3600);
  EXPECT_EQ(r.address_rate_limit.forget_after_seconds, 86'400);
}

TEST(AccountsOptionsTest, LimitsAreSharedOnPostgresqlOnly) {
  Config c;
  EXPECT_FALSE(AccountsOptionsFrom(c).shared_limits);  // LMDB: one process, counts in memory
  c.storage_backend = "postgresql";
  EXPECT_TRUE(AccountsOptionsFrom(c).shared_limits);
}

TEST(ExitCodeTest, ConfigProblemsMapTo78OthersTo69) {
  EXPECT_EQ(ExitCodeFor(InvalidArgument("x")), 78);
  EXPECT_EQ(ExitCodeFor(Unavailable("x")), 69);
  EXPECT_EQ(ExitCodeFor(PermissionDenied("x")), 69);
}

}  // namespace
}  // namespace otd::daemon
