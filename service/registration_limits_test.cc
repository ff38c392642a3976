// RegistrationLimits against a real LMDB store, with a fake clock for the waits and expiries.
#include "service/registration_limits.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

constexpr char kTable[] = "registrations";

class RegistrationLimitsTest : public ::testing::Test {
 protected:
  static RegistrationLimitsOptions Options() {
    RegistrationLimitsOptions o;
    o.address_rate_limit.free_failures = 4;
    o.peer_rate_limit.free_failures = 20;
    o.max_pending = 1000;
    o.max_pending_per_peer = 3;
    return o;
  }
  RegistrationLimits Make(RegistrationLimitsOptions o = Options()) {
    return RegistrationLimits(*env_.store_, kTable, env_.clock_, env_.log_, o);
  }
  // Writes `n` records of `size` bytes into `table` (keys prefixed with `prefix`).
  void Fill(const std::string& table, const std::string& prefix, int n, size_t size) {
    std::vector<store::Mutation> batch;
    for (int i = 0; i < n; ++i) {
      batch.push_back({.op = store::Op::kPut,
                       .table = table,
                       .key = ToBytes(prefix + std::to_string(i)),
                       .value = Bytes(size, 0x5a)});
    }
    ASSERT_OK(env_.store_->Apply(std::move(batch)));
  }
  void Erase(const std::string& table, const std::string& prefix, int n) {
    std::vector<store::Mutation> batch;
    for (int i = 0; i < n; ++i) {
      batch.push_back(
          {.op = store::Op::kErase, .table = table, .key = ToBytes(prefix + std::to_string(i))});
    }
    ASSERT_OK(env_.store_->Apply(std::move(batch)));
  }
  // Admits registration `id` for `peer`, pending for an hour; nullopt (and the wait) if refused.
  std::optional<RegistrationLimits::Slot> Admit(RegistrationLimits& l, const std::string& peer,
                                                const std::string& id, Status* refusal = nullptr,
                                                int64_t* wait = nullptr) {
    int64_t w = -1;
    auto slot = l.AdmitPending(peer, id, env_.clock_.NowSeconds() + 3600, &w);
    if (wait != nullptr) {
      *wait = w;
    }
    if (!slot.ok()) {
      if (refusal != nullptr) {
        *refusal = slot.status();
      }
      return std::nullopt;
    }
    EXPECT_EQ(w, 0);
    return std::move(slot).value();
  }

  ServiceEnv env_;
};

TEST_F(RegistrationLimitsTest, AnAddressGetsItsFreeStepsThenWaitsWithGrowingDelay) {
  auto l = Make();
  int64_t wait = -1;
  for (int i = 0; i < 4; ++i) {
    // Different peers and different spellings of one address: the address is what counts.
    std::string spelling = i % 2 == 0 ? "Victim@Example.com" : "victim@example.COM";
    EXPECT_OK(l.CountStep(spelling, "peer-" + std::to_string(i), &wait)) << i;
    EXPECT_EQ(wait, 0);
  }
  Status refused = l.CountStep("victim@example.com", "peer-9", &wait);
  EXPECT_EQ(refused.code(), Code::kResourceExhausted);
  EXPECT_EQ(wait, 60);
  // Refused steps do not count again; another address is not affected.
  EXPECT_EQ(l.CountStep("VICTIM@example.com", "peer-9", &wait).code(), Code::kResourceExhausted);
  EXPECT_OK(l.CountStep("other@example.com", "peer-9", &wait));
  env_.clock_.Advance(61);
  EXPECT_OK(l.CountStep("victim@example.com", "peer-9", &wait));
  EXPECT_EQ(l.CountStep("victim@example.com", "peer-9", &wait).code(), Code::kResourceExhausted);
  EXPECT_EQ(wait, 120);  // doubled
  // An hour of quiet does not give the address a fresh allowance (a day does).
  env_.clock_.Advance(3601);
  EXPECT_OK(l.CountStep("victim@example.com", "peer-10", &wait));
  EXPECT_EQ(l.CountStep("victim@example.com", "peer-11", &wait).code(), Code::kResourceExhausted);
  EXPECT_EQ(wait, 240);
  env_.clock_.Advance(86'401);
  for (int i = 0; i < 4; ++i) {
    EXPECT_OK(l.CountStep("victim@example.com", "peer-12", &wait)) << i;
  }
  // Neither the address nor a peer is in the log.
  EXPECT_EQ(env_.log_sink_.str().find("xample"), std::string::npos);
  EXPECT_EQ(env_.log_sink_.str().find("peer-"), std::string::npos);
}

TEST_F(RegistrationLimitsTest, APeerGetsItsFreeStepsWhateverTheAddresses) {
  auto l = Make();
  int64_t wait = -1;
  for (int i = 0; i < 19; ++i) {
    EXPECT_OK(l.CountStep("a" + std::to_string(i) + "@example.com", "uid:1000", &wait)) << i;
  }
  EXPECT_EQ(l.PeerRetryAfter("uid:1000"), 0);
  EXPECT_OK(l.CountStep("a19@example.com", "uid:1000", &wait));  // the 20th: the last one
  EXPECT_EQ(l.CountStep("fresh@example.com", "uid:1000", &wait).code(), Code::kResourceExhausted);
  EXPECT_EQ(wait, 60);
  EXPECT_EQ(l.PeerRetryAfter("uid:1000"), 60);
  EXPECT_EQ(l.PeerRetryAfter("127.0.0.1"), 0);
  EXPECT_OK(l.CountStep("fresh@example.com", "127.0.0.1", &wait));
}

TEST_F(RegistrationLimitsTest, APeerHoldsAtMostItsShareOfPendingRegistrations) {
  auto l = Make();
  const int64_t start = env_.clock_.NowSeconds();
  for (int i = 0; i < 3; ++i) {
    auto slot = Admit(l, "uid:1000", "reg-" + std::to_string(i));
    ASSERT_TRUE(slot.has_value()) << i;
    slot->Keep();
    env_.clock_.Advance(10);
  }
  Status refusal;
  int64_t wait = -1;
  EXPECT_FALSE(Admit(l, "uid:1000", "reg-3", &refusal, &wait).has_value());
  EXPECT_EQ(refusal.code(), Code::kResourceExhausted);
  EXPECT_EQ(wait, start + 3600 - env_.clock_.NowSeconds());  // until the first one expires
  // Another peer is not affected.
  auto other = Admit(l, "127.0.0.1", "reg-other");
  ASSERT_TRUE(other.has_value());
  other->Keep();
  // A confirmed registration stops counting at once...
  l.Confirmed("reg-1", "");
  auto again = Admit(l, "uid:1000", "reg-4");
  ASSERT_TRUE(again.has_value());
  again->Keep();
  EXPECT_FALSE(Admit(l, "uid:1000", "reg-5").has_value());
  // ...the others when they expire.
  env_.clock_.Advance(3600);
  for (int i = 6; i < 9; ++i) {
    auto slot = Admit(l, "uid:1000", "reg-" + std::to_string(i));
    ASSERT_TRUE(slot.has_value()) << i;
    slot->Keep();
  }
}

TEST_F(RegistrationLimitsTest, APlaceNotKeptIsGivenBack) {
  auto l = Make();
  for (int round = 0; round < 5; ++round) {
    auto slot = Admit(l, "uid:1000", "failed-" + std::to_string(round));
    ASSERT_TRUE(slot.has_value()) << round;  // destroyed without Keep(): the creation failed
  }
  EXPECT_EQ(l.TrackedForTesting(), 0u);
  auto moved = Admit(l, "uid:1000", "moved");
  ASSERT_TRUE(moved.has_value());
  RegistrationLimits::Slot taken(std::move(*moved));
  moved.reset();  // the moved-from slot gives nothing back
  EXPECT_EQ(l.TrackedForTesting(), 1u);
  taken.Keep();
  EXPECT_EQ(l.TrackedForTesting(), 1u);
}

TEST_F(RegistrationLimitsTest, TheGlobalCapCountsTheStoreAndRegistrationsBeingCreated) {
  auto o = Options();
  o.max_pending = 5;
  o.max_pending_per_peer = 100;
  auto l = Make(o);
  // Three registrations already in the store (made before a restart: not tracked in memory).
  Fill(kTable, "stored-", 3, 200);
  auto a = Admit(l, "p1", "a");
  auto b = Admit(l, "p2", "b");
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  // a and b are still being created (not in the store yet) and already count.
  Status refusal;
  int64_t wait = -1;
  EXPECT_FALSE(Admit(l, "p3", "c", &refusal, &wait).has_value());
  EXPECT_EQ(refusal.code(), Code::kUnavailable);
  EXPECT_EQ(wait, 300);
  EXPECT_NE(env_.log_sink_.str().find(R"("reason":"pending_cap")"), std::string::npos);
  b.reset();  // b failed: its place is free again
  auto c = Admit(l, "p3", "c");
  ASSERT_TRUE(c.has_value());
  c.reset();
  // The store's own count holds even with nothing in memory.
  a.reset();
  Fill(kTable, "more-", 2, 200);
  EXPECT_FALSE(Admit(l, "p4", "d", &refusal).has_value());
  EXPECT_EQ(refusal.code(), Code::kUnavailable);
  Erase(kTable, "more-", 1);
  EXPECT_TRUE(Admit(l, "p4", "d").has_value());
}

TEST_F(RegistrationLimitsTest, TheMemoryHoldsNoMoreEntriesThanTheGlobalCap) {
  // Registrations kept in memory but gone from the store (nothing is written to the store here):
  // the entry that expires first is forgotten, so memory stays bounded.
  auto o = Options();
  o.max_pending = 3;
  o.max_pending_per_peer = 100;
  auto l = Make(o);
  for (int i = 0; i < 10; ++i) {
    auto slot = Admit(l, "peer-" + std::to_string(i % 2), "kept-" + std::to_string(i));
    ASSERT_TRUE(slot.has_value()) << i;
    slot->Keep();
    env_.clock_.Advance(1);
  }
  EXPECT_EQ(l.TrackedForTesting(), 3u);
}

TEST_F(RegistrationLimitsTest, RegistrationsStopAtTheReserveAndResumeWhenRoomIsFreed) {
  // 64 MiB map, registrations may fill 2 % of it (1.3 MiB).
  auto o = Options();
  o.max_map_percent = 2;
  o.max_pending_per_peer = 100;
  auto l = Make(o);
  EXPECT_TRUE(Admit(l, "p", "before").has_value());
  // Other writes (tokens) fill 2 MiB: no more registrations, with the 503 kind.
  Fill("records", "token-", 2000, 1000);
  Status refusal;
  int64_t wait = -1;
  EXPECT_FALSE(Admit(l, "p", "after", &refusal, &wait).has_value());
  EXPECT_EQ(refusal.code(), Code::kUnavailable);
  EXPECT_EQ(wait, 300);
  EXPECT_NE(env_.log_sink_.str().find(R"("reason":"map_reserve")"), std::string::npos);
  // The tokens are deleted: LMDB keeps its high-water mark but the pages are free again, so
  // registrations resume (the reserve looks at what is in use, not at the high-water mark).
  Erase("records", "token-", 2000);
  auto stats = env_.store_->GetStats();
  ASSERT_OK(stats);
  EXPECT_GT(stats->used_bytes * 100, stats->map_size * 2);
  EXPECT_TRUE(Admit(l, "p", "later").has_value());
}

}  // namespace
}  // namespace otd::service
