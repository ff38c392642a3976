#include "store/pg_store.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/testing/status_matchers.h"
#include "store/store_contract_test.h"
#include "store/testing/pg_server.h"

namespace otd::store {
namespace {

using testing::Make;
using testing::Put;

// One PostgreSQL server for the whole binary (ctest runs the binary as one test), a fresh
// database per test.
testing::PgTestServer* g_server = nullptr;
std::string g_skip;

[[maybe_unused]] ::testing::Environment* const kEnv =
    ::testing::AddGlobalTestEnvironment(new testing::PgTestEnvironment(&g_server, &g_skip));

PgOptions OptionsFor(const std::string& conninfo) {
  PgOptions o;
  o.conninfo = conninfo;
  o.pool_size = 4;
  o.statement_timeout_ms = 5000;
  o.connect_timeout_ms = 2000;
  o.tables = {"t", "u"};
  return o;
}

// The store contract (store/store_contract_test.h) on PostgreSQL: a fresh database per test.
struct PgBackend {
  void SetUp() {
    if (g_server == nullptr) {
      GTEST_SKIP() << g_skip;
    }
    conninfo = g_server->CreateDatabase();
    ASSERT_FALSE(conninfo.empty());
    auto v = PgMigrate(OptionsFor(conninfo));
    ASSERT_OK(v);
    EXPECT_EQ(*v, 0);
  }
  void TearDown() {}
  std::unique_ptr<Store> Open() {
    auto r = PgStore::Open(OptionsFor(conninfo), &log);
    EXPECT_OK(r);
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::string conninfo;
  std::ostringstream log_out;
  Logger log{log_out, LogLevel::kDebug};
};

}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Pg, StoreContractTest, ::testing::Types<PgBackend>);
}  // namespace testing
namespace {

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (g_server == nullptr) {
      GTEST_SKIP() << g_skip;
    }
    conninfo_ = g_server->CreateDatabase();
    ASSERT_FALSE(conninfo_.empty());
    db_ = conninfo_.substr(conninfo_.rfind('=') + 1);
    ASSERT_OK(PgMigrate(OptionsFor(conninfo_)));
  }
  std::unique_ptr<PgStore> OpenStore(int statement_timeout_ms = 5000) {
    PgOptions o = OptionsFor(conninfo_);
    o.statement_timeout_ms = statement_timeout_ms;
    auto r = PgStore::Open(std::move(o), &log_);
    EXPECT_OK(r);
    return r.ok() ? std::move(r).value() : nullptr;
  }
  // The pid of this database's backend that waits on `wait_event` ("" when none yet).
  std::string BackendWaitingOn(const std::string& wait_event) {
    return g_server->Query(db_, "SELECT pid FROM pg_stat_activity WHERE datname = '" + db_ +
                                    "' AND wait_event = '" + wait_event + "' LIMIT 1");
  }
  std::string WaitForBackend(const std::string& wait_event) {
    for (int i = 0; i < 200; ++i) {
      std::string pid = BackendWaitingOn(wait_event);
      if (!pid.empty()) {
        return pid;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return "";
  }

  std::string conninfo_;
  std::string db_;
  std::ostringstream log_out_;
  Logger log_{log_out_, LogLevel::kDebug};
};

TEST_F(PgStoreTest, OpenRefusesAMissingOrNewerSchemaAndMigrateIsIdempotent) {
  std::string other = g_server->CreateDatabase();
  auto missing = PgStore::Open(OptionsFor(other), &log_);
  EXPECT_EQ(missing.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(missing.status().ToString().find("opentoken-admin init"), std::string::npos);

  auto again = PgMigrate(OptionsFor(conninfo_));
  ASSERT_OK(again);
  EXPECT_EQ(*again, kPgSchemaVersion);
  EXPECT_OK(PgStore::Open(OptionsFor(conninfo_), &log_));

  ASSERT_TRUE(g_server->Sql(db_, "INSERT INTO otd_schema_version (version) VALUES (99)"));
  auto newer = PgStore::Open(OptionsFor(conninfo_), &log_);
  EXPECT_EQ(newer.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(newer.status().ToString().find("newer"), std::string::npos);
  EXPECT_EQ(PgMigrate(OptionsFor(conninfo_)).status().code(), Code::kFailedPrecondition);
}

TEST_F(PgStoreTest, UnreachableServerIsUnavailableAtOpen) {
  PgOptions o = OptionsFor("host=" + g_server->dir() + " port=1 user=postgres dbname=x");
  EXPECT_EQ(PgStore::Open(std::move(o), &log_).status().code(), Code::kUnavailable);
}

TEST_F(PgStoreTest, LeastPrivilegeRoleCanServeButNotAlterTheSchema) {
  ASSERT_TRUE(g_server->Sql(db_, "CREATE ROLE otd_daemon LOGIN"));
  ASSERT_OK(PgMigrate(OptionsFor(conninfo_), "otd_daemon"));
  PgOptions o = OptionsFor(conninfo_);
  o.conninfo = g_server->ConnInfo(db_).replace(g_server->ConnInfo(db_).find("user=postgres"), 13,
                                               "user=otd_daemon");
  const std::string daemon_conninfo = o.conninfo;
  auto s = PgStore::Open(std::move(o), &log_);
  ASSERT_OK(s);
  ASSERT_OK((*s)->Apply({Put("k", "v", 10)}));
  EXPECT_EQ(*(*s)->PurgeExpired(100, 10), 1u);
  EXPECT_OK((*s)->Health());
  // The daemon's role cannot change the schema.
  PGconn* c = PQconnectdb(daemon_conninfo.c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK);
  PGresult* r = PQexec(c, "DROP TABLE otd_records");
  EXPECT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR);
  PQclear(r);
  PQfinish(c);
  (*s).reset();
  g_server->Sql("postgres", "DROP DATABASE " + db_ + " WITH (FORCE)");
  g_server->Sql("postgres", "DROP ROLE otd_daemon");
}

// The server goes away and comes back: writes and reads fail with kUnavailable meanwhile, and
// the same store object recovers by itself.
TEST_F(PgStoreTest, ServerStopIsUnavailableAndRestartRecoversWithoutReopening) {
  auto s = OpenStore();
  ASSERT_OK(s->Apply({Put("before", "1")}));
  ASSERT_OK(s->Get("t", AsBytes("before")));
  ASSERT_TRUE(g_server->Stop("fast"));
  EXPECT_EQ(s->Apply({Put("during", "2")}).code(), Code::kUnavailable);
  EXPECT_EQ(s->Get("t", AsBytes("before")).status().code(), Code::kUnavailable);
  EXPECT_EQ(s->Health().code(), Code::kUnavailable);
  ASSERT_TRUE(g_server->Start());
  // The first attempts after the restart already work: closed connections are noticed before
  // use (no write is sent on a dead connection, which would make its outcome unknown).
  EXPECT_OK(s->Health());
  EXPECT_OK(s->Apply({Put("after", "3")}));
  auto v = s->Get("t", AsBytes("before"));
  ASSERT_OK(v);
  EXPECT_EQ(AsString(**v), "1");
  EXPECT_EQ(*s->Get("t", AsBytes("during")), std::nullopt);

  // A restart nobody noticed (no request during the outage): the idle connections the server
  // closed are replaced before use, and the first write after it is not lost to a dead one.
  ASSERT_TRUE(g_server->Stop("fast"));
  ASSERT_TRUE(g_server->Start());
  EXPECT_OK(s->Apply({Put("unnoticed", "4")}));
  EXPECT_OK(s->Get("t", AsBytes("unnoticed")));
}

// The reads and the group commit are prepared statements, prepared on each connection as it
// opens: after every connection of the store is reset (a failover or a server restart looks the
// same to it), the reopened connections have them again and every kind of call works at once.
TEST_F(PgStoreTest, PreparedStatementsAreThereAgainAfterTheConnectionsAreReset) {
  auto s = OpenStore();
  ASSERT_OK(s->Apply({Put("k", "v1"), Put("e", "x", /*expires_at=*/77)}));
  // Opens (and prepares on) several pooled connections at once.
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      for (int j = 0; j < 20; ++j) {
        EXPECT_OK(s->GetMany({{"t", AsBytes("k")}, {"u", AsBytes("k")}}));
      }
    });
  }
  for (std::thread& t : readers) {
    t.join();
  }
  for (int round = 0; round < 2; ++round) {
    const std::string others = "FROM pg_stat_activity WHERE datname = '" + db_ +
                               "' AND pid <> pg_backend_pid() AND backend_type = 'client backend'";
    ASSERT_EQ(g_server->Query(db_, "SELECT count(pg_terminate_backend(pid)) > 0 " + others), "t");
    for (int i = 0; i < 200 && g_server->Query(db_, "SELECT count(*) " + others) != "0"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    auto v = s->Get("t", AsBytes("k"));
    ASSERT_OK(v);
    EXPECT_EQ(AsString(**v), round == 0 ? "v1" : "v2");
    auto many = s->GetMany({{"t", AsBytes("e")}, {"u", AsBytes("k")}, {"t", AsBytes("k")}});
    ASSERT_OK(many);
    ASSERT_EQ(many->size(), 3u);
    EXPECT_EQ(AsString(*(*many)[0]), "x");
    EXPECT_EQ((*many)[1], std::nullopt);
    ASSERT_TRUE((*many)[2].has_value());
    auto expiry = s->ExpiryOf("t", AsBytes("e"));
    ASSERT_OK(expiry);
    EXPECT_EQ(*expiry, 77);
    EXPECT_OK(s->Apply({Put("k", "v2")}));
    EXPECT_EQ(AsString(**s->Get("t", AsBytes("k"))), "v2");
  }
}

// A server that stops answering without closing anything (SIGSTOP, a hung host): reads, writes
// and Health() give kUnavailable after statement_timeout_ms + connect_timeout_ms instead of
// hanging, and all recover when it answers again.
TEST_F(PgStoreTest, AServerThatStopsAnsweringIsUnavailableNotAHang) {
  PgOptions o = OptionsFor(conninfo_);
  o.statement_timeout_ms = 300;
  o.connect_timeout_ms = 1000;
  auto opened = PgStore::Open(std::move(o), &log_);
  ASSERT_OK(opened);
  std::unique_ptr<PgStore> s = std::move(opened).value();
  ASSERT_OK(s->Apply({Put("k", "v")}));
  ASSERT_OK(s->Get("t", AsBytes("k")));
  ASSERT_TRUE(g_server->Freeze(true));
  struct Thaw {
    ~Thaw() { g_server->Freeze(false); }
  } thaw;
  const auto began = std::chrono::steady_clock::now();
  EXPECT_EQ(s->Get("t", AsBytes("k")).status().code(), Code::kUnavailable);
  EXPECT_EQ(s->Apply({Put("k", "w")}).code(), Code::kUnavailable);
  EXPECT_EQ(s->Health().code(), Code::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(20));
  ASSERT_TRUE(g_server->Freeze(false));
  EXPECT_OK(s->Health());
  EXPECT_OK(s->Apply({Put("k2", "v2")}));
  EXPECT_OK(s->Get("t", AsBytes("k2")));
}

// A connection killed while the write waits (here on a row lock, before COMMIT) is kUnavailable,
// and the next write reconnects.
TEST_F(PgStoreTest, ConnectionKilledDuringAWriteIsUnavailable) {
  auto s = OpenStore();
  ASSERT_OK(s->Apply({Put("k", "v0")}));
  PGconn* locker = PQconnectdb(conninfo_.c_str());
  ASSERT_EQ(PQstatus(locker), CONNECTION_OK);
  PQclear(PQexec(locker, "BEGIN"));
  PQclear(PQexec(locker, "SELECT * FROM otd_records WHERE key = 'k'::bytea FOR UPDATE"));
  std::promise<Status> done;
  s->ApplyAsync({Put("k", "v1")}, [&](Status st) { done.set_value(st); });
  std::string pid = WaitForBackend("transactionid");
  ASSERT_FALSE(pid.empty());
  ASSERT_EQ(g_server->Query(db_, "SELECT pg_terminate_backend(" + pid + ")"), "t");
  Status st = done.get_future().get();
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  PQclear(PQexec(locker, "ROLLBACK"));
  PQfinish(locker);
  EXPECT_EQ(AsString(**s->Get("t", AsBytes("k"))), "v0");
  EXPECT_OK(s->Apply({Put("k", "v2")}));
}

// A COMMIT waiting for a synchronous standby: never cancelled by statement_timeout; when the
// wait is cancelled (the write is then committed on the primary only) or the connection is
// killed, the answer is kUnavailable, never Ok.
TEST_F(PgStoreTest, CommitWaitingForASyncStandbyIsNeverAcknowledgedWhenCutShort) {
  auto s = OpenStore(/*statement_timeout_ms=*/300);
  ASSERT_OK(s->Apply({Put("warm", "up")}));  // the writer's connection is open
  // A synchronous standby that never connects: every COMMIT waits for it (server-wide setting,
  // restored at the end of the test).
  ASSERT_TRUE(g_server->Sql(db_, "ALTER SYSTEM SET synchronous_standby_names = 'ghost'"));
  struct Reset {
    ~Reset() {
      g_server->Sql("postgres", "ALTER SYSTEM RESET synchronous_standby_names");
      g_server->Sql("postgres", "SELECT pg_reload_conf()");
    }
  } reset;
  ASSERT_TRUE(g_server->Sql(db_, "SELECT pg_reload_conf()"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  s.reset();  // the setting applies to new sessions
  s = OpenStore(/*statement_timeout_ms=*/300);

  // 1. Cancelled wait: PostgreSQL answers COMMIT with a WARNING only.
  std::promise<Status> first;
  s->ApplyAsync({Put("a", "1")}, [&](Status st) { first.set_value(st); });
  std::string pid = WaitForBackend("SyncRep");
  ASSERT_FALSE(pid.empty());
  auto fut = first.get_future();
  // Three times the statement timeout: still waiting (the timeout does not cancel the commit).
  EXPECT_EQ(fut.wait_for(std::chrono::milliseconds(900)), std::future_status::timeout);
  ASSERT_EQ(g_server->Query(db_, "SELECT pg_cancel_backend(" + pid + ")"), "t");
  Status st = fut.get();
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  // It is committed locally indeed: the unknown outcome was real.
  EXPECT_EQ(g_server->Query(db_, "SELECT count(*) FROM otd_records WHERE key = 'a'::bytea"), "1");

  // 2. Killed connection during the wait.
  std::promise<Status> second;
  s->ApplyAsync({Put("b", "2")}, [&](Status x) { second.set_value(x); });
  pid = WaitForBackend("SyncRep");
  ASSERT_FALSE(pid.empty());
  ASSERT_EQ(g_server->Query(db_, "SELECT pg_terminate_backend(" + pid + ")"), "t");
  st = second.get_future().get();
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
}

// Many callers' batches queued behind one blocked group commit in ONE transaction afterwards,
// each with its own precondition result.
TEST_F(PgStoreTest, AGroupOfBatchesCommitsInOneTransactionWithIsolatedPreconditions) {
  auto s = OpenStore();
  ASSERT_OK(s->Apply({Put("taken", "0"), Put("blocker", "0")}));
  const uint64_t commits_before = s->GetStats()->commits;
  PGconn* locker = PQconnectdb(conninfo_.c_str());
  ASSERT_EQ(PQstatus(locker), CONNECTION_OK);
  PQclear(PQexec(locker, "BEGIN"));
  PQclear(PQexec(locker, "SELECT * FROM otd_records WHERE key = 'blocker'::bytea FOR UPDATE"));
  std::promise<Status> blocked;
  s->ApplyAsync({Put("blocker", "1")}, [&](Status st) { blocked.set_value(st); });
  ASSERT_FALSE(WaitForBackend("transactionid").empty());  // the writer waits inside its group

  constexpr int kBatches = 300;
  std::vector<std::promise<Status>> results(kBatches);
  for (int i = 0; i < kBatches; ++i) {
    std::vector<Mutation> batch = {Put("k" + std::to_string(i), "v")};
    if (i % 3 == 0) {
      batch.push_back(Make(Op::kInsert, "t", "taken", "x"));  // fails: the whole batch vanishes
    }
    s->ApplyAsync(std::move(batch), [&, i](Status st) { results[i].set_value(st); });
  }
  PQclear(PQexec(locker, "COMMIT"));
  PQfinish(locker);
  EXPECT_OK(blocked.get_future().get());
  for (int i = 0; i < kBatches; ++i) {
    Status st = results[i].get_future().get();
    if (i % 3 == 0) {
      EXPECT_EQ(st.code(), Code::kAlreadyExists) << i;
      EXPECT_EQ(*s->Get("t", AsBytes("k" + std::to_string(i))), std::nullopt);
    } else {
      EXPECT_OK(st);
    }
  }
  auto stats = s->GetStats();
  ASSERT_OK(stats);
  EXPECT_EQ(stats->commits - commits_before, 2u);  // the blocked group, then all 300 at once
  EXPECT_EQ(stats->tables["t"].entries, 2u + kBatches - kBatches / 3);
}

// GetStats() counts small tables exactly and estimates large ones from the planner's statistics
// (an exact count would read the whole table on every call).
TEST_F(PgStoreTest, StatsEstimateLargeTablesAndCountSmallOnesExactly) {
  auto s = OpenStore();
  ASSERT_OK(s->Apply({Make(Op::kPut, "u", "a", "1"), Make(Op::kPut, "u", "b", "22", 50)}));
  ASSERT_TRUE(g_server->Sql(db_,
                            "INSERT INTO otd_records SELECT 't', int4send(g), '\\x00ff'::bytea, 0 "
                            "FROM generate_series(1, 150000) g"));
  ASSERT_TRUE(g_server->Sql(db_, "ANALYZE otd_records"));
  auto stats = s->GetStats();
  ASSERT_OK(stats);
  EXPECT_GT(stats->tables["t"].entries, 120000u);
  EXPECT_LT(stats->tables["t"].entries, 180000u);
  EXPECT_GT(stats->tables["t"].bytes, 0u);
  EXPECT_EQ(stats->tables["u"].entries, 2u);
  EXPECT_EQ(stats->tables["u"].bytes, 5u);  // keys and values: 1 + 1 + 1 + 2
  EXPECT_GE(stats->ttl_entries, 1u);
  EXPECT_GT(stats->used_bytes, 150000u * 8);
}

// Two stores on one database (two daemons): purges with SKIP LOCKED do not collide, and each
// sees the other's writes at once.
TEST_F(PgStoreTest, TwoStoresShareTheDatabaseAndPurgeWithoutALeader) {
  auto a = OpenStore();
  auto b = OpenStore();
  std::vector<Mutation> batch;
  for (int i = 0; i < 400; ++i) {
    batch.push_back(Put("e" + std::to_string(i), "v", 10));
  }
  ASSERT_OK(a->Apply(batch));
  EXPECT_EQ(AsString(**b->Get("t", AsBytes("e7"))), "v");
  std::atomic<size_t> purged{0};
  auto purge = [&](Store* s) {
    for (int i = 0; i < 20; ++i) {
      auto n = s->PurgeExpired(100, 25);
      ASSERT_OK(n);
      purged += *n;
    }
  };
  std::thread ta(purge, a.get());
  std::thread tb(purge, b.get());
  ta.join();
  tb.join();
  EXPECT_EQ(purged.load(), 400u);
  EXPECT_EQ(a->GetStats()->tables["t"].entries, 0u);
}

// Reads that find both statement slots busy leave together. Made deterministic: the table is
// locked from another connection, so the first two reads hold both slots (blocked in the server)
// until every other reader has queued; then the lock goes. (A free-running count is not a test of
// this: on a loaded machine the threads can run one after another and each find a free slot.)
TEST_F(PgStoreTest, ReadsQueuedBehindBusyStatementsLeaveTogetherEachWithItsOwnValues) {
  auto store = OpenStore();
  constexpr int kReaders = 16;
  std::vector<Mutation> batch;
  for (int i = 0; i < kReaders; ++i) {
    batch.push_back(Put("q" + std::to_string(i), "value-" + std::to_string(i), 0));
  }
  ASSERT_OK(store->Apply(batch));
  PGconn* locker = PQconnectdb(conninfo_.c_str());
  ASSERT_EQ(PQstatus(locker), CONNECTION_OK);
  PQclear(PQexec(locker, "BEGIN"));
  PQclear(PQexec(locker, "LOCK TABLE otd_records IN ACCESS EXCLUSIVE MODE"));

  const uint64_t before = store->ReadStatementsForTesting();
  std::vector<std::future<bool>> right;
  for (int t = 0; t < kReaders; ++t) {
    right.push_back(std::async(std::launch::async, [&store, t] {
      const std::string key = "q" + std::to_string(t);
      const std::string want = "value-" + std::to_string(t);
      if (t % 2 == 0) {
        auto v = store->Get("t", AsBytes(key));
        return v.ok() && v->has_value() && AsString(**v) == want;
      }
      auto v = store->GetMany({{.table = "t", .key = AsBytes("absent" + std::to_string(t))},
                               {.table = "t", .key = AsBytes(key)}});
      return v.ok() && v->size() == 2 && !(*v)[0].has_value() && (*v)[1].has_value() &&
             AsString(*(*v)[1]) == want;
    }));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  while (store->ReadsQueuedForTesting() < kReaders - 2 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(store->ReadsQueuedForTesting(), size_t{kReaders - 2});
  EXPECT_EQ(store->ReadStatementsForTesting() - before, 2U);  // both slots, blocked by the lock
  PQclear(PQexec(locker, "COMMIT"));
  PQfinish(locker);
  for (int t = 0; t < kReaders; ++t) {
    EXPECT_TRUE(right[t].get()) << "reader " << t;
  }
  // The 14 queued readers leave in one statement (the first freed slot's), or two when the
  // second slot frees before that one has taken the queue: 3 or 4 statements, not 16.
  EXPECT_LE(store->ReadStatementsForTesting() - before, 4U);
}

// Many free-running readers over both slots: every caller gets its own values, and a read after
// an acknowledged write sees it, also when it shares a statement.
TEST_F(PgStoreTest, ConcurrentPointReadsEachSeeTheirOwnValues) {
  auto store = OpenStore();
  std::vector<Mutation> batch;
  for (int i = 0; i < 64; ++i) {
    batch.push_back(Put("r" + std::to_string(i), "value-" + std::to_string(i), 0));
  }
  ASSERT_OK(store->Apply(batch));
  constexpr int kThreads = 16;
  constexpr int kReads = 100;
  std::atomic<int> wrong{0};
  auto reader = [&](int t) {
    for (int i = 0; i < kReads; ++i) {
      const int k = (t * 7 + i) % 64;
      const std::string key = "r" + std::to_string(k);
      const std::string missing = "absent" + std::to_string(k);
      if (i % 2 == 0) {
        auto v = store->Get("t", AsBytes(key));
        if (!v.ok() || !v->has_value() || AsString(**v) != "value-" + std::to_string(k)) {
          ++wrong;
        }
      } else {
        auto v = store->GetMany(
            {{.table = "t", .key = AsBytes(missing)}, {.table = "t", .key = AsBytes(key)}});
        if (!v.ok() || v->size() != 2 || (*v)[0].has_value() || !(*v)[1].has_value() ||
            AsString(*(*v)[1]) != "value-" + std::to_string(k)) {
          ++wrong;
        }
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back(reader, t);
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(wrong.load(), 0);
  std::vector<Mutation> update;
  update.push_back(Put("r3", "changed", 0));
  ASSERT_OK(store->Apply(update));
  EXPECT_EQ(AsString(**store->Get("t", AsBytes("r3"))), "changed");
}

}  // namespace
}  // namespace otd::store
