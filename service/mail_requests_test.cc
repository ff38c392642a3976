// The e-mail request queue against the real token (SoftHSM2) and a real LMDB store, with a fake
// clock: processing, retries with backoff, expiry, restarts, and two workers on one store.
#include "service/mail_requests.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "service/testing/service_env.h"

namespace otd::service {
namespace {

constexpr std::string_view kAddress = "Alice.Secret@example.org";

class MailRequestsTest : public ::testing::Test, protected ServiceEnv {
 protected:
  std::vector<std::pair<Bytes, Bytes>> Stored() {
    std::vector<std::pair<Bytes, Bytes>> out;
    EXPECT_TRUE(store_
                    ->ForEach(kMailRequestsTable,
                              [&](ByteView k, ByteView v) {
                                out.emplace_back(Bytes(k.begin(), k.end()),
                                                 Bytes(v.begin(), v.end()));
                                return true;
                              })
                    .ok());
    return out;
  }

  // A handler that remembers its calls, answers `result`, and commits `done` when it is Ok.
  struct Recorder {
    store::Store* store;
    std::vector<MailRequest> calls;
    Status result = Status::Ok();
    MailRequestHandler Handler() {
      return [this](const MailRequest& r, store::Mutation done) -> Status {
        calls.push_back(r);
        if (!result.ok()) {
          return result;
        }
        std::vector<store::Mutation> batch;
        batch.push_back(std::move(done));
        return store->Apply(std::move(batch));
      };
    }
  };

  Recorder NewRecorder() { return Recorder{store_.get(), {}, Status::Ok()}; }
  std::string Log() const { return log_sink_.str(); }

  MailRequestQueue queue_{*vault_, *store_, clock_, log_};
};

TEST_F(MailRequestsTest, AQueuedRequestIsHandledOnceAndThenGone) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kDeletionCode, "bob@example.org"));
  EXPECT_EQ(Stored().size(), 2u);
  Recorder rec = NewRecorder();
  EXPECT_EQ(queue_.ProcessDue(rec.Handler()), 0);
  ASSERT_EQ(rec.calls.size(), 2u);
  std::vector<std::pair<MailRequestKind, std::string>> seen;
  for (const auto& c : rec.calls) {
    EXPECT_EQ(c.attempt, 1u);
    seen.emplace_back(c.kind, c.address);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen[0], std::make_pair(MailRequestKind::kToken, std::string(kAddress)));
  EXPECT_EQ(seen[1],
            std::make_pair(MailRequestKind::kDeletionCode, std::string("bob@example.org")));
  EXPECT_TRUE(Stored().empty());
  EXPECT_EQ(queue_.ProcessDue(rec.Handler()), 0);
  EXPECT_EQ(rec.calls.size(), 2u);
}

TEST_F(MailRequestsTest, TheStoreHoldsNoAddressAndEachRequestHasARandomKey) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  auto stored = Stored();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_NE(stored[0].first, stored[1].first);
  const std::string lower = "alice.secret";
  for (const auto& [key, value] : stored) {
    EXPECT_EQ(key.size(), 32u);  // an index-key HMAC (version 1), nothing else
    for (std::string_view needle : {kAddress.substr(0, 12), std::string_view(lower)}) {
      EXPECT_EQ(std::search(value.begin(), value.end(), needle.begin(), needle.end()), value.end());
      EXPECT_EQ(std::search(key.begin(), key.end(), needle.begin(), needle.end()), key.end());
    }
    // The purge job only backs the worker up: the TTL is the expiry plus the grace period.
    auto expiry = store_->ExpiryOf(kMailRequestsTable, key);
    ASSERT_OK(expiry);
    EXPECT_EQ(*expiry, clock_.NowSeconds() + 3600 + 600);
  }
}

TEST_F(MailRequestsTest, OldestFirst) {
  std::vector<std::string> order = {"one@example.org", "two@example.org", "three@example.org",
                                    "four@example.org"};
  for (const auto& a : order) {
    ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, a));
  }
  clock_.Advance(1);
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, "five@example.org"));
  // Within a second one queue's requests keep their order; seconds order the rest (here
  // another process's request, whose sequence starts again at 0).
  clock_.Advance(1);
  MailRequestQueue other(*vault_, *store_, clock_, log_);
  ASSERT_OK(other.Enqueue(MailRequestKind::kToken, "six@example.org"));
  order.push_back("five@example.org");
  order.push_back("six@example.org");
  Recorder rec = NewRecorder();
  queue_.ProcessDue(rec.Handler());
  ASSERT_EQ(rec.calls.size(), order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(rec.calls[i].address, order[i]);
  }
}

TEST_F(MailRequestsTest, AFailedAttemptIsRetriedWithBackoffAndLoggedWithoutTheAddress) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  Recorder rec = NewRecorder();
  rec.result = Unavailable("mail spool not writable");
  const int64_t t0 = clock_.NowSeconds();
  EXPECT_EQ(queue_.ProcessDue(rec.Handler()), t0 + 5);
  EXPECT_EQ(rec.calls.size(), 1u);
  EXPECT_EQ(Stored().size(), 1u);
  // Not due yet: not handled (and not even opened again).
  clock_.Advance(4);
  EXPECT_EQ(queue_.ProcessDue(rec.Handler()), t0 + 5);
  EXPECT_EQ(rec.calls.size(), 1u);
  clock_.Advance(1);
  EXPECT_EQ(queue_.ProcessDue(rec.Handler()), t0 + 5 + 10);
  ASSERT_EQ(rec.calls.size(), 2u);
  EXPECT_EQ(rec.calls[1].attempt, 2u);
  clock_.Advance(10);
  rec.result = Status::Ok();
  EXPECT_EQ(queue_.ProcessDue(rec.Handler()), 0);
  ASSERT_EQ(rec.calls.size(), 3u);
  EXPECT_EQ(rec.calls[2].attempt, 3u);
  EXPECT_TRUE(Stored().empty());
  EXPECT_NE(Log().find("\"event\":\"mail_request_retry\""), std::string::npos);
  EXPECT_EQ(Log().find("Secret"), std::string::npos);
}

TEST_F(MailRequestsTest, BackoffDoublesUpToItsMaximum) {
  EXPECT_EQ(queue_.RetryDelay(1), 5);
  EXPECT_EQ(queue_.RetryDelay(2), 10);
  EXPECT_EQ(queue_.RetryDelay(3), 20);
  EXPECT_EQ(queue_.RetryDelay(7), 300);
  EXPECT_EQ(queue_.RetryDelay(1000), 300);
}

TEST_F(MailRequestsTest, RetriesEndAtTheExpiryWithALogLine) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kDeletionCode, kAddress));
  const int64_t expiry = clock_.NowSeconds() + 3600;
  Recorder rec = NewRecorder();
  rec.result = Unavailable("token down");
  int64_t next = queue_.ProcessDue(rec.Handler());
  while (next != 0) {
    ASSERT_LE(next, expiry);
    clock_.Set(next);
    next = queue_.ProcessDue(rec.Handler());
  }
  EXPECT_TRUE(Stored().empty());
  EXPECT_GE(rec.calls.size(), 10u);
  EXPECT_NE(Log().find(R"("event":"mail_request_dropped","reason":"expired")"), std::string::npos)
      << Log();
  EXPECT_EQ(Log().find("Secret"), std::string::npos);
}

TEST_F(MailRequestsTest, ARequestNotTriedBeforeItsExpiryIsDroppedWithALogLine) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  clock_.Advance(3600);
  Recorder rec = NewRecorder();
  EXPECT_EQ(queue_.ProcessDue(rec.Handler()), 0);
  EXPECT_TRUE(rec.calls.empty());
  EXPECT_TRUE(Stored().empty());
  EXPECT_NE(Log().find(R"("event":"mail_request_dropped","reason":"expired")"), std::string::npos);
}

TEST_F(MailRequestsTest, APermanentFailureDropsTheRequest) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  Recorder rec = NewRecorder();
  rec.result = InvalidArgument("not a deliverable address");
  EXPECT_EQ(queue_.ProcessDue(rec.Handler()), 0);
  EXPECT_EQ(rec.calls.size(), 1u);
  EXPECT_TRUE(Stored().empty());
  EXPECT_NE(Log().find(R"("event":"mail_request_dropped","reason":"rejected")"), std::string::npos);
}

TEST_F(MailRequestsTest, ARequestLeftInTheStoreIsHandledAfterARestart) {
  // Two requests whose attempts were in progress when the process died: claimed, not done.
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kDeletionCode, "bob@example.org"));
  {
    Recorder dying = NewRecorder();
    dying.result = Unavailable("killed");
    MailRequestQueue first(*vault_, *store_, clock_, log_);
    first.ProcessDue(dying.Handler());
    EXPECT_EQ(dying.calls.size(), 2u);
  }
  Close();
  Open();
  MailRequestQueue restarted(*vault_, *store_, clock_, log_);
  Recorder rec = NewRecorder();
  // The claims hold until their retry time, then the new instance does both.
  EXPECT_EQ(restarted.ProcessDue(rec.Handler()), clock_.NowSeconds() + 5);
  EXPECT_TRUE(rec.calls.empty());
  clock_.Advance(5);
  EXPECT_EQ(restarted.ProcessDue(rec.Handler()), 0);
  ASSERT_EQ(rec.calls.size(), 2u);
  for (const auto& c : rec.calls) {
    EXPECT_EQ(c.attempt, 2u);
  }
  EXPECT_TRUE(Stored().empty());
}

TEST_F(MailRequestsTest, ANeverTriedRequestIsHandledAtOnceByANewInstance) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  Close();
  Open();
  MailRequestQueue restarted(*vault_, *store_, clock_, log_);
  Recorder rec = NewRecorder();
  EXPECT_EQ(restarted.ProcessDue(rec.Handler()), 0);
  ASSERT_EQ(rec.calls.size(), 1u);
  EXPECT_EQ(rec.calls[0].address, kAddress);
  EXPECT_EQ(rec.calls[0].attempt, 1u);
}

TEST_F(MailRequestsTest, ASecondWorkerLeavesAClaimedRequestAlone) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  MailRequestQueue other(*vault_, *store_, clock_, log_);
  Recorder other_rec = NewRecorder();
  Recorder rec = NewRecorder();
  auto handler = [&](const MailRequest& r, store::Mutation done) -> Status {
    // While this worker holds the claim, the other one scans the same store.
    EXPECT_EQ(other.ProcessDue(other_rec.Handler()), clock_.NowSeconds() + 5);
    return rec.Handler()(r, std::move(done));
  };
  EXPECT_EQ(queue_.ProcessDue(handler), 0);
  EXPECT_EQ(rec.calls.size(), 1u);
  EXPECT_TRUE(other_rec.calls.empty());
  EXPECT_TRUE(Stored().empty());
}

TEST_F(MailRequestsTest, WhenAClaimLapsesAtMostOneOfTwoWorkersCompletes) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, kAddress));
  MailRequestQueue other(*vault_, *store_, clock_, log_);
  Recorder other_rec = NewRecorder();
  Status slow_commit;
  auto slow = [&](const MailRequest&, store::Mutation done) -> Status {
    // This worker is slower than its claim: the other one takes the request over and finishes.
    clock_.Advance(5);
    EXPECT_EQ(other.ProcessDue(other_rec.Handler()), 0);
    std::vector<store::Mutation> batch;
    batch.push_back(std::move(done));
    slow_commit = store_->Apply(std::move(batch));
    return slow_commit;
  };
  EXPECT_EQ(queue_.ProcessDue(slow), 0);
  EXPECT_EQ(slow_commit.code(), Code::kFailedPrecondition);
  ASSERT_EQ(other_rec.calls.size(), 1u);
  EXPECT_EQ(other_rec.calls[0].attempt, 2u);
  EXPECT_TRUE(Stored().empty());
  EXPECT_EQ(Log().find("mail_request_dropped"), std::string::npos);
}

TEST_F(MailRequestsTest, TheWorkerHandlesQueuedRequestsAtOnceAndThoseLeftBeforeItStarted) {
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, "left@example.org"));
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> handled;
  MailRequestWorker worker(
      queue_,
      [&](const MailRequest& r, store::Mutation done) -> Status {
        std::vector<store::Mutation> batch;
        batch.push_back(std::move(done));
        Status s = store_->Apply(std::move(batch));
        std::lock_guard lock(mu);
        handled.push_back(r.address);
        cv.notify_all();
        return s;
      },
      log_, std::chrono::minutes(10));
  worker.Start();
  auto wait_for = [&](size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return handled.size() >= n; });
  };
  ASSERT_TRUE(wait_for(1));  // left before the start: the first scan
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, "new@example.org"));
  ASSERT_TRUE(wait_for(2));  // woken by the enqueue, not by the (10 min) scan
  worker.Stop();
  ASSERT_OK(queue_.Enqueue(MailRequestKind::kToken, "after@example.org"));
  EXPECT_EQ(handled, (std::vector<std::string>{"left@example.org", "new@example.org"}));
  EXPECT_EQ(Stored().size(), 1u);  // queued while stopped: stays for the next start
}

}  // namespace
}  // namespace otd::service
