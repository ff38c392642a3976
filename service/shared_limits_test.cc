// SharedLimits and the limiters over it (service/rate_limiter.h): two limiter instances over one
// store stand for two daemons ("nodes") on one database; they must share one count. Runs against
// LMDB and a throwaway PostgreSQL server (skipped where one cannot be started).
#include "service/shared_limits.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "common/log.h"
#include "common/testing/status_matchers.h"
#include "crypto/hash.h"
#include "service/rate_limiter.h"
#include "service/registration_limits.h"
#include "service/tables.h"
#include "store/lmdb_store.h"
#include "store/pg_store.h"
#include "store/testing/pg_server.h"
#include "tests/support/temp_dir.h"

namespace otd::service {
namespace {

// Stands in for the token's keyed hash (the limiter logic does not depend on which hash).
Result<Bytes> FakeKeyedHash(std::string_view limiter, std::string_view key) {
  std::string in = "test-secret|" + std::string(limiter) + "|" + std::string(key);
  return crypto::Sha256(ByteView(reinterpret_cast<const uint8_t*>(in.data()), in.size()));
}

store::testing::PgTestServer* g_server = nullptr;
std::string g_skip;

[[maybe_unused]] ::testing::Environment* const kEnv =
    ::testing::AddGlobalTestEnvironment(new store::testing::PgTestEnvironment(&g_server, &g_skip));

class SharedLimitsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "lmdb") {
      store::LmdbOptions o;
      o.path = dir_.path() + "/data";
      o.map_size_bytes = 16ull << 20;
      o.tables = AllTables();
      auto s = store::LmdbStore::Open(o, &log_);
      ASSERT_OK(s);
      store_ = std::move(s).value();
    } else {
      if (g_server == nullptr) {
        GTEST_SKIP() << g_skip;
      }
      store::PgOptions o;
      o.conninfo = g_server->CreateDatabase();
      ASSERT_FALSE(o.conninfo.empty());
      o.pool_size = 4;
      o.statement_timeout_ms = 5000;
      o.connect_timeout_ms = 2000;
      o.tables = AllTables();
      ASSERT_OK(store::PgMigrate(o));
      auto s = store::PgStore::Open(std::move(o), &log_);
      ASSERT_OK(s);
      store_ = std::move(s).value();
    }
    node_a_ = std::make_unique<SharedLimits>(*store_, FakeKeyedHash);
    node_b_ = std::make_unique<SharedLimits>(*store_, FakeKeyedHash);
  }
  size_t Records() {
    size_t n = 0;
    EXPECT_OK(store_->ForEach(tables::kLimits, [&](ByteView, ByteView) {
      ++n;
      return true;
    }));
    return n;
  }

  otd::testing::TempDir dir_{"otd_shared_limits"};
  std::ostringstream log_out_;
  Logger log_{log_out_, LogLevel::kDebug};
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<SharedLimits> node_a_;
  std::unique_ptr<SharedLimits> node_b_;
  FakeClock clock_{100'000};
};

TEST_P(SharedLimitsTest, LoginFailuresSpreadOverTwoNodesShareOneCount) {
  RateLimitOptions o{.free_failures = 4, .base_delay_seconds = 2, .max_delay_seconds = 60};
  RateLimiter a(clock_, o, node_a_.get(), "login-account");
  RateLimiter b(clock_, o, node_b_.get(), "login-account");
  RateLimiter other(clock_, o, node_b_.get(), "login-peer");  // another limiter's records
  for (int i = 0; i < 4; ++i) {
    RateLimiter& node = i % 2 == 0 ? a : b;
    EXPECT_EQ(node.RetryAfter("acct"), 0);
    node.RecordFailure("acct");
  }
  EXPECT_EQ(a.RetryAfter("acct"), 0);
  b.RecordFailure("acct");  // the 5th failure over both nodes: 2 s on both
  EXPECT_EQ(a.RetryAfter("acct"), 2);
  EXPECT_EQ(b.RetryAfter("acct"), 2);
  EXPECT_EQ(other.RetryAfter("acct"), 0);
  EXPECT_EQ(a.RetryAfter("acct2"), 0);
  clock_.Advance(2);
  EXPECT_EQ(a.RetryAfter("acct"), 0);
  a.RecordFailure("acct");  // 6th: 4 s
  EXPECT_EQ(b.RetryAfter("acct"), 4);
  // A success on one node clears the count for both.
  clock_.Advance(4);
  b.RecordSuccess("acct");
  EXPECT_EQ(a.RetryAfter("acct"), 0);
  a.RecordFailure("acct");
  EXPECT_EQ(b.RetryAfter("acct"), 0);
}

TEST_P(SharedLimitsTest, WithoutTheStoreEachNodeCountsAlone) {
  // What the daemons did before: per-process counts, so spreading tries doubles the allowance.
  RateLimitOptions o{.free_failures = 4, .base_delay_seconds = 2, .max_delay_seconds = 60};
  RateLimiter a(clock_, o);
  RateLimiter b(clock_, o);
  for (int i = 0; i < 8; ++i) {
    (i % 2 == 0 ? a : b).RecordFailure("acct");
  }
  EXPECT_EQ(a.RetryAfter("acct"), 0);
  EXPECT_EQ(b.RetryAfter("acct"), 0);
}

TEST_P(SharedLimitsTest, StepsOverTwoNodesWaitExactlyAndAWaitingClientPassesOnce) {
  RateLimitOptions o{.free_failures = 3, .base_delay_seconds = 60, .max_delay_seconds = 3600};
  StepLimiter a(clock_, o, node_a_.get(), "email-address");
  StepLimiter b(clock_, o, node_b_.get(), "email-address");
  EXPECT_EQ(Step({{&a, "addr"}}), 0);
  EXPECT_EQ(Step({{&b, "addr"}}), 0);
  EXPECT_EQ(Step({{&a, "addr"}}), 0);  // the 3rd step uses the allowance up: 60 s
  EXPECT_EQ(Step({{&b, "addr"}}), 60);
  EXPECT_EQ(Step({{&a, "addr"}}), 60);  // refused steps do not count
  clock_.Advance(59);
  EXPECT_EQ(Step({{&b, "addr"}}), 1);
  clock_.Advance(1);
  EXPECT_EQ(Step({{&b, "addr"}}), 0);  // waited as told: through once, then twice as long
  EXPECT_EQ(Step({{&a, "addr"}}), 120);
}

TEST_P(SharedLimitsTest, AsyncCountIsImmediateHereAndReachesTheOtherNode) {
  RateLimitOptions o{.free_failures = 2, .base_delay_seconds = 5, .max_delay_seconds = 60};
  RateLimiter a(clock_, o, node_a_.get(), "email-delete-peer");
  RateLimiter b(clock_, o, node_b_.get(), "email-delete-peer");
  for (int i = 0; i < 3; ++i) {
    a.RecordFailureAsync("peer");  // the 3rd races the 1st and 2nd commits: CAS retries
  }
  EXPECT_EQ(a.RetryAfter("peer"), 5);  // in memory at once
  int64_t seen = 0;
  for (int i = 0; i < 200 && seen == 0; ++i) {
    seen = b.RetryAfter("peer");
    if (seen == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  EXPECT_EQ(seen, 5);
  auto stored = node_b_->Read("email-delete-peer", "peer");
  ASSERT_OK(stored);
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->failures, 3u);
}

TEST_P(SharedLimitsTest, RecordsAreKeyedByTheHashAndExpireWhenForgotten) {
  RateLimitOptions o{.free_failures = 1, .base_delay_seconds = 1, .forget_after_seconds = 600};
  RateLimiter a(clock_, o, node_a_.get(), "login-peer");
  a.RecordFailure("10.1.2.3");
  ASSERT_EQ(Records(), 1u);
  OTD_ASSERT_OK_AND_ASSIGN(Bytes key, FakeKeyedHash("login-peer", "10.1.2.3"));
  EXPECT_OK(store_->ForEach(tables::kLimits, [&](ByteView k, ByteView v) {
    EXPECT_EQ(Bytes(k.begin(), k.end()), key);  // never the peer in clear
    EXPECT_EQ(v.size(), 21u);
    EXPECT_EQ(v[0], 1);  // record version
    return true;
  }));
  OTD_ASSERT_OK_AND_ASSIGN(int64_t expires, store_->ExpiryOf(tables::kLimits, key));
  EXPECT_EQ(expires, clock_.NowSeconds() + 600 + 1);
  OTD_ASSERT_OK_AND_ASSIGN(size_t purged, store_->PurgeExpired(expires, 100));
  EXPECT_EQ(purged, 1u);
  EXPECT_EQ(Records(), 0u);
}

TEST_P(SharedLimitsTest, ConcurrentCountsOnTwoNodesAreNotLost) {
  RateLimitOptions o{.free_failures = 1000, .base_delay_seconds = 1};
  RateLimiter a(clock_, o, node_a_.get(), "login-account");
  RateLimiter b(clock_, o, node_b_.get(), "login-account");
  auto count = [&](SharedLimits& node) {
    for (int i = 0; i < 25; ++i) {
      EXPECT_OK(node.Update("login-account", "acct", [](LimitEntry& e) {
        ++e.failures;
        return int64_t{200'000};
      }));
    }
  };
  std::thread t([&] { count(*node_a_); });
  count(*node_b_);
  t.join();
  auto stored = node_a_->Read("login-account", "acct");
  ASSERT_OK(stored);
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->failures, 50u);
}

TEST_P(SharedLimitsTest, PendingRegistrationsOfAPeerAreCountedOverBothNodes) {
  RegistrationLimitsOptions o;
  o.max_pending_per_peer = 2;
  RegistrationLimits a(*store_, std::string(tables::kRegistrations), clock_, log_, o,
                       node_a_.get());
  RegistrationLimits b(*store_, std::string(tables::kRegistrations), clock_, log_, o,
                       node_b_.get());
  const int64_t start = clock_.NowSeconds();
  int64_t wait = 0;
  auto admit = [&](RegistrationLimits& node, std::string_view id, int64_t lifetime) {
    return node.AdmitPending("10.0.0.7", id, clock_.NowSeconds() + lifetime, &wait);
  };
  // Admitted (and kept) within 2 s: a place given back is committed without waiting.
  auto admitted_soon = [&](RegistrationLimits& node, std::string_view id, int64_t lifetime) {
    for (int i = 0; i < 200; ++i) {
      auto slot = admit(node, id, lifetime);
      if (slot.ok()) {
        slot->Keep();
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  auto r1 = admit(a, "reg-1", 3600);
  ASSERT_OK(r1);
  r1->Keep();
  clock_.Advance(10);
  auto r2 = admit(b, "reg-2", 3600);
  ASSERT_OK(r2);
  r2->Keep();
  // The cap (2) is reached over both nodes: refused on either, until the latest one expires.
  for (RegistrationLimits* node : {&a, &b}) {
    auto refused = admit(*node, "reg-3", 3600);
    EXPECT_EQ(refused.status().code(), Code::kResourceExhausted);
    EXPECT_EQ(wait, start + 10 + 3600 - clock_.NowSeconds());
  }
  EXPECT_OK(a.AdmitPending("10.0.0.8", "other", start + 3600, &wait).status());  // another peer
  // A registration started on a and confirmed on b gives its place back on both.
  b.Confirmed("reg-1", "10.0.0.7");
  EXPECT_TRUE(admitted_soon(a, "reg-4", 3600));  // the place is given back without waiting
  EXPECT_EQ(admit(b, "reg-5", 3600).status().code(), Code::kResourceExhausted);
  // A place taken and dropped (the registration failed on the way) is given back too.
  clock_.Advance(3600 + 10);  // everything counted has expired: a fresh count
  {
    auto dropped = admit(a, "reg-6", 60);
    ASSERT_OK(dropped);
  }
  auto kept = admit(b, "reg-7", 60);
  ASSERT_OK(kept);
  kept->Keep();
  EXPECT_TRUE(admitted_soon(b, "reg-8", 60));
}

TEST(SharedLimitsCodecTest, RoundTripAndRefusesOtherVersions) {
  LimitEntry e{.failures = 7, .last_failure = 1'700'000'000, .blocked_until = 1'700'000'060};
  Bytes raw = SharedLimits::Encode(e);
  auto back = SharedLimits::Decode(raw);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->failures, 7u);
  EXPECT_EQ(back->last_failure, e.last_failure);
  EXPECT_EQ(back->blocked_until, e.blocked_until);
  raw[0] = 2;
  EXPECT_FALSE(SharedLimits::Decode(raw).has_value());
  EXPECT_FALSE(SharedLimits::Decode(Bytes(3, 1)).has_value());
}

INSTANTIATE_TEST_SUITE_P(Backends, SharedLimitsTest, ::testing::Values("lmdb", "postgresql"));

}  // namespace
}  // namespace otd::service
