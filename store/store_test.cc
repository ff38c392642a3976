#include "store/store.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "store/internal/store_test_peer.h"
#include "store/internal/ttl_keys.h"

#include "tests/support/temp_dir.h"

namespace otd::store {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test (tests/support/temp_dir.h), named for this suite.
class TempDir : public otd::testing::TempDir {
 public:
  TempDir() : otd::testing::TempDir("otd_store_test") {}
};

Mutation Make(Op op, std::string table, std::string_view key, std::string_view value = {},
              int64_t expires_at = 0) {
  Mutation m;
  m.op = op;
  m.table = std::move(table);
  m.key = ToBytes(key);
  m.value = ToBytes(value);
  m.expires_at = expires_at;
  return m;
}

Mutation Put(std::string_view key, std::string_view value, int64_t expires_at = 0) {
  return Make(Op::kPut, "t", key, value, expires_at);
}

size_t CountLines(const std::string& text, std::string_view needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

class StoreTest : public ::testing::Test {
 protected:
  Options MakeOptions() const {
    Options o;
    o.path = dir_.Sub("db");
    o.map_size_bytes = 64ull << 20;
    o.tables = {"t", "u"};
    return o;
  }

  std::unique_ptr<Store> OpenStore(const Options& o) {
    auto r = Store::Open(o, &log_);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::unique_ptr<Store> OpenStore() { return OpenStore(MakeOptions()); }

  std::optional<std::string> GetString(const Store& s, std::string_view table,
                                       std::string_view key) {
    auto r = s.Get(table, AsBytes(key));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || !r->has_value()) {
      return std::nullopt;
    }
    return std::string(AsString(**r));
  }

  TempDir dir_;
  std::ostringstream log_out_;
  Logger log_{log_out_, LogLevel::kDebug};
};

// --- basic operations --------------------------------------------------------------------------

TEST_F(StoreTest, PutThenGetReturnsTheValue) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("k1", "v1")}).ok());
  EXPECT_EQ(GetString(*s, "t", "k1"), "v1");
  EXPECT_EQ(GetString(*s, "u", "k1"), std::nullopt);  // tables are separate
  ASSERT_TRUE(s->Apply({Put("k1", "v2")}).ok());      // kPut overwrites
  EXPECT_EQ(GetString(*s, "t", "k1"), "v2");
}

TEST_F(StoreTest, GetOfAMissingKeyReturnsNothing) {
  auto s = OpenStore();
  EXPECT_EQ(GetString(*s, "t", "absent"), std::nullopt);
}

TEST_F(StoreTest, EmptyValuesAreStoredAndDistinctFromAbsence) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("k", "")}).ok());
  EXPECT_EQ(GetString(*s, "t", "k"), "");
}

TEST_F(StoreTest, InsertOfAnExistingKeyFailsWithAlreadyExists) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Make(Op::kInsert, "t", "k", "a")}).ok());
  Status st = s->Apply({Make(Op::kInsert, "t", "k", "b")});
  EXPECT_EQ(st.code(), Code::kAlreadyExists) << st.ToString();
  EXPECT_EQ(GetString(*s, "t", "k"), "a");
}

TEST_F(StoreTest, UpdateOfAMissingKeyFailsWithFailedPrecondition) {
  auto s = OpenStore();
  EXPECT_EQ(s->Apply({Make(Op::kUpdate, "t", "k", "a")}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(GetString(*s, "t", "k"), std::nullopt);
  ASSERT_TRUE(s->Apply({Put("k", "a")}).ok());
  ASSERT_TRUE(s->Apply({Make(Op::kUpdate, "t", "k", "b")}).ok());
  EXPECT_EQ(GetString(*s, "t", "k"), "b");
}

TEST_F(StoreTest, DeleteOfAMissingKeyFailsWithFailedPrecondition) {
  auto s = OpenStore();
  EXPECT_EQ(s->Apply({Make(Op::kDelete, "t", "k")}).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(s->Apply({Put("k", "a")}).ok());
  ASSERT_TRUE(s->Apply({Make(Op::kDelete, "t", "k")}).ok());
  EXPECT_EQ(GetString(*s, "t", "k"), std::nullopt);
}

TEST_F(StoreTest, EraseOfAMissingKeySucceeds) {
  auto s = OpenStore();
  EXPECT_TRUE(s->Apply({Make(Op::kErase, "t", "k")}).ok());
  ASSERT_TRUE(s->Apply({Put("k", "a")}).ok());
  EXPECT_TRUE(s->Apply({Make(Op::kErase, "t", "k")}).ok());
  EXPECT_EQ(GetString(*s, "t", "k"), std::nullopt);
}

TEST_F(StoreTest, MatchingExpectReplacesTheValue) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("k", "v1")}).ok());
  Mutation m = Make(Op::kUpdate, "t", "k", "v2");
  m.expect = ToBytes("v1");
  ASSERT_TRUE(s->Apply({m}).ok());
  EXPECT_EQ(GetString(*s, "t", "k"), "v2");
  // The same compare-and-swap again no longer matches.
  EXPECT_EQ(s->Apply({m}).code(), Code::kFailedPrecondition);
}

TEST_F(StoreTest, ExpectOnAMissingKeyFailsWithFailedPrecondition) {
  auto s = OpenStore();
  Mutation m = Put("k", "v");
  m.expect = ToBytes("");
  EXPECT_EQ(s->Apply({m}).code(), Code::kFailedPrecondition);
  Mutation e = Make(Op::kErase, "t", "k");
  e.expect = ToBytes("x");
  EXPECT_EQ(s->Apply({e}).code(), Code::kFailedPrecondition);
}

TEST_F(StoreTest, ExpectMismatchFailsAndWritesNothingOfTheBatch) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("c", "old")}).ok());
  Mutation third = Put("c", "new");
  third.expect = ToBytes("not-old");
  Status st = s->Apply({Put("a", "1"), Make(Op::kPut, "u", "b", "2"), third});
  EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.ToString();
  EXPECT_EQ(GetString(*s, "t", "a"), std::nullopt);
  EXPECT_EQ(GetString(*s, "u", "b"), std::nullopt);
  EXPECT_EQ(GetString(*s, "t", "c"), "old");
}

TEST_F(StoreTest, ABatchIsAtomic) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("x", "0")}).ok());
  // Fails on the last mutation: nothing of it is visible.
  EXPECT_EQ(s->Apply({Put("a", "1"), Make(Op::kErase, "t", "x"), Make(Op::kInsert, "t", "a", "")})
                .code(),
            Code::kAlreadyExists);  // the batch's own first put makes the insert fail
  EXPECT_EQ(GetString(*s, "t", "a"), std::nullopt);
  EXPECT_EQ(GetString(*s, "t", "x"), "0");
  // Succeeds: everything is visible, later mutations see earlier ones of the same batch.
  ASSERT_TRUE(s->Apply({Make(Op::kInsert, "t", "a", "1"), Make(Op::kUpdate, "t", "a", "2"),
                        Make(Op::kDelete, "t", "x"), Make(Op::kInsert, "u", "y", "3")})
                  .ok());
  EXPECT_EQ(GetString(*s, "t", "a"), "2");
  EXPECT_EQ(GetString(*s, "t", "x"), std::nullopt);
  EXPECT_EQ(GetString(*s, "u", "y"), "3");
}

TEST_F(StoreTest, EmptyBatchSucceedsWithoutACommit) {
  auto s = OpenStore();
  EXPECT_TRUE(s->Apply({}).ok());
  EXPECT_EQ(s->GetStats()->commits, 0u);
}

TEST_F(StoreTest, UnknownTableIsRejectedWithInvalidArgument) {
  auto s = OpenStore();
  EXPECT_EQ(s->Apply({Make(Op::kPut, "nope", "k", "v")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->Get("nope", AsBytes("k")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s->ForEach("nope", [](ByteView, ByteView) { return true; }).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(s->Apply({Make(Op::kPut, "__ttl", "k", "v")}).code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, EmptyOrOversizedKeysAreRejectedWithInvalidArgument) {
  auto s = OpenStore();
  EXPECT_EQ(s->Apply({Put("", "v")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->Get("t", ByteView()).status().code(), Code::kInvalidArgument);
  std::string big(600, 'k');
  EXPECT_EQ(s->Apply({Put(big, "v")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->Get("t", AsBytes(big)).status().code(), Code::kInvalidArgument);
  // 511 bytes fits a record without expiry but not one with an expiry (TTL key overhead).
  std::string max(511, 'k');
  EXPECT_TRUE(s->Apply({Put(max, "v")}).ok());
  EXPECT_EQ(s->Apply({Put(max, "v", 100)}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->Apply({Put("k", "v", -1)}).code(), Code::kInvalidArgument);
  Mutation ins = Make(Op::kInsert, "t", "k", "v");
  ins.expect = ToBytes("v");
  EXPECT_EQ(s->Apply({ins}).code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, ReservedDuplicateOrEmptyTableNamesAreRejectedAtOpen) {
  for (std::vector<std::string> tables : {std::vector<std::string>{"__mine"},
                                          std::vector<std::string>{"a", "a"},
                                          std::vector<std::string>{""},
                                          std::vector<std::string>{std::string(256, 'x')}}) {
    Options o = MakeOptions();
    o.tables = tables;
    EXPECT_EQ(Store::Open(o, &log_).status().code(), Code::kInvalidArgument);
  }
}

TEST_F(StoreTest, OpeningTheSameDirectoryTwiceInOneProcessFails) {
  auto s = OpenStore();
  EXPECT_EQ(Store::Open(MakeOptions(), &log_).status().code(), Code::kFailedPrecondition);
  s.reset();
  EXPECT_NE(OpenStore(), nullptr);  // released on close
}

TEST_F(StoreTest, OpenCreatesThePrivateDirectory) {
  Options o = MakeOptions();
  o.path = dir_.Sub("a/b/c");
  auto s = OpenStore(o);
  ASSERT_NE(s, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(o.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((o.path + "/data.mdb").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u);
}

TEST_F(StoreTest, EnvironmentHasNoUnsafeDurabilityFlags) {
  auto s = OpenStore();
  unsigned flags = internal::StoreTestPeer::EnvFlags(*s);
  for (unsigned bad : {MDB_NOSYNC, MDB_NOMETASYNC, MDB_WRITEMAP, MDB_MAPASYNC, MDB_NOMEMINIT,
                       MDB_NOLOCK, MDB_RDONLY}) {
    EXPECT_EQ(flags & bad, 0u) << "flag " << bad;
  }
  EXPECT_NE(flags & MDB_NOTLS, 0u);
}

TEST_F(StoreTest, DataSurvivesCloseAndReopen) {
  {
    auto s = OpenStore();
    ASSERT_TRUE(s->Apply({Put("k", "v"), Make(Op::kPut, "u", "k2", "v2", 50)}).ok());
  }
  auto s = OpenStore();
  EXPECT_EQ(GetString(*s, "t", "k"), "v");
  EXPECT_EQ(GetString(*s, "u", "k2"), "v2");
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  EXPECT_TRUE(s->Health().ok());
}

TEST_F(StoreTest, ValuesAreCopiesThatOutliveTheStore) {
  std::optional<Bytes> value;
  {
    auto s = OpenStore();
    ASSERT_TRUE(s->Apply({Put("k", std::string(10000, 'z'))}).ok());
    auto r = s->Get("t", AsBytes("k"));
    ASSERT_TRUE(r.ok());
    value = std::move(r).value();
  }  // environment closed and unmapped
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(AsString(*value), std::string(10000, 'z'));
}

TEST_F(StoreTest, ForEachVisitsKeysInOrderAndCanStop) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("b", "2"), Put("a", "1"), Put("c", "3"),
                        Make(Op::kPut, "u", "z", "x")})
                  .ok());
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

TEST_F(StoreTest, GetInsideAForEachCallbackWorks) {
  // Needs read transactions that are not bound to the thread (MDB_NOTLS).
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("a", "1"), Make(Op::kPut, "u", "a", "other")}).ok());
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

TEST_F(StoreTest, ApplyAsyncCompletesOnTheWriterThread) {
  auto s = OpenStore();
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
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(nested.code(), Code::kInternal);
  EXPECT_EQ(GetString(*s, "t", "k"), "v");

  std::promise<Status> invalid;
  s->ApplyAsync({Make(Op::kPut, "nope", "k", "v")}, [&](Status x) { invalid.set_value(x); });
  EXPECT_EQ(invalid.get_future().get().code(), Code::kInvalidArgument);
}

TEST_F(StoreTest, DestructorDrainsQueuedAsyncWrites) {
  std::atomic<int> ok{0};
  {
    auto s = OpenStore();
    for (int i = 0; i < 50; ++i) {
      s->ApplyAsync({Put("k" + std::to_string(i), "v")}, [&](Status st) {
        if (st.ok()) {
          ++ok;
        }
      });
    }
  }
  EXPECT_EQ(ok.load(), 50);
  auto s = OpenStore();
  EXPECT_EQ(s->GetStats()->tables["t"].entries, 50u);
}

TEST_F(StoreTest, StatsCountFreedPagesSoInUseShrinksAfterDeletes) {
  // used_bytes is LMDB's high-water mark; free_bytes is what it can hand out again.
  auto s = OpenStore();
  const std::string value(1000, 'v');
  for (int batch = 0; batch < 20; ++batch) {
    std::vector<Mutation> b;
    for (int i = 0; i < 100; ++i) {
      b.push_back(Put("k" + std::to_string(batch * 100 + i), value));
    }
    ASSERT_TRUE(s->Apply(std::move(b)).ok());
  }
  auto full = s->GetStats();
  ASSERT_TRUE(full.ok());
  EXPECT_GE(full->used_bytes - full->free_bytes, 2000u * 1000u);
  for (int batch = 0; batch < 20; ++batch) {
    std::vector<Mutation> b;
    for (int i = 0; i < 100; ++i) {
      b.push_back(Make(Op::kErase, "t", "k" + std::to_string(batch * 100 + i)));
    }
    ASSERT_TRUE(s->Apply(std::move(b)).ok());
  }
  auto emptied = s->GetStats();
  ASSERT_TRUE(emptied.ok());
  EXPECT_GE(emptied->used_bytes, full->used_bytes);  // the high-water mark never drops
  EXPECT_GT(emptied->free_bytes, 2000u * 1000u * 9 / 10);
  EXPECT_LT(emptied->used_bytes - emptied->free_bytes, 200u * 1024u);
  EXPECT_LE(emptied->free_bytes, emptied->used_bytes);
}

// --- group commit --------------------------------------------------------------------------------

TEST_F(StoreTest, ConcurrentAppliesAllSucceedAndShareCommits) {
  auto s = OpenStore();
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
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->batches, uint64_t{kThreads * kBatches});
  EXPECT_LT(stats->commits, stats->batches);
  EXPECT_EQ(stats->tables["t"].entries, uint64_t{kThreads * kBatches});
  EXPECT_EQ(stats->tables["u"].entries, uint64_t{kThreads * kBatches});
  std::printf("[ info ] group commit: %llu batches in %llu commits\n",
              static_cast<unsigned long long>(stats->batches),
              static_cast<unsigned long long>(stats->commits));
}

TEST_F(StoreTest, AFailingBatchInAGroupDoesNotAffectTheOthers) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("taken", "0")}).ok());
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
  EXPECT_EQ(GetString(*s, "t", "taken"), "0");
  auto stats = s->GetStats();
  EXPECT_EQ(stats->tables["t"].entries, uint64_t{1 + (kThreads - 1) * kBatches});
  EXPECT_EQ(stats->batches, uint64_t{1 + (kThreads - 1) * kBatches});
  EXPECT_LT(stats->commits, stats->batches);
  for (int i = 0; i < kBatches; ++i) {
    EXPECT_EQ(GetString(*s, "t", "bad0-" + std::to_string(i)), std::nullopt);
  }
}

// --- map full ------------------------------------------------------------------------------------

TEST_F(StoreTest, AFullMapReturnsResourceExhaustedAndTheStoreStaysUsable) {
  Options o = MakeOptions();
  o.map_size_bytes = 256 * 1024;  // 64 pages
  auto s = OpenStore(o);
  ASSERT_NE(s, nullptr);
  const std::string big(6000, 'b');
  int written = 0;
  Status st;
  for (; written < 1000; ++written) {
    st = s->Apply({Put("big" + std::to_string(written), big)});
    if (!st.ok()) {
      break;
    }
  }
  ASSERT_EQ(st.code(), Code::kResourceExhausted) << st.ToString();
  EXPECT_NE(st.message().find("store map is full"), std::string::npos);
  ASSERT_GT(written, 0);
  EXPECT_EQ(GetString(*s, "t", "big" + std::to_string(written)), std::nullopt);
  // Previous data intact, reads work, a smaller write still fits, the env is healthy.
  for (int i = 0; i < written; ++i) {
    ASSERT_EQ(GetString(*s, "t", "big" + std::to_string(i)), big) << i;
  }
  EXPECT_TRUE(s->Apply({Put("small", "s")}).ok());
  EXPECT_EQ(GetString(*s, "t", "small"), "s");
  EXPECT_TRUE(s->Health().ok());
  // Freeing space makes big writes possible again. Pages freed by a commit become reusable
  // two commits later (LMDB keeps the previous snapshot), hence the small write in between.
  ASSERT_TRUE(s->Apply({Make(Op::kDelete, "t", "big0"), Make(Op::kDelete, "t", "big1"),
                        Make(Op::kDelete, "t", "big2")})
                  .ok());
  ASSERT_TRUE(s->Apply({Put("small", "s2")}).ok());
  Status again = s->Apply({Put("big-again", big)});
  EXPECT_TRUE(again.ok()) << again.ToString();
}

TEST_F(StoreTest, ConcurrentWritersIntoAFullMapEachGetTheirOwnCorrectResult) {
  Options o = MakeOptions();
  o.map_size_bytes = 512 * 1024;
  auto s = OpenStore(o);
  ASSERT_NE(s, nullptr);
  constexpr int kThreads = 8;
  constexpr int kBatches = 40;
  std::vector<std::vector<std::pair<std::string, Code>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBatches; ++i) {
        std::string k = std::to_string(t) + "-" + std::to_string(i);
        // Mixed sizes, so some batches fit where others do not.
        std::string v(static_cast<size_t>(100 + (t * 977 + i * 331) % 9000), 'a' + t);
        Status st = s->Apply({Make(Op::kInsert, "t", k, v), Make(Op::kInsert, "u", k, k)});
        results[t].emplace_back(k, st.code());
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  int ok = 0;
  int full = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (const auto& [k, code] : results[t]) {
      ASSERT_TRUE(code == Code::kOk || code == Code::kResourceExhausted) << CodeName(code);
      if (code == Code::kOk) {
        ++ok;
        EXPECT_NE(GetString(*s, "t", k), std::nullopt) << k;
        EXPECT_EQ(GetString(*s, "u", k), k);
      } else {
        ++full;
        EXPECT_EQ(GetString(*s, "t", k), std::nullopt) << k;
        EXPECT_EQ(GetString(*s, "u", k), std::nullopt) << k;
      }
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(full, 0);
  auto stats = s->GetStats();
  EXPECT_EQ(stats->batches, static_cast<uint64_t>(ok));
  EXPECT_EQ(stats->tables["t"].entries, static_cast<uint64_t>(ok));
  EXPECT_TRUE(s->Apply({Put("after", "x")}).ok());
  std::printf("[ info ] full map: %d ok, %d exhausted, %llu commits, groups split: %zu\n", ok,
              full, static_cast<unsigned long long>(stats->commits),
              CountLines(log_out_.str(), "store_group_split"));
}

// --- TTL -----------------------------------------------------------------------------------------

TEST_F(StoreTest, PurgeDeletesRecordsWhoseExpiryHasPassed) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("old1", "v", 100), Put("old2", "v", 200), Put("future", "v", 1000),
                        Put("forever", "v"), Make(Op::kPut, "u", "old3", "v", 150)})
                  .ok());
  EXPECT_EQ(s->GetStats()->ttl_entries, 4u);
  auto n = s->PurgeExpired(500, 100);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(GetString(*s, "t", "old1"), std::nullopt);
  EXPECT_EQ(GetString(*s, "t", "old2"), std::nullopt);
  EXPECT_EQ(GetString(*s, "u", "old3"), std::nullopt);
  EXPECT_EQ(GetString(*s, "t", "future"), "v");
  EXPECT_EQ(GetString(*s, "t", "forever"), "v");
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  EXPECT_EQ(*s->PurgeExpired(500, 100), 0u);
  EXPECT_EQ(*s->PurgeExpired(1000, 100), 1u);  // expires_at <= now
  EXPECT_EQ(s->GetStats()->ttl_entries, 0u);
}

TEST_F(StoreTest, PurgeStopsAtTheMaximum) {
  auto s = OpenStore();
  std::vector<Mutation> batch;
  for (int i = 0; i < 10; ++i) {
    batch.push_back(Put("k" + std::to_string(i), "v", 10 + i));
  }
  ASSERT_TRUE(s->Apply(batch).ok());
  EXPECT_EQ(*s->PurgeExpired(100, 4), 4u);
  EXPECT_EQ(s->GetStats()->tables["t"].entries, 6u);
  EXPECT_EQ(GetString(*s, "t", "k3"), std::nullopt);  // the earliest go first
  EXPECT_EQ(GetString(*s, "t", "k4"), "v");
  EXPECT_EQ(*s->PurgeExpired(100, 100), 6u);
  EXPECT_EQ(*s->PurgeExpired(100, 0), 0u);
}

TEST_F(StoreTest, ARecordRePutWithoutExpiryIsNotPurged) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("k", "v1", 100)}).ok());
  ASSERT_TRUE(s->Apply({Put("k", "v2", 0)}).ok());
  EXPECT_EQ(s->GetStats()->ttl_entries, 0u);
  EXPECT_EQ(*s->PurgeExpired(1000, 100), 0u);
  EXPECT_EQ(GetString(*s, "t", "k"), "v2");
}

TEST_F(StoreTest, ReplacingTheExpiryMovesTheTtlEntry) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("k", "v1", 100)}).ok());
  ASSERT_TRUE(s->Apply({Make(Op::kUpdate, "t", "k", "v2", 1000)}).ok());
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  EXPECT_EQ(*s->PurgeExpired(500, 100), 0u);  // the old expiry no longer applies
  EXPECT_EQ(GetString(*s, "t", "k"), "v2");
  // Moving it earlier takes effect as well.
  ASSERT_TRUE(s->Apply({Put("k", "v3", 300)}).ok());
  EXPECT_EQ(*s->PurgeExpired(500, 100), 1u);
  EXPECT_EQ(GetString(*s, "t", "k"), std::nullopt);
}

TEST_F(StoreTest, DeletingARecordRemovesItsTtlEntry) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("a", "v", 100), Put("b", "v", 100)}).ok());
  ASSERT_TRUE(s->Apply({Make(Op::kDelete, "t", "a"), Make(Op::kErase, "t", "b")}).ok());
  EXPECT_EQ(s->GetStats()->ttl_entries, 0u);
  // A new record under the same key without expiry is not touched by the old TTL.
  ASSERT_TRUE(s->Apply({Put("a", "new")}).ok());
  EXPECT_EQ(*s->PurgeExpired(1000, 100), 0u);
  EXPECT_EQ(GetString(*s, "t", "a"), "new");
}

Mutation Move(std::string_view from, std::string_view to) {
  Mutation m = Make(Op::kMove, "t", from);
  m.new_key = ToBytes(to);
  return m;
}

TEST_F(StoreTest, MoveReKeysTheRecordAndItsExpiry) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("a", "va", 100), Put("b", "vb"), Put("taken", "x")}).ok());
  ASSERT_TRUE(s->Apply({Move("a", "a2"), Move("b", "b2")}).ok());
  EXPECT_EQ(GetString(*s, "t", "a"), std::nullopt);
  EXPECT_EQ(GetString(*s, "t", "a2"), "va");
  EXPECT_EQ(GetString(*s, "t", "b2"), "vb");
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  // The expiry moved with the record; the record without one stays without.
  EXPECT_EQ(*s->PurgeExpired(1000, 100), 1u);
  EXPECT_EQ(GetString(*s, "t", "a2"), std::nullopt);
  EXPECT_EQ(GetString(*s, "t", "b2"), "vb");
  // A missing source, an existing target, a CAS mismatch: nothing changes.
  EXPECT_EQ(s->Apply({Move("nope", "n2")}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(s->Apply({Move("b2", "taken")}).code(), Code::kAlreadyExists);
  Mutation cas = Move("b2", "b3");
  cas.expect = ToBytes("other");
  EXPECT_EQ(s->Apply({cas}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(s->Apply({Move("b2", "b2")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(GetString(*s, "t", "b2"), "vb");
  EXPECT_EQ(GetString(*s, "t", "taken"), "x");
  cas.expect = ToBytes("vb");
  ASSERT_TRUE(s->Apply({cas}).ok());
  EXPECT_EQ(GetString(*s, "t", "b3"), "vb");
}

TEST_F(StoreTest, AnUpdateThatKeepsTheExpiryLeavesTheTtlEntry) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("k", "v1", 100)}).ok());
  Mutation m = Make(Op::kUpdate, "t", "k", "v2");
  m.keep_expiry = true;
  m.expect = ToBytes("v1");
  ASSERT_TRUE(s->Apply({m}).ok());
  EXPECT_EQ(GetString(*s, "t", "k"), "v2");
  EXPECT_EQ(s->GetStats()->ttl_entries, 1u);
  EXPECT_EQ(*s->ExpiryOf("t", ToBytes("k")), 100);
  EXPECT_EQ(*s->ExpiryOf("t", ToBytes("absent")), 0);
  ASSERT_TRUE(s->Apply({Put("forever", "v")}).ok());
  EXPECT_EQ(*s->ExpiryOf("t", ToBytes("forever")), 0);
  EXPECT_EQ(*s->PurgeExpired(500, 100), 1u);
  EXPECT_EQ(GetString(*s, "t", "k"), std::nullopt);
}

TEST_F(StoreTest, TtlKeysRoundTrip) {
  Bytes k = internal::EncodeTtlKey(0x0102030405060708ull, "tab", AsBytes("key"));
  ASSERT_EQ(k.size(), internal::TtlKeySize("tab", 3));
  EXPECT_EQ(k[0], 0x01);
  EXPECT_EQ(k[7], 0x08);
  auto e = internal::DecodeTtlKey(k);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->expires_at, 0x0102030405060708ull);
  EXPECT_EQ(e->table, "tab");
  EXPECT_EQ(AsString(e->key), "key");
  EXPECT_FALSE(internal::DecodeTtlKey(AsBytes("short")).has_value());
  // Big-endian: byte order is time order.
  EXPECT_LT(internal::EncodeTtlKey(255, "t", AsBytes("z")),
            internal::EncodeTtlKey(256, "t", AsBytes("a")));
}

// --- stats, health, backup -----------------------------------------------------------------------

TEST_F(StoreTest, StatsReportTablesAndMapUsage) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Apply({Put("a", "1"), Put("b", "2", 100)}).ok());
  auto st = s->GetStats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->tables.size(), 2u);
  EXPECT_EQ(st->tables["t"].entries, 2u);
  EXPECT_GT(st->tables["t"].bytes, 0u);
  EXPECT_EQ(st->tables["u"].entries, 0u);
  EXPECT_EQ(st->map_size, 64ull << 20);
  EXPECT_GT(st->used_bytes, 0u);
  EXPECT_LT(st->used_bytes, st->map_size);
  EXPECT_EQ(st->commits, 1u);
  EXPECT_EQ(st->batches, 1u);
  EXPECT_EQ(st->ttl_entries, 1u);
}

TEST_F(StoreTest, CopyToProducesADirectoryThatOpensWithTheSameData) {
  std::string backup = dir_.Sub("backup");
  ASSERT_EQ(::mkdir(backup.c_str(), 0700), 0);
  {
    auto s = OpenStore();
    ASSERT_TRUE(s->Apply({Put("a", "1"), Make(Op::kPut, "u", "b", "2", 77)}).ok());
    Status st = s->CopyTo(backup);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_TRUE(s->Apply({Put("after", "x")}).ok());  // not in the copy
    EXPECT_EQ(s->CopyTo(backup).code(), Code::kFailedPrecondition);  // not empty any more
    EXPECT_FALSE(s->CopyTo(dir_.Sub("missing")).ok());
  }
  Options o = MakeOptions();
  o.path = backup;
  auto copy = OpenStore(o);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(GetString(*copy, "t", "a"), "1");
  EXPECT_EQ(GetString(*copy, "u", "b"), "2");
  EXPECT_EQ(GetString(*copy, "t", "after"), std::nullopt);
  EXPECT_EQ(copy->GetStats()->ttl_entries, 1u);
  EXPECT_EQ(*copy->PurgeExpired(100, 10), 1u);
}

TEST_F(StoreTest, OpenLogsWithoutKeysOrValues) {
  {
    auto s = OpenStore();
    ASSERT_TRUE(s->Apply({Put("secret-key", "secret-value")}).ok());
    ASSERT_TRUE(s->Health().ok());
  }
  EXPECT_NE(log_out_.str().find("store_opened"), std::string::npos);
  EXPECT_EQ(log_out_.str().find("secret"), std::string::npos);
}

// --- crash consistency ---------------------------------------------------------------------------

// A child process commits records in a loop and reports each key on a pipe right after Apply()
// returns. The parent SIGKILLs it at a random moment, ten times over the same directory, then
// checks that every acknowledged key is present (B.3 kill test). The parent never opens the
// environment before forking (no fork() with an open LMDB env).
[[noreturn]] void CrashChild(const std::string& path, int round, int fd) {
  Options o;
  o.path = path;
  o.map_size_bytes = 64ull << 20;
  o.tables = {"t"};
  auto opened = Store::Open(o, nullptr);
  if (!opened.ok()) {
    ::_exit(3);
  }
  Store& s = **opened;
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&s, round, w, fd] {
      for (int i = 0;; ++i) {
        std::string k = "r" + std::to_string(round) + "w" + std::to_string(w) + "i" +
                        std::to_string(i);
        if (!s.Apply({Make(Op::kInsert, "t", k, k + "-value")}).ok()) {
          ::_exit(4);
        }
        std::string line = k + "\n";  // < PIPE_BUF: one atomic write
        if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
          ::_exit(5);
        }
      }
    });
  }
  for (auto& t : writers) {
    t.join();
  }
  ::_exit(0);
}

TEST(StoreCrashTest, EveryAcknowledgedCommitSurvivesSigkill) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::random_device rd;
  const unsigned seed = rd();
  std::mt19937 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::set<std::string> acked;
  for (int round = 0; round < 10; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      CrashChild(path, round, fds[1]);
    }
    ::close(fds[1]);
    const auto kill_at = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(std::uniform_int_distribution<>(30, 250)(rng));
    std::string buf;
    bool killed = false;
    char chunk[4096];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      kill_at - std::chrono::steady_clock::now())
                      .count();
      if (!killed && left <= 0) {
        ASSERT_EQ(::kill(pid, SIGKILL), 0);
        killed = true;
      }
      pollfd p{fds[0], POLLIN, 0};
      int pr = ::poll(&p, 1, killed ? 1000 : static_cast<int>(left));
      if (pr <= 0) {
        continue;
      }
      ssize_t n = ::read(fds[0], chunk, sizeof chunk);
      if (n <= 0) {
        break;  // EOF: the child is gone and everything it wrote was read
      }
      buf.append(chunk, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "child exited early, status " << wstatus;
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      acked.insert(buf.substr(start, nl - start));
    }
  }
  ASSERT_GT(acked.size(), 10u);

  Options o;
  o.path = path;
  o.tables = {"t"};
  auto opened = Store::Open(o, nullptr);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& s = **opened;
  EXPECT_TRUE(s.Health().ok());
  size_t missing = 0;
  for (const std::string& k : acked) {
    auto r = s.Get("t", AsBytes(k));
    ASSERT_TRUE(r.ok());
    if (!r->has_value() || AsString(**r) != k + "-value") {
      ++missing;
    }
  }
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged";
  uint64_t entries = s.GetStats()->tables["t"].entries;
  EXPECT_GE(entries, acked.size());
  // Every record present is intact and the environment is writable after the crashes.
  size_t bad = 0;
  ASSERT_TRUE(s.ForEach("t", [&](ByteView k, ByteView v) {
                 if (AsString(v) != std::string(AsString(k)) + "-value") {
                   ++bad;
                 }
                 return true;
               }).ok());
  EXPECT_EQ(bad, 0u);
  EXPECT_TRUE(s.Apply({Make(Op::kInsert, "t", "after-crash", "x")}).ok());
  std::printf("[ info ] crash test: %zu acknowledged, %llu present after 10 SIGKILLs\n",
              acked.size(), static_cast<unsigned long long>(entries));
}

}  // namespace
}  // namespace otd::store
