// The store-backed SMTP outbox on PostgreSQL (issue 16): two daemons' outboxes on one database
// (two stores, two vaults on one token) never hold one message at once, and a dead node's lease
// is taken over. Starts its own PostgreSQL (store/testing/pg_server.h); skipped without one.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/log.h"
#include "common/testing/status_matchers.h"
#include "service/mail_outbox.h"
#include "service/tables.h"
#include "service/vault.h"
#include "store/pg_store.h"
#include "store/testing/pg_server.h"
#include "tests/support/temp_token.h"

namespace otd::service {
namespace {

// A node: its own store connections, vault and outbox (one token per process: PKCS#11 allows one
// C_Initialize, so the two nodes share it as two daemons share the token's objects).
struct Node {
  std::unique_ptr<store::Store> store;
  std::unique_ptr<Vault> vault;
  std::unique_ptr<StoreMailOutbox> outbox;
};

class MailOutboxPgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = server_.Unavailable(); !why.empty()) {
      GTEST_SKIP() << why;
    }
    ASSERT_TRUE(server_.Init());
    conninfo_ = server_.CreateDatabase();
    ASSERT_FALSE(conninfo_.empty());
    ASSERT_OK(store::PgMigrate(Options()));
  }
  store::PgOptions Options() const {
    store::PgOptions o;
    o.conninfo = conninfo_;
    o.pool_size = 2;
    o.tables = AllTables();
    return o;
  }
  Node OpenNode(bool init_keys) {
    Node n;
    if (token_ == nullptr) {
      auto token = hsm::Token::Open(token_dir_.Config(), &log_);
      EXPECT_OK(token);
      token_ = std::move(token).value();
    }
    auto st = store::PgStore::Open(Options(), &log_);
    EXPECT_OK(st);
    n.store = std::move(st).value();
    n.vault = std::make_unique<Vault>(*token_, *n.store, log_);
    if (init_keys) {
      EXPECT_OK(n.vault->keys().InitKeys());
    }
    n.outbox = std::make_unique<StoreMailOutbox>(*n.vault, *n.store, clock_, log_);
    return n;
  }

  store::testing::PgTestServer server_;
  std::string conninfo_;
  std::ostringstream log_sink_;
  Logger log_{log_sink_};
  FakeClock clock_{1'800'000'000};
  testing::TempToken token_dir_;
  std::unique_ptr<hsm::Token> token_;  // declared last of the shared parts: nodes die first
};

TEST_F(MailOutboxPgTest, TwoNodesDeliverEachMessageOnceAndTakeOverADeadLease) {
  Node a = OpenNode(true);
  Node b = OpenNode(false);
  ASSERT_NE(a.outbox, nullptr);
  constexpr int kMessages = 20;
  for (int i = 0; i < kMessages; ++i) {
    char id[64];
    std::snprintf(id, sizeof id, "1800000000.%09d-00000000000000c0", i);
    ASSERT_OK(a.outbox->Put(id, "To: alice@example.org\r\n\r\nbody\r\n"));
  }
  // Durable and visible to the other node at once.
  EXPECT_EQ(*b.outbox->Count(), static_cast<size_t>(kMessages));
  std::mutex mu;
  std::map<std::string, int> delivered;
  auto run = [&](StoreMailOutbox& outbox) {
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
  std::thread ta([&] { run(*a.outbox); });
  std::thread tb([&] { run(*b.outbox); });
  ta.join();
  tb.join();
  EXPECT_EQ(delivered.size(), static_cast<size_t>(kMessages));
  for (const auto& [id, n] : delivered) {
    EXPECT_EQ(n, 1) << id;
  }

  // A claims and dies; B takes over after the lease; A's late delivery report is refused.
  ASSERT_OK(a.outbox->Put("1800000001.000000000-00000000000000d1", "To: a@example.org\r\n\r\nx"));
  auto held = a.outbox->Claim(nullptr);
  ASSERT_TRUE(held->has_value());
  EXPECT_FALSE(b.outbox->Claim(nullptr)->has_value());
  clock_.Advance(MailOutboxOptions{}.lease_seconds);
  auto taken = b.outbox->Claim(nullptr);
  ASSERT_TRUE(taken->has_value());
  EXPECT_EQ((*taken)->attempt, 2u);
  EXPECT_EQ(a.outbox->Delivered(**held).code(), Code::kFailedPrecondition);
  EXPECT_OK(b.outbox->Delivered(**taken));
  EXPECT_EQ(*a.outbox->Count(), 0u);
}

}  // namespace
}  // namespace otd::service
