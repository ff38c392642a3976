// The store-backed SMTP outbox (issue 16) against the real token (SoftHSM2) and a real LMDB
// store, with a fake clock: durable before Ok, sealed, two instances (two nodes) on one store
// never hold one message at once, a dead node's lease is taken over, 5xx and expiry drop.
// service/mail_outbox_pg_test.cc runs the two-node cases against PostgreSQL.
#include "service/mail_outbox.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/status_matchers.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kAddress = "alice.secret@example.org";
constexpr std::string_view kBodySecret = "confirm?code=Zq8s3cretBearer";

std::string Message(int i) {
  return "To: " + std::string(kAddress) + "\r\nSubject: hi\r\n\r\n" + std::string(kBodySecret) +
         std::to_string(i) + "\r\n";
}

class MailOutboxTest : public ::testing::Test, protected ServiceEnv {
 protected:
  std::vector<std::pair<Bytes, Bytes>> Stored() {
    std::vector<std::pair<Bytes, Bytes>> out;
    EXPECT_OK(store_->ForEach(tables::kMailOutbox, [&](ByteView k, ByteView v) {
      out.emplace_back(Bytes(k.begin(), k.end()), Bytes(v.begin(), v.end()));
      return true;
    }));
    return out;
  }
  std::unique_ptr<StoreMailOutbox> NewOutbox(MailOutboxOptions o = {}) {
    return std::make_unique<StoreMailOutbox>(*vault_, *store_, clock_, log_, o);
  }
};

TEST_F(MailOutboxTest, PutIsDurableAndSurvivesARestart) {
  {
    auto outbox = NewOutbox();
    ASSERT_OK(outbox->Put("1800000000.000000001-00000000000000a1", Message(1)));
  }
  // Another process (the store reopened, a new outbox) finds it.
  Close();
  Open();
  auto outbox = NewOutbox();
  EXPECT_EQ(*outbox->Count(), 1u);
  auto e = outbox->Claim(nullptr);
  ASSERT_OK(e);
  ASSERT_TRUE(e->has_value());
  EXPECT_EQ((*e)->id, "1800000000.000000001-00000000000000a1");
  EXPECT_EQ((*e)->content, Message(1));
  EXPECT_EQ((*e)->attempt, 1u);
  EXPECT_OK(outbox->Delivered(**e));
  EXPECT_EQ(*outbox->Count(), 0u);
}

TEST_F(MailOutboxTest, NothingInClearInTheStore) {
  auto outbox = NewOutbox();
  const std::string id = "1800000000.000000001-00000000000000b2";
  ASSERT_OK(outbox->Put(id, Message(7)));
  auto stored = Stored();
  ASSERT_EQ(stored.size(), 1u);
  for (const auto& [k, v] : stored) {
    for (const ByteView b : {ByteView(k), ByteView(v)}) {
      const std::string s(AsString(b));
      EXPECT_EQ(s.find(kAddress), std::string::npos);
      EXPECT_EQ(s.find("example.org"), std::string::npos);
      EXPECT_EQ(s.find(kBodySecret), std::string::npos);
      EXPECT_EQ(s.find(id), std::string::npos);
      EXPECT_EQ(s.find("00000000000000b2"), std::string::npos);
    }
  }
  // A value moved to another key does not open: it is dropped as unreadable, not delivered.
  ASSERT_OK(outbox->Put("1800000000.000000002-00000000000000b3", Message(8)));
  stored = Stored();
  ASSERT_EQ(stored.size(), 2u);
  std::vector<store::Mutation> swap;
  swap.push_back({.op = store::Op::kUpdate,
                  .table = std::string(tables::kMailOutbox),
                  .key = stored[0].first,
                  .value = stored[1].second});
  ASSERT_OK(store_->Apply(std::move(swap)));
  auto e = outbox->Claim(nullptr);
  ASSERT_OK(e);
  ASSERT_TRUE(e->has_value());
  EXPECT_OK(outbox->Delivered(**e));
  EXPECT_FALSE(outbox->Claim(nullptr)->has_value());
  EXPECT_EQ(*outbox->Count(), 0u);
  EXPECT_NE(log_sink_.str().find("\"unreadable\""), std::string::npos);
}

TEST_F(MailOutboxTest, TwoNodesNeverHoldOneMessageAtOnce) {
  auto a = NewOutbox();
  auto b = NewOutbox();
  constexpr int kMessages = 30;
  for (int i = 0; i < kMessages; ++i) {
    char id[64];
    std::snprintf(id, sizeof id, "1800000000.%09d-00000000000000c0", i);
    ASSERT_OK(a->Put(id, Message(i)));
  }
  std::mutex mu;
  std::map<std::string, int> delivered;
  auto node = [&](StoreMailOutbox& outbox) {
    for (;;) {
      auto e = outbox.Claim(nullptr);
      ASSERT_OK(e);
      if (!e->has_value()) {
        return;
      }
      {
        std::lock_guard lock(mu);
        ++delivered[(*e)->id];
      }
      EXPECT_OK(outbox.Delivered(**e));
    }
  };
  std::thread ta([&] { node(*a); });
  std::thread tb([&] { node(*b); });
  ta.join();
  tb.join();
  EXPECT_EQ(delivered.size(), static_cast<size_t>(kMessages));
  for (const auto& [id, n] : delivered) {
    EXPECT_EQ(n, 1) << id;
  }
  EXPECT_EQ(*a->Count(), 0u);
}

TEST_F(MailOutboxTest, ALeaseOfADeadNodeIsTakenOver) {
  MailOutboxOptions o;
  o.lease_seconds = 60;
  auto a = NewOutbox(o);
  auto b = NewOutbox(o);
  ASSERT_OK(a->Put("1800000000.000000001-00000000000000d1", Message(1)));
  auto held = a->Claim(nullptr);
  ASSERT_TRUE(held->has_value());
  // While A's lease runs, B does not get it (and learns when to look again).
  milliseconds next{0};
  EXPECT_FALSE(b->Claim(&next)->has_value());
  EXPECT_EQ(next, std::chrono::seconds(60));
  clock_.Advance(59);
  EXPECT_FALSE(b->Claim(nullptr)->has_value());
  // A "dies" (never finishes); after the lease B claims it, as the second attempt.
  clock_.Advance(1);
  auto taken = b->Claim(nullptr);
  ASSERT_TRUE(taken->has_value());
  EXPECT_EQ((*taken)->id, "1800000000.000000001-00000000000000d1");
  EXPECT_EQ((*taken)->attempt, 2u);
  // A late A can no longer finish or release it: B's claim stands.
  EXPECT_EQ(a->Delivered(**held).code(), Code::kFailedPrecondition);
  EXPECT_EQ(a->Retry(**held, milliseconds(0)).code(), Code::kFailedPrecondition);
  EXPECT_OK(b->Delivered(**taken));
  EXPECT_EQ(*a->Count(), 0u);
}

TEST_F(MailOutboxTest, RetryWaitsAndRejectedIsGone) {
  auto a = NewOutbox();
  ASSERT_OK(a->Put("1800000000.000000001-00000000000000e1", Message(1)));
  auto e = a->Claim(nullptr);
  ASSERT_OK(a->Retry(**e, milliseconds(4500)));  // rounded up to 5 s
  clock_.Advance(4);
  milliseconds next{0};
  EXPECT_FALSE(a->Claim(&next)->has_value());
  EXPECT_EQ(next, std::chrono::seconds(1));
  clock_.Advance(1);
  e = a->Claim(nullptr);
  ASSERT_TRUE(e->has_value());
  EXPECT_EQ((*e)->attempt, 2u);
  ASSERT_OK(a->Rejected(**e, 550));
  EXPECT_EQ(*a->Count(), 0u);
}

TEST_F(MailOutboxTest, NothingStaysForEver) {
  MailOutboxOptions o;
  o.lifetime_seconds = 100;
  auto a = NewOutbox(o);
  ASSERT_OK(a->Put("1800000000.000000001-00000000000000f1", Message(1)));
  ASSERT_OK(a->Put("1800000000.000000002-00000000000000f2", Message(2)));
  // A retry that would come after the expiry drops the message.
  auto e = a->Claim(nullptr);
  ASSERT_OK(a->Retry(**e, std::chrono::seconds(100)));
  // An unclaimed message past its expiry is dropped on the next scan, not delivered.
  clock_.Advance(100);
  EXPECT_FALSE(a->Claim(nullptr)->has_value());
  EXPECT_EQ(*a->Count(), 0u);
  const std::string log = log_sink_.str();
  EXPECT_NE(log.find("mail_outbox_dropped"), std::string::npos);
  EXPECT_EQ(log.find(kAddress), std::string::npos);
  // The store's TTL is a backstop past the expiry.
  ASSERT_OK(a->Put("1800000000.000000003-00000000000000f3", Message(3)));
  auto stored = Stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(*store_->ExpiryOf(tables::kMailOutbox, stored[0].first),
            clock_.NowSeconds() + 100 + MailOutboxOptions{}.purge_grace_seconds);
}

}  // namespace
}  // namespace otd::service
