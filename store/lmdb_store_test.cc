#include "store/lmdb_store.h"

#include <lmdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gtest/gtest.h>

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
#include "store/internal/ttl.h"
#include "store/store_contract_test.h"

#include "common/testing/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace otd::store {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

namespace fs = std::filesystem;
using testing::Make;
using testing::Put;

// A fresh directory per test (tests/support/temp_dir.h), named for this suite.
class TempDir : public otd::testing::TempDir {
 public:
  TempDir() : otd::testing::TempDir("otd_store_test") {}
};

size_t CountLines(const std::string& text, std::string_view needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// The store contract (store/store_contract_test.h) on LMDB: a fresh directory per test.
struct LmdbBackend {
  void SetUp() {}
  void TearDown() {}
  std::unique_ptr<Store> Open() {
    LmdbOptions o;
    o.path = dir.Sub("db");
    o.map_size_bytes = 64ull << 20;
    o.tables = {"t", "u"};
    auto r = LmdbStore::Open(o, &log);
    EXPECT_OK(r);
    return r.ok() ? std::move(r).value() : nullptr;
  }
  TempDir dir;
  std::ostringstream log_out;
  Logger log{log_out, LogLevel::kDebug};
};

}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Lmdb, StoreContractTest, ::testing::Types<LmdbBackend>);
}  // namespace testing
namespace {

class StoreTest : public ::testing::Test {
 protected:
  LmdbOptions MakeOptions() const {
    LmdbOptions o;
    o.path = dir_.Sub("db");
    o.map_size_bytes = 64ull << 20;
    o.tables = {"t", "u"};
    return o;
  }

  std::unique_ptr<LmdbStore> OpenStore(const LmdbOptions& o) {
    auto r = LmdbStore::Open(o, &log_);
    EXPECT_OK(r);
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::unique_ptr<LmdbStore> OpenStore() { return OpenStore(MakeOptions()); }

  std::optional<std::string> GetString(const Store& s, std::string_view table,
                                       std::string_view key) {
    auto r = s.Get(table, AsBytes(key));
    EXPECT_OK(r);
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

TEST_F(StoreTest, ReservedDuplicateOrEmptyTableNamesAreRejectedAtOpen) {
  for (std::vector<std::string> tables :
       {std::vector<std::string>{"__mine"}, std::vector<std::string>{"a", "a"},
        std::vector<std::string>{""}, std::vector<std::string>{std::string(256, 'x')}}) {
    LmdbOptions o = MakeOptions();
    o.tables = tables;
    EXPECT_EQ(LmdbStore::Open(o, &log_).status().code(), Code::kInvalidArgument);
  }
}

TEST_F(StoreTest, OpeningTheSameDirectoryTwiceInOneProcessFails) {
  auto s = OpenStore();
  EXPECT_EQ(LmdbStore::Open(MakeOptions(), &log_).status().code(), Code::kFailedPrecondition);
  s.reset();
  EXPECT_NE(OpenStore(), nullptr);  // released on close
}

TEST_F(StoreTest, OpenCreatesThePrivateDirectory) {
  LmdbOptions o = MakeOptions();
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

// --- group commit --------------------------------------------------------------------------------

TEST_F(StoreTest, StatsCountFreedPagesSoInUseShrinksAfterDeletes) {
  // used_bytes is LMDB's high-water mark; free_bytes is what it can hand out again.
  auto s = OpenStore();
  const std::string value(1000, 'v');
  for (int batch = 0; batch < 20; ++batch) {
    std::vector<Mutation> b;
    for (int i = 0; i < 100; ++i) {
      b.push_back(Put("k" + std::to_string(batch * 100 + i), value));
    }
    ASSERT_OK(s->Apply(std::move(b)));
  }
  auto full = s->GetStats();
  ASSERT_OK(full);
  EXPECT_GE(full->used_bytes - full->free_bytes, 2000u * 1000u);
  for (int batch = 0; batch < 20; ++batch) {
    std::vector<Mutation> b;
    for (int i = 0; i < 100; ++i) {
      b.push_back(Make(Op::kErase, "t", "k" + std::to_string(batch * 100 + i)));
    }
    ASSERT_OK(s->Apply(std::move(b)));
  }
  auto emptied = s->GetStats();
  ASSERT_OK(emptied);
  EXPECT_GE(emptied->used_bytes, full->used_bytes);  // the high-water mark never drops
  EXPECT_GT(emptied->free_bytes, 2000u * 1000u * 9 / 10);
  EXPECT_LT(emptied->used_bytes - emptied->free_bytes, 200u * 1024u);
  EXPECT_LE(emptied->free_bytes, emptied->used_bytes);
}

// --- map full ------------------------------------------------------------------------------------

TEST_F(StoreTest, AFullMapReturnsResourceExhaustedAndTheStoreStaysUsable) {
  LmdbOptions o = MakeOptions();
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
  EXPECT_OK(s->Apply({Put("small", "s")}));
  EXPECT_EQ(GetString(*s, "t", "small"), "s");
  EXPECT_OK(s->Health());
  // Freeing space makes big writes possible again. Pages freed by a commit become reusable
  // two commits later (LMDB keeps the previous snapshot), hence the small write in between.
  ASSERT_TRUE(s->Apply({Make(Op::kDelete, "t", "big0"), Make(Op::kDelete, "t", "big1"),
                        Make(Op::kDelete, "t", "big2")})
                  .ok());
  ASSERT_OK(s->Apply({Put("small", "s2")}));
  Status again = s->Apply({Put("big-again", big)});
  EXPECT_OK(again);
}

TEST_F(StoreTest, ConcurrentWritersIntoAFullMapEachGetTheirOwnCorrectResult) {
  LmdbOptions o = MakeOptions();
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
        std::string v(static_cast<size_t>(100 + (t * 977 + i * 331) % 9000),
                      static_cast<char>('a' + t));
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
  EXPECT_OK(s->Apply({Put("after", "x")}));
  std::printf("[ info ] full map: %d ok, %d exhausted, %llu commits, groups split: %zu\n", ok, full,
              static_cast<unsigned long long>(stats->commits),
              CountLines(log_out_.str(), "store_group_split"));
}

// --- TTL -----------------------------------------------------------------------------------------

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
  ASSERT_OK(s->Apply({Put("a", "1"), Put("b", "2", 100)}));
  auto st = s->GetStats();
  ASSERT_OK(st);
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
    ASSERT_OK(s->Apply({Put("a", "1"), Make(Op::kPut, "u", "b", "2", 77)}));
    Status st = s->CopyTo(backup);
    ASSERT_OK(st);
    ASSERT_OK(s->Apply({Put("after", "x")}));                        // not in the copy
    EXPECT_EQ(s->CopyTo(backup).code(), Code::kFailedPrecondition);  // not empty any more
    EXPECT_THAT(s->CopyTo(dir_.Sub("missing")), Not(IsOk()));
  }
  LmdbOptions o = MakeOptions();
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
    ASSERT_OK(s->Apply({Put("secret-key", "secret-value")}));
    ASSERT_OK(s->Health());
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
  LmdbOptions o;
  o.path = path;
  o.map_size_bytes = 64ull << 20;
  o.tables = {"t"};
  auto opened = LmdbStore::Open(o, nullptr);
  if (!opened.ok()) {
    ::_exit(3);
  }
  Store& s = **opened;
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&s, round, w, fd] {
      for (int i = 0;; ++i) {
        std::string k =
            "r" + std::to_string(round) + "w" + std::to_string(w) + "i" + std::to_string(i);
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

  LmdbOptions o;
  o.path = path;
  o.tables = {"t"};
  auto opened = LmdbStore::Open(o, nullptr);
  ASSERT_OK(opened);
  Store& s = **opened;
  EXPECT_OK(s.Health());
  size_t missing = 0;
  for (const std::string& k : acked) {
    auto r = s.Get("t", AsBytes(k));
    ASSERT_OK(r);
    if (!r->has_value() || AsString(**r) != k + "-value") {
      ++missing;
    }
  }
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged";
  uint64_t entries = s.GetStats()->tables["t"].entries;
  EXPECT_GE(entries, acked.size());
  // Every record present is intact and the environment is writable after the crashes.
  size_t bad = 0;
  ASSERT_OK(s.ForEach("t", [&](ByteView k, ByteView v) {
    if (AsString(v) != std::string(AsString(k)) + "-value") {
      ++bad;
    }
    return true;
  }));
  EXPECT_EQ(bad, 0u);
  EXPECT_OK(s.Apply({Make(Op::kInsert, "t", "after-crash", "x")}));
  std::printf("[ info ] crash test: %zu acknowledged, %llu present after 10 SIGKILLs\n",
              acked.size(), static_cast<unsigned long long>(entries));
}

}  // namespace
}  // namespace otd::store
