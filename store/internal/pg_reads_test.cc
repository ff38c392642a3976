// ReadCoalescer (store/internal/pg_reads.h) over a fake statement runner: when its slots are
// busy, the reads of later callers leave together in one statement, each caller gets its own
// values in order, errors reach every caller of the failed statement, and a statement never
// carries more than max_keys keys. PgStore's use of it runs against a real PostgreSQL in
// pg_store_test.cc.
#include "store/internal/pg_reads.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace otd::store::internal {
namespace {

// The value of a key is "<table>/<key>"; keys starting with "missing" have none.
ReadCoalescer::Values Echo(const std::vector<ReadKey>& keys) {
  ReadCoalescer::Values out;
  for (const ReadKey& k : keys) {
    std::string key(AsString(k.key));
    if (key.rfind("missing", 0) == 0) {
      out.emplace_back(std::nullopt);
    } else {
      out.emplace_back(ToBytes(std::string(k.table) + "/" + key));
    }
  }
  return out;
}

// A runner whose first statement waits until Release(), so that later callers queue.
class GatedRunner {
 public:
  Result<ReadCoalescer::Values> Run(const std::vector<ReadKey>& keys) {
    {
      std::unique_lock lock(mu_);
      sizes_.push_back(keys.size());
      if (sizes_.size() == 1) {
        cv_.wait(lock, [&] { return released_; });
      }
      if (fail_) {
        return Unavailable("store: connection lost");
      }
    }
    return Echo(keys);
  }
  void Release(bool fail = false) {
    std::lock_guard lock(mu_);
    released_ = true;
    fail_ = fail;
    cv_.notify_all();
  }
  std::vector<size_t> Sizes() {
    std::lock_guard lock(mu_);
    return sizes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  bool fail_ = false;
  std::vector<size_t> sizes_;
};

// Waits until `n` callers have called Read() and are waiting (their reads not yet run).
void WaitForCallers(std::atomic<int>& started, int n) {
  while (started.load() < n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // into Read() and queued
}

TEST(ReadCoalescerTest, AnIdleReadRunsAtOnceAndGetsItsValuesInOrder) {
  ReadCoalescer reads([](const std::vector<ReadKey>& k) { return Echo(k); }, 2, kMaxGetMany);
  Bytes a = ToBytes("a");
  Bytes m = ToBytes("missing-b");
  auto got =
      reads.Read({{.table = "t", .key = a}, {.table = "u", .key = m}, {.table = "t", .key = a}});
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0], ToBytes("t/a"));
  EXPECT_FALSE((*got)[1].has_value());
  EXPECT_EQ((*got)[2], ToBytes("t/a"));
  EXPECT_EQ(reads.statements(), 1u);
  EXPECT_TRUE(reads.Read({}).ok());
  EXPECT_EQ(reads.statements(), 1u);  // nothing to read: no statement
}

TEST(ReadCoalescerTest, CallersThatFindTheSlotsBusyLeaveTogetherInTheNextStatement) {
  GatedRunner runner;
  ReadCoalescer reads([&](const std::vector<ReadKey>& k) { return runner.Run(k); }, 1, kMaxGetMany);
  std::atomic<int> started = 0;
  std::vector<std::thread> threads;
  std::vector<std::string> got(6);
  auto caller = [&](int i) {
    Bytes key = ToBytes("k" + std::to_string(i));
    Bytes missing = ToBytes("missing" + std::to_string(i));
    ++started;
    auto v = reads.Read({{.table = "t", .key = key}, {.table = "t", .key = missing}});
    ASSERT_TRUE(v.ok());
    ASSERT_EQ(v->size(), 2u);
    ASSERT_TRUE((*v)[0].has_value());
    EXPECT_FALSE((*v)[1].has_value());
    got[static_cast<size_t>(i)] = std::string(AsString(*(*v)[0]));
  };
  threads.emplace_back(caller, 0);  // runs at once and holds the only slot
  WaitForCallers(started, 1);
  for (int i = 1; i < 6; ++i) {
    threads.emplace_back(caller, i);
  }
  WaitForCallers(started, 6);
  runner.Release();
  for (auto& t : threads) {
    t.join();
  }
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(got[static_cast<size_t>(i)], "t/k" + std::to_string(i));
  }
  EXPECT_EQ(runner.Sizes(), (std::vector<size_t>{2, 10}));  // the five queued callers: one
  EXPECT_EQ(reads.statements(), 2u);
  EXPECT_EQ(reads.callers(), 6u);
}

TEST(ReadCoalescerTest, AFailedStatementFailsEveryCallerInIt) {
  GatedRunner runner;
  ReadCoalescer reads([&](const std::vector<ReadKey>& k) { return runner.Run(k); }, 1, kMaxGetMany);
  std::atomic<int> started = 0;
  std::atomic<int> failed = 0;
  auto caller = [&] {
    Bytes key = ToBytes("k");
    ++started;
    auto v = reads.Read({{.table = "t", .key = key}});
    if (!v.ok() && v.status().code() == Code::kUnavailable) {
      ++failed;
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(caller);
  WaitForCallers(started, 1);
  threads.emplace_back(caller);
  threads.emplace_back(caller);
  WaitForCallers(started, 3);
  runner.Release(/*fail=*/true);
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failed.load(), 3);
  EXPECT_EQ(reads.statements(), 2u);
}

TEST(ReadCoalescerTest, AStatementCarriesAtMostMaxKeys) {
  GatedRunner runner;
  ReadCoalescer reads([&](const std::vector<ReadKey>& k) { return runner.Run(k); }, 1,
                      2 * kMaxGetMany);
  std::atomic<int> started = 0;
  auto caller = [&](size_t n) {
    std::vector<Bytes> keys;
    for (size_t i = 0; i < n; ++i) {
      keys.push_back(ToBytes("k" + std::to_string(i)));
    }
    std::vector<ReadKey> rk;
    for (const Bytes& k : keys) {
      rk.push_back({.table = "t", .key = k});
    }
    ++started;
    auto v = reads.Read(rk);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->size(), n);
  };
  std::vector<std::thread> threads;
  threads.emplace_back(caller, 1);
  WaitForCallers(started, 1);
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back(caller, kMaxGetMany);
  }
  WaitForCallers(started, 4);
  runner.Release();
  for (auto& t : threads) {
    t.join();
  }
  // 1, then two callers of 64 (128 = max_keys), then the third alone.
  EXPECT_EQ(runner.Sizes(), (std::vector<size_t>{1, 2 * kMaxGetMany, kMaxGetMany}));
}

}  // namespace
}  // namespace otd::store::internal
