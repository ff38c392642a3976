#pragma once
// The contract every store::Store implementation must pass (store/store.h): a typed gtest suite.
// An implementation instantiates it with a backend type:
//
//   struct MyBackend {
//     void SetUp();      // a fresh, empty persistent state (a directory, a database)
//     void TearDown();   // removes it
//     // Opens a store over that state with the tables "t" and "u"; called again after the
//     // previous store was destroyed, it must see everything that store acknowledged.
//     std::unique_ptr<store::Store> Open();
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(My, StoreContractTest, ::testing::Types<MyBackend>);
//
// The tests use only the interface: atomic batches, preconditions, durability on
// acknowledgement, TTL, scans under concurrent writes, asynchronous writes and group commit.
// What is specific to one backend (LMDB's map, its environment flags, crash tests with fork())
// is tested beside that backend (store/lmdb_store_test.cc).

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/status_matchers.h"
#include "store/store.h"

namespace otd::store::testing {

inline Mutation Make(Op op, std::string table, std::string_view key, std::string_view value = {},
                     int64_t expires_at = 0) {
  Mutation m;
  m.op = op;
  m.table = std::move(table);
  m.key = ToBytes(key);
  m.value = ToBytes(value);
  m.expires_at = expires_at;
  return m;
}

inline Mutation Put(std::string_view key, std::string_view value, int64_t expires_at = 0) {
  return Make(Op::kPut, "t", key, value, expires_at);
}

inline Mutation Move(std::string_view from, std::string_view to) {
  Mutation m = Make(Op::kMove, "t", from);
  m.new_key = ToBytes(to);
  return m;
}

template <class Backend>
class StoreContractTest : public ::testing::Test {
 protected:
  void SetUp() override { backend_.SetUp(); }
  void TearDown() override { backend_.TearDown(); }

  std::unique_ptr<Store> OpenStore() {
    std::unique_ptr<Store> s = backend_.Open();
    EXPECT_NE(s, nullptr);
    return s;
  }

  std::optional<std::string> GetString(const Store& s, std::string_view table,
                                       std::string_view key) {
    auto r = s.Get(table, AsBytes(key));
    EXPECT_OK(r);
    if (!r.ok() || !r->has_value()) {
      return std::nullopt;
    }
    return std::string(AsString(**r));
  }

  Backend backend_;
};

TYPED_TEST_SUITE_P(StoreContractTest);

TYPED_TEST_P(StoreContractTest, PutThenGetReturnsTheValue) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("k1", "v1")}));
  EXPECT_EQ(this->GetString(*s, "t", "k1"), "v1");
  EXPECT_EQ(this->GetString(*s, "u", "k1"), std::nullopt);  // tables are separate
  ASSERT_OK(s->Apply({Put("k1", "v2")}));                   // kPut overwrites
  EXPECT_EQ(this->GetString(*s, "t", "k1"), "v2");
}

TYPED_TEST_P(StoreContractTest, GetOfAMissingKeyReturnsNothing) {
  auto s = this->OpenStore();
  EXPECT_EQ(this->GetString(*s, "t", "absent"), std::nullopt);
}

TYPED_TEST_P(StoreContractTest, GetManyReadsSeveralTablesInOrder) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("k1", "v1"), Make(Op::kPut, "u", "k1", "u1"), Put("k2", "")}));
  const std::vector<ReadKey> keys = {{"u", AsBytes("k1")},
                                     {"t", AsBytes("absent")},
                                     {"t", AsBytes("k1")},
                                     {"t", AsBytes("k2")},
                                     {"u", AsBytes("k1")}};
  auto got = s->GetMany(keys);
  ASSERT_OK(got);
  ASSERT_EQ(got->size(), 5u);
  EXPECT_EQ((*got)[0], std::optional<Bytes>(ToBytes("u1")));
  EXPECT_EQ((*got)[1], std::nullopt);
  EXPECT_EQ((*got)[2], std::optional<Bytes>(ToBytes("v1")));
  EXPECT_EQ((*got)[3], std::optional<Bytes>(Bytes()));        // empty, not absent
  EXPECT_EQ((*got)[4], std::optional<Bytes>(ToBytes("u1")));  // a key may repeat
  auto none = s->GetMany({});
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
}

TYPED_TEST_P(StoreContractTest, GetManyRejectsTheWholeReadForOneBadKey) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("k1", "v1")}));
  EXPECT_EQ(s->GetMany({{"t", AsBytes("k1")}, {"nope", AsBytes("k1")}}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(s->GetMany({{"t", AsBytes("k1")}, {"t", ByteView()}}).status().code(),
            Code::kInvalidArgument);
  std::vector<ReadKey> many(kMaxGetMany + 1, ReadKey{"t", AsBytes("k1")});
  EXPECT_EQ(s->GetMany(many).status().code(), Code::kInvalidArgument);
  many.pop_back();
  auto most = s->GetMany(many);
  ASSERT_OK(most);
  EXPECT_EQ(most->size(), kMaxGetMany);
}

TYPED_TEST_P(StoreContractTest, EmptyValuesAreStoredAndDistinctFromAbsence) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("k", "")}));
  EXPECT_EQ(this->GetString(*s, "t", "k"), "");
}

TYPED_TEST_P(StoreContractTest, InsertOfAnExistingKeyFailsWithAlreadyExists) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Make(Op::kInsert, "t", "k", "a")}));
  Status st = s->Apply({Make(Op::kInsert, "t", "k", "b")});
  EXPECT_EQ(st.code(), Code::kAlreadyExists) << st.ToString();
  EXPECT_EQ(this->GetString(*s, "t", "k"), "a");
}

TYPED_TEST_P(StoreContractTest, UpdateOfAMissingKeyFailsWithFailedPrecondition) {
  auto s = this->OpenStore();
  EXPECT_EQ(s->Apply({Make(Op::kUpdate, "t", "k", "a")}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(this->GetString(*s, "t", "k"), std::nullopt);
  ASSERT_OK(s->Apply({Put("k", "a")}));
  ASSERT_OK(s->Apply({Make(Op::kUpdate, "t", "k", "b")}));
  EXPECT_EQ(this->GetString(*s, "t", "k"), "b");
}

TYPED_TEST_P(StoreContractTest, DeleteOfAMissingKeyFailsWithFailedPrecondition) {
  auto s = this->OpenStore();
  EXPECT_EQ(s->Apply({Make(Op::kDelete, "t", "k")}).code(), Code::kFailedPrecondition);
  ASSERT_OK(s->Apply({Put("k", "a")}));
  ASSERT_OK(s->Apply({Make(Op::kDelete, "t", "k")}));
  EXPECT_EQ(this->GetString(*s, "t", "k"), std::nullopt);
}

TYPED_TEST_P(StoreContractTest, EraseOfAMissingKeySucceeds) {
  auto s = this->OpenStore();
  EXPECT_OK(s->Apply({Make(Op::kErase, "t", "k")}));
  ASSERT_OK(s->Apply({Put("k", "a")}));
  EXPECT_OK(s->Apply({Make(Op::kErase, "t", "k")}));
  EXPECT_EQ(this->GetString(*s, "t", "k"), std::nullopt);
}

TYPED_TEST_P(StoreContractTest, MatchingExpectReplacesTheValue) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("k", "v1")}));
  Mutation m = Make(Op::kUpdate, "t", "k", "v2");
  m.expect = ToBytes("v1");
  ASSERT_OK(s->Apply({m}));
  EXPECT_EQ(this->GetString(*s, "t", "k"), "v2");
  // The same compare-and-swap again no longer matches.
  EXPECT_EQ(s->Apply({m}).code(), Code::kFailedPrecondition);
}

TYPED_TEST_P(StoreContractTest, ExpectOnAMissingKeyFailsWithFailedPrecondition) {
  auto s = this->OpenStore();
  Mutation m = Put("k", "v");
  m.expect = ToBytes("");
  EXPECT_EQ(s->Apply({m}).code(), Code::kFailedPrecondition);
  Mutation e = Make(Op::kErase, "t", "k");
  e.expect = ToBytes("x");
  EXPECT_EQ(s->Apply({e}).code(), Code::kFailedPrecondition);
}

TYPED_TEST_P(StoreContractTest, ExpectMismatchFailsAndWritesNothingOfTheBatch) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("c", "old")}));
  Mutation third = Put("c", "new");
  third.expect = ToBytes("not-old");
  Status st = s->Apply({Put("a", "1"), Make(Op::kPut, "u", "b", "2"), third});
  EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.ToString();
  EXPECT_EQ(this->GetString(*s, "t", "a"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "u", "b"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "t", "c"), "old");
}

TYPED_TEST_P(StoreContractTest, ABatchIsAtomic) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("x", "0")}));
  // Fails on the last mutation: nothing of it is visible.
  EXPECT_EQ(
      s->Apply({Put("a", "1"), Make(Op::kErase, "t", "x"), Make(Op::kInsert, "t", "a", "")}).code(),
      Code::kAlreadyExists);  // the batch's own first put makes the insert fail
  EXPECT_EQ(this->GetString(*s, "t", "a"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "t", "x"), "0");
  // Succeeds: everything is visible, later mutations see earlier ones of the same batch.
  ASSERT_TRUE(s->Apply({Make(Op::kInsert, "t", "a", "1"), Make(Op::kUpdate, "t", "a", "2"),
                        Make(Op::kDelete, "t", "x"), Make(Op::kInsert, "u", "y", "3")})
                  .ok());
  EXPECT_EQ(this->GetString(*s, "t", "a"), "2");
  EXPECT_EQ(this->GetString(*s, "t", "x"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "u", "y"), "3");
}

TYPED_TEST_P(StoreContractTest, EmptyBatchSucceedsWithoutACommit) {
  auto s = this->OpenStore();
  EXPECT_OK(s->Apply({}));
  EXPECT_EQ(s->GetStats()->commits, 0u);
}

TYPED_TEST_P(StoreContractTest, UnknownTableIsRejectedWithInvalidArgument) {
  auto s = this->OpenStore();
  EXPECT_EQ(s->Apply({Make(Op::kPut, "nope", "k", "v")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->Get("nope", AsBytes("k")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s->ForEach("nope", [](ByteView, ByteView) { return true; }).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(s->Apply({Make(Op::kPut, "__ttl", "k", "v")}).code(), Code::kInvalidArgument);
}

TYPED_TEST_P(StoreContractTest, EmptyOrOversizedKeysAreRejectedWithInvalidArgument) {
  auto s = this->OpenStore();
  EXPECT_EQ(s->Apply({Put("", "v")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->Get("t", ByteView()).status().code(), Code::kInvalidArgument);
  std::string big(600, 'k');
  EXPECT_EQ(s->Apply({Put(big, "v")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->Get("t", AsBytes(big)).status().code(), Code::kInvalidArgument);
  // 511 bytes fits a record without expiry but not one with an expiry (TTL key overhead).
  std::string max(511, 'k');
  EXPECT_OK(s->Apply({Put(max, "v")}));
  EXPECT_EQ(s->Apply({Put(max, "v", 100)}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->Apply({Put("k", "v", -1)}).code(), Code::kInvalidArgument);
  Mutation ins = Make(Op::kInsert, "t", "k", "v");
  ins.expect = ToBytes("v");
  EXPECT_EQ(s->Apply({ins}).code(), Code::kInvalidArgument);
}

TYPED_TEST_P(StoreContractTest, DataSurvivesCloseAndReopen) {
  {
    auto s = this->OpenStore();
    ASSERT_OK(s->Apply({Put("k", "v"), Make(Op::kPut, "u", "k2", "v2", 50)}));
  }
  auto s = this->OpenStore();
  EXPECT_EQ(this->GetString(*s, "t", "k"), "v");
  EXPECT_EQ(this->GetString(*s, "u", "k2"), "v2");
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  EXPECT_OK(s->Health());
}

TYPED_TEST_P(StoreContractTest, ValuesAreCopiesThatOutliveTheStore) {
  std::optional<Bytes> value;
  {
    auto s = this->OpenStore();
    ASSERT_OK(s->Apply({Put("k", std::string(10000, 'z'))}));
    auto r = s->Get("t", AsBytes("k"));
    ASSERT_OK(r);
    value = std::move(r).value();
  }  // environment closed and unmapped
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(AsString(*value), std::string(10000, 'z'));
}

TYPED_TEST_P(StoreContractTest, ForEachVisitsKeysInOrderAndCanStop) {
  auto s = this->OpenStore();
  ASSERT_TRUE(
      s->Apply({Put("b", "2"), Put("a", "1"), Put("c", "3"), Make(Op::kPut, "u", "z", "x")}).ok());
  std::vector<std::string> seen;
  ASSERT_TRUE(s->ForEach("t", [&](ByteView k, ByteView v) {
                 seen.push_back(std::string(AsString(k)) + "=" + std::string(AsString(v)));
                 return true;
               }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a=1", "b=2", "c=3"}));
  seen.clear();
  ASSERT_TRUE(s->ForEach("t", [&](ByteView k, ByteView) {
                 seen.emplace_back(AsString(k));
                 return seen.size() < 2;
               }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
}

TYPED_TEST_P(StoreContractTest, GetInsideAForEachCallbackWorks) {
  // Needs read transactions that are not bound to the thread (MDB_NOTLS).
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("a", "1"), Make(Op::kPut, "u", "a", "other")}));
  int visited = 0;
  ASSERT_TRUE(s->ForEach("t", [&](ByteView k, ByteView) {
                 auto r = s->Get("u", k);
                 EXPECT_TRUE(r.ok()) << r.status().ToString();
                 EXPECT_EQ(AsString(**r), "other");
                 ++visited;
                 return true;
               }).ok());
  EXPECT_EQ(visited, 1);
}

TYPED_TEST_P(StoreContractTest, ApplyAsyncCompletesOnTheWriterThread) {
  auto s = this->OpenStore();
  std::promise<std::pair<Status, Status>> done;
  auto fut = done.get_future();
  const auto caller = std::this_thread::get_id();
  s->ApplyAsync({Put("k", "v")}, [&](Status st) {
    EXPECT_NE(std::this_thread::get_id(), caller);
    // Apply from the writer thread would wait for itself: refused instead of deadlocking.
    Status nested = s->Apply({Put("k2", "v")});
    done.set_value({st, nested});
  });
  auto [st, nested] = fut.get();
  EXPECT_OK(st);
  EXPECT_EQ(nested.code(), Code::kInternal);
  EXPECT_EQ(this->GetString(*s, "t", "k"), "v");

  std::promise<Status> invalid;
  s->ApplyAsync({Make(Op::kPut, "nope", "k", "v")}, [&](Status x) { invalid.set_value(x); });
  EXPECT_EQ(invalid.get_future().get().code(), Code::kInvalidArgument);
}

TYPED_TEST_P(StoreContractTest, DestructorDrainsQueuedAsyncWrites) {
  std::atomic<int> ok{0};
  {
    auto s = this->OpenStore();
    for (int i = 0; i < 50; ++i) {
      s->ApplyAsync({Put("k" + std::to_string(i), "v")}, [&](Status st) {
        if (st.ok()) {
          ++ok;
        }
      });
    }
  }
  EXPECT_EQ(ok.load(), 50);
  auto s = this->OpenStore();
  EXPECT_EQ(s->GetStats()->tables["t"].entries, 50u);
}

TYPED_TEST_P(StoreContractTest, ConcurrentAppliesAllSucceedAndShareCommits) {
  auto s = this->OpenStore();
  constexpr int kThreads = 8;
  constexpr int kBatches = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBatches; ++i) {
        std::string k = std::to_string(t) + "-" + std::to_string(i);
        if (!s->Apply({Make(Op::kInsert, "t", k, k), Make(Op::kPut, "u", k, "x")}).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  auto stats = s->GetStats();
  ASSERT_OK(stats);
  EXPECT_EQ(stats->batches, uint64_t{kThreads * kBatches});
  EXPECT_LT(stats->commits, stats->batches);
  EXPECT_EQ(stats->tables["t"].entries, uint64_t{kThreads * kBatches});
  EXPECT_EQ(stats->tables["u"].entries, uint64_t{kThreads * kBatches});
  std::printf("[ info ] group commit: %llu batches in %llu commits\n",
              static_cast<unsigned long long>(stats->batches),
              static_cast<unsigned long long>(stats->commits));
}

TYPED_TEST_P(StoreContractTest, AFailingBatchInAGroupDoesNotAffectTheOthers) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("taken", "0")}));
  constexpr int kThreads = 12;
  constexpr int kBatches = 60;
  std::atomic<int> good_failures{0};
  std::atomic<int> bad_wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBatches; ++i) {
        std::string k = std::to_string(t) + "-" + std::to_string(i);
        if (t == 0) {
          // Writes its own key first, then conflicts: the whole batch must vanish.
          Status st = s->Apply({Put("bad" + k, "x"), Make(Op::kInsert, "t", "taken", "1")});
          if (st.code() != Code::kAlreadyExists) {
            ++bad_wrong;
          }
        } else if (!s->Apply({Make(Op::kInsert, "t", k, k)}).ok()) {
          ++good_failures;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(good_failures.load(), 0);
  EXPECT_EQ(bad_wrong.load(), 0);
  EXPECT_EQ(this->GetString(*s, "t", "taken"), "0");
  auto stats = s->GetStats();
  EXPECT_EQ(stats->tables["t"].entries, uint64_t{1 + (kThreads - 1) * kBatches});
  EXPECT_EQ(stats->batches, uint64_t{1 + (kThreads - 1) * kBatches});
  EXPECT_LT(stats->commits, stats->batches);
  for (int i = 0; i < kBatches; ++i) {
    EXPECT_EQ(this->GetString(*s, "t", "bad0-" + std::to_string(i)), std::nullopt);
  }
}

TYPED_TEST_P(StoreContractTest, PurgeDeletesRecordsWhoseExpiryHasPassed) {
  auto s = this->OpenStore();
  ASSERT_TRUE(s->Apply({Put("old1", "v", 100), Put("old2", "v", 200), Put("future", "v", 1000),
                        Put("forever", "v"), Make(Op::kPut, "u", "old3", "v", 150)})
                  .ok());
  EXPECT_EQ(s->GetStats()->ttl_entries, 4u);
  auto n = s->PurgeExpired(500, 100);
  ASSERT_OK(n);
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(this->GetString(*s, "t", "old1"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "t", "old2"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "u", "old3"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "t", "future"), "v");
  EXPECT_EQ(this->GetString(*s, "t", "forever"), "v");
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  EXPECT_EQ(*s->PurgeExpired(500, 100), 0u);
  EXPECT_EQ(*s->PurgeExpired(1000, 100), 1u);  // expires_at <= now
  EXPECT_EQ(s->GetStats()->ttl_entries, 0u);
}

TYPED_TEST_P(StoreContractTest, PurgeStopsAtTheMaximum) {
  auto s = this->OpenStore();
  std::vector<Mutation> batch;
  for (int i = 0; i < 10; ++i) {
    batch.push_back(Put("k" + std::to_string(i), "v", 10 + i));
  }
  ASSERT_OK(s->Apply(batch));
  EXPECT_EQ(*s->PurgeExpired(100, 4), 4u);
  EXPECT_EQ(s->GetStats()->tables["t"].entries, 6u);
  EXPECT_EQ(this->GetString(*s, "t", "k3"), std::nullopt);  // the earliest go first
  EXPECT_EQ(this->GetString(*s, "t", "k4"), "v");
  EXPECT_EQ(*s->PurgeExpired(100, 100), 6u);
  EXPECT_EQ(*s->PurgeExpired(100, 0), 0u);
}

TYPED_TEST_P(StoreContractTest, ARecordRePutWithoutExpiryIsNotPurged) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("k", "v1", 100)}));
  ASSERT_OK(s->Apply({Put("k", "v2", 0)}));
  EXPECT_EQ(s->GetStats()->ttl_entries, 0u);
  EXPECT_EQ(*s->PurgeExpired(1000, 100), 0u);
  EXPECT_EQ(this->GetString(*s, "t", "k"), "v2");
}

TYPED_TEST_P(StoreContractTest, ReplacingTheExpiryMovesTheTtlEntry) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("k", "v1", 100)}));
  ASSERT_OK(s->Apply({Make(Op::kUpdate, "t", "k", "v2", 1000)}));
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  EXPECT_EQ(*s->PurgeExpired(500, 100), 0u);  // the old expiry no longer applies
  EXPECT_EQ(this->GetString(*s, "t", "k"), "v2");
  // Moving it earlier takes effect as well.
  ASSERT_OK(s->Apply({Put("k", "v3", 300)}));
  EXPECT_EQ(*s->PurgeExpired(500, 100), 1u);
  EXPECT_EQ(this->GetString(*s, "t", "k"), std::nullopt);
}

TYPED_TEST_P(StoreContractTest, DeletingARecordRemovesItsTtlEntry) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("a", "v", 100), Put("b", "v", 100)}));
  ASSERT_OK(s->Apply({Make(Op::kDelete, "t", "a"), Make(Op::kErase, "t", "b")}));
  EXPECT_EQ(s->GetStats()->ttl_entries, 0u);
  // A new record under the same key without expiry is not touched by the old TTL.
  ASSERT_OK(s->Apply({Put("a", "new")}));
  EXPECT_EQ(*s->PurgeExpired(1000, 100), 0u);
  EXPECT_EQ(this->GetString(*s, "t", "a"), "new");
}

TYPED_TEST_P(StoreContractTest, MoveReKeysTheRecordAndItsExpiry) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("a", "va", 100), Put("b", "vb"), Put("taken", "x")}));
  ASSERT_OK(s->Apply({Move("a", "a2"), Move("b", "b2")}));
  EXPECT_EQ(this->GetString(*s, "t", "a"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "t", "a2"), "va");
  EXPECT_EQ(this->GetString(*s, "t", "b2"), "vb");
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  // The expiry moved with the record; the record without one stays without.
  EXPECT_EQ(*s->PurgeExpired(1000, 100), 1u);
  EXPECT_EQ(this->GetString(*s, "t", "a2"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "t", "b2"), "vb");
  // A missing source, an existing target, a CAS mismatch: nothing changes.
  EXPECT_EQ(s->Apply({Move("nope", "n2")}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(s->Apply({Move("b2", "taken")}).code(), Code::kAlreadyExists);
  Mutation cas = Move("b2", "b3");
  cas.expect = ToBytes("other");
  EXPECT_EQ(s->Apply({cas}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(s->Apply({Move("b2", "b2")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(this->GetString(*s, "t", "b2"), "vb");
  EXPECT_EQ(this->GetString(*s, "t", "taken"), "x");
  cas.expect = ToBytes("vb");
  ASSERT_OK(s->Apply({cas}));
  EXPECT_EQ(this->GetString(*s, "t", "b3"), "vb");
}

TYPED_TEST_P(StoreContractTest, AnUpdateThatKeepsTheExpiryLeavesTheTtlEntry) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("k", "v1", 100)}));
  Mutation m = Make(Op::kUpdate, "t", "k", "v2");
  m.keep_expiry = true;
  m.expect = ToBytes("v1");
  ASSERT_OK(s->Apply({m}));
  EXPECT_EQ(this->GetString(*s, "t", "k"), "v2");
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  EXPECT_EQ(*s->ExpiryOf("t", ToBytes("k")), 100);
  EXPECT_EQ(*s->ExpiryOf("t", ToBytes("absent")), 0);
  ASSERT_OK(s->Apply({Put("forever", "v")}));
  EXPECT_EQ(*s->ExpiryOf("t", ToBytes("forever")), 0);
  EXPECT_EQ(*s->PurgeExpired(500, 100), 1u);
  EXPECT_EQ(this->GetString(*s, "t", "k"), std::nullopt);
}

TYPED_TEST_P(StoreContractTest, StatsReportTablesCommitsAndTtlEntries) {
  auto s = this->OpenStore();
  ASSERT_OK(s->Apply({Put("a", "1"), Put("b", "2", 100)}));
  auto st = s->GetStats();
  ASSERT_OK(st);
  EXPECT_EQ(st->tables["t"].entries, 2u);
  EXPECT_GT(st->tables["t"].bytes, 0u);
  EXPECT_EQ(st->tables["u"].entries, 0u);
  EXPECT_EQ(st->commits, 1u);
  EXPECT_EQ(st->batches, 1u);
  EXPECT_EQ(st->ttl_entries, 1u);
  EXPECT_OK(s->Health());
}

// A scan sees one consistent snapshot: writers insert and delete records in pairs (one batch
// each), so every scan must see both halves of a pair or neither, however the writes interleave.
TYPED_TEST_P(StoreContractTest, ScansSeeConsistentSnapshotsUnderConcurrentWrites) {
  auto s = this->OpenStore();
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop.load(); ++i) {
        const std::string id = std::to_string(w) + "-" + std::to_string(i % 20);
        const std::string a = "a" + id;
        const std::string b = "b" + id;
        if (i % 40 < 20) {
          if (s->Apply({Make(Op::kInsert, "t", a, id), Make(Op::kInsert, "t", b, id)}).ok()) {
            ++writes;
          }
        } else if (s->Apply({Make(Op::kDelete, "t", a), Make(Op::kDelete, "t", b)}).ok()) {
          ++writes;
        }
      }
    });
  }
  int scans = 0;
  size_t torn = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  while (std::chrono::steady_clock::now() < until || scans < 20) {
    std::set<std::string> as;
    std::set<std::string> bs;
    ASSERT_TRUE(s->ForEach("t", [&](ByteView k, ByteView v) {
                   std::string key(AsString(k));
                   EXPECT_EQ(key.substr(1), std::string(AsString(v)));
                   (key[0] == 'a' ? as : bs).insert(key.substr(1));
                   return true;
                 }).ok());
    if (as != bs) {
      ++torn;
    }
    ++scans;
  }
  stop = true;
  for (auto& t : writers) {
    t.join();
  }
  EXPECT_EQ(torn, 0u) << "of " << scans << " scans";
  EXPECT_GT(writes.load(), 0);
  std::printf("[ info ] %d consistent scans during %d writes\n", scans, writes.load());
}

// Every acknowledged asynchronous write is durable: it is there after the store is closed and
// opened again, and a callback that saw Ok never describes a write that is missing.
TYPED_TEST_P(StoreContractTest, AcknowledgedAsyncWritesAreDurable) {
  std::mutex mu;
  std::vector<std::string> acked;
  {
    auto s = this->OpenStore();
    for (int i = 0; i < 200; ++i) {
      const std::string k = "k" + std::to_string(i);
      // Every tenth batch fails its precondition: it must leave nothing behind.
      Mutation m = Make(Op::kPut, "t", k, "v" + k);
      if (i % 10 == 0) {
        m.expect = ToBytes("never");
      }
      s->ApplyAsync({m, Make(Op::kPut, "u", k, "w")}, [&, k](Status st) {
        if (st.ok()) {
          std::lock_guard lk(mu);
          acked.push_back(k);
        }
      });
    }
  }
  EXPECT_EQ(acked.size(), 180u);
  auto s = this->OpenStore();
  for (const std::string& k : acked) {
    EXPECT_EQ(this->GetString(*s, "t", k), "v" + k);
    EXPECT_EQ(this->GetString(*s, "u", k), "w");
  }
  EXPECT_EQ(this->GetString(*s, "t", "k0"), std::nullopt);
  EXPECT_EQ(this->GetString(*s, "u", "k0"), std::nullopt);
  EXPECT_EQ(s->GetStats()->tables["u"].entries, 180u);
}

REGISTER_TYPED_TEST_SUITE_P(
    StoreContractTest, PutThenGetReturnsTheValue, GetOfAMissingKeyReturnsNothing,
    GetManyReadsSeveralTablesInOrder, GetManyRejectsTheWholeReadForOneBadKey,
    EmptyValuesAreStoredAndDistinctFromAbsence, InsertOfAnExistingKeyFailsWithAlreadyExists,
    UpdateOfAMissingKeyFailsWithFailedPrecondition, DeleteOfAMissingKeyFailsWithFailedPrecondition,
    EraseOfAMissingKeySucceeds, MatchingExpectReplacesTheValue,
    ExpectOnAMissingKeyFailsWithFailedPrecondition, ExpectMismatchFailsAndWritesNothingOfTheBatch,
    ABatchIsAtomic, EmptyBatchSucceedsWithoutACommit, UnknownTableIsRejectedWithInvalidArgument,
    EmptyOrOversizedKeysAreRejectedWithInvalidArgument, DataSurvivesCloseAndReopen,
    ValuesAreCopiesThatOutliveTheStore, ForEachVisitsKeysInOrderAndCanStop,
    GetInsideAForEachCallbackWorks, ApplyAsyncCompletesOnTheWriterThread,
    DestructorDrainsQueuedAsyncWrites, ConcurrentAppliesAllSucceedAndShareCommits,
    AFailingBatchInAGroupDoesNotAffectTheOthers, PurgeDeletesRecordsWhoseExpiryHasPassed,
    PurgeStopsAtTheMaximum, ARecordRePutWithoutExpiryIsNotPurged,
    ReplacingTheExpiryMovesTheTtlEntry, DeletingARecordRemovesItsTtlEntry,
    MoveReKeysTheRecordAndItsExpiry, AnUpdateThatKeepsTheExpiryLeavesTheTtlEntry,
    StatsReportTablesCommitsAndTtlEntries, ScansSeeConsistentSnapshotsUnderConcurrentWrites,
    AcknowledgedAsyncWritesAreDurable);

}  // namespace otd::store::testing
