#include "service/nonce_budget.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "common/testing/status_matchers.h"
#include "service/record.h"
#include "service/testing/service_env.h"
#include "service/tokens.h"
#include "store/testing/held_store.h"

namespace otd::service {
namespace {

using ::otd::testing::IsOk;
using ::otd::testing::StatusIs;

// A vault over a store whose asynchronous writes the test can hold: what does a caller do while
// a nonce lease is "in flight"?
class NonceBudgetTest : public ::testing::Test, public ServiceEnv {
 protected:
  void SetUp() override {
    auto key = vault_->keys().NewAccountKeyMutation("acct-1");
    ASSERT_OK(key);
    std::vector<store::Mutation> batch;
    batch.push_back(std::move(key).value());
    ASSERT_OK(store_->Apply(std::move(batch)));
  }

  uint64_t Reserved() {
    auto rec = vault_->keys().Find(tables::kKeyUsage, "acct-1", "usage", Vault::Ids::kPublic);
    EXPECT_OK(rec);
    if (!rec.ok() || !rec->value) {
      return 0;
    }
    uint64_t reserved = 0;
    for (size_t i = 4; i < 12; ++i) {
      reserved = (reserved << 8) | (*rec->value)[i];
    }
    return reserved;
  }

  store::testing::HeldStore held_{*store_};
  Vault held_vault_{*token_, held_, log_, {.rollover_after = 1'000'000, .lease = 8}};
};

// A vault destroyed while its lease commit is still in flight waits for the commit's completion,
// which runs on the store's writer and uses the budget (TSan: the completion read the budget's
// map while its destructor freed it). Without the wait the destructor returned at once.
TEST_F(NonceBudgetTest, DestructionWaitsForALeaseCommitInFlight) {
  auto vault = std::make_unique<Vault>(*token_, held_, log_,
                                       NonceBudgetOptions{.rollover_after = 1'000'000, .lease = 8});
  held_.Hold();
  ASSERT_OK(vault->budget().Reserve("acct-1"));
  ASSERT_EQ(held_.Held(), 1u);
  std::atomic<bool> destroyed{false};
  std::thread destroyer([&] {
    vault.reset();
    destroyed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(destroyed.load()) << "destroyed while its lease commit was in flight";
  held_.Release();  // the writer completes the lease: the budget is still alive
  destroyer.join();
  EXPECT_TRUE(destroyed.load());
}

TEST_F(NonceBudgetTest, TheFirstEncryptionDoesNotWaitForItsLeasesCommit) {
  held_.Hold();
  auto r = held_vault_.budget().Reserve("acct-1");  // would block here if it waited for the disk
  ASSERT_OK(r);
  ASSERT_NE(r->gate, nullptr);
  EXPECT_EQ(held_.Held(), 1u);  // the lease's commit is queued, not done
  EXPECT_EQ(Reserved(), 0u);
  bool opened = false;
  r->gate->Then([&](Status s) { opened = s.ok(); });
  EXPECT_FALSE(opened);
  held_.Release();
  EXPECT_OK(r->gate->Wait());
  EXPECT_TRUE(opened);
  EXPECT_EQ(Reserved(), 8u);
}

TEST_F(NonceBudgetTest, InTheSteadyStateTheNextLeaseIsDurableBeforeItIsNeeded) {
  auto first = held_vault_.budget().Reserve("acct-1");
  ASSERT_OK(first);
  ASSERT_NE(first->gate, nullptr);  // the very first encryption: its lease is being committed
  ASSERT_OK(first->gate->Wait());
  // Hold the writer: when half of the lease is used, the next lease is started (held here), and
  // every encryption of the current lease is handed out without a gate meanwhile.
  held_.Hold();
  for (int i = 1; i < 8; ++i) {
    auto r = held_vault_.budget().Reserve("acct-1");
    ASSERT_OK(r);
    EXPECT_EQ(r->gate, nullptr) << i;
    // 7 left after the first; the next lease starts once at most half of one (4) is left.
    EXPECT_EQ(held_.Held(), 7 - i <= 4 ? 1u : 0u) << i;
  }
  held_.Release();
  for (int i = 0; i < 500 && Reserved() < 16; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(Reserved(), 16u);  // reserved ahead, never behind
  for (int i = 8; i < 12; ++i) {
    auto r = held_vault_.budget().Reserve("acct-1");
    ASSERT_OK(r);
    EXPECT_EQ(r->gate, nullptr) << i;
  }
}

TEST_F(NonceBudgetTest, ARecordIsWrittenOnlyAfterItsLeaseAndNotAtAllIfTheLeaseFails) {
  for (bool lease_ok : {true, false}) {
    SCOPED_TRACE(lease_ok ? "lease committed" : "lease failed");
    Vault fresh(*token_, held_, log_, {.rollover_after = 1'000'000, .lease = 8});
    Tokens t(fresh, held_, clock_, log_, {});
    held_.Hold();
    auto prepared = t.Prepare("acct-1", "text/plain", AsBytes("payload"), false, 0);
    ASSERT_OK(prepared);
    ASSERT_NE(prepared->lease, nullptr);
    const std::string id = prepared->id;
    std::promise<Status> done;
    t.Commit(std::move(prepared).value(), [&](Status s) { done.set_value(s); });
    EXPECT_EQ(held_.Held(), 1u);  // only the lease: the record waits behind it
    if (lease_ok) {
      held_.Release();
      EXPECT_OK(done.get_future().get());
      EXPECT_OK(t.Get("acct-1", id));
    } else {
      held_.Fail(Unavailable("disk full"));
      EXPECT_THAT(done.get_future().get(), StatusIs(Code::kUnavailable));
      EXPECT_THAT(t.Get("acct-1", id), StatusIs(Code::kNotFound));
    }
  }
}

}  // namespace
}  // namespace otd::service
