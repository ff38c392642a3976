#pragma once
// PgTestServer: a throwaway PostgreSQL 15 server for tests (header-only; link libpq). initdb and
// pg_ctl from /usr/lib/postgresql/15/bin (or $OTD_PG_BINDIR) run as the `postgres` user (the
// server refuses root) via runuser, in a fresh directory chowned to it; the server listens on a
// Unix socket in that directory only (no TCP port, so nothing to collide with), trust auth.
// Stop()/Start() stop and start the same cluster (tests of outages); the destructor stops it and
// removes the directory.
//
//   PgTestServer server;
//   if (std::string why = server.Unavailable(); !why.empty()) GTEST_SKIP() << why;
//   ASSERT_TRUE(server.Init());
//   std::string conninfo = server.CreateDatabase();  // a fresh database each call
//
// Needs root (for runuser) or to run as `postgres` itself.

#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

namespace otd::store::testing {

class PgTestServer {
 public:
  PgTestServer() {
    const char* env = std::getenv("OTD_PG_BINDIR");
    bindir_ = env != nullptr ? env : "/usr/lib/postgresql/15/bin";
  }
  ~PgTestServer() {
    if (started_) {
      Stop("immediate");
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  PgTestServer(const PgTestServer&) = delete;
  PgTestServer& operator=(const PgTestServer&) = delete;

  // Empty when a server can be started here; otherwise why not (for GTEST_SKIP).
  std::string Unavailable() const {
    if (!std::filesystem::exists(bindir_ + "/initdb")) {
      return "no PostgreSQL server binaries in " + bindir_ + " (apt-get install postgresql-15)";
    }
    if (::geteuid() != 0 && !RunningAsPostgres()) {
      return "starting PostgreSQL needs root (runuser -u postgres) or the postgres user";
    }
    if (::getpwnam("postgres") == nullptr) {
      return "no postgres user";
    }
    return "";
  }

  // initdb + start. `extra_conf` lines are appended to postgresql.conf.
  bool Init(const std::string& extra_conf = "") {
    std::string tmpl = (std::filesystem::temp_directory_path() / "otd_pg_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return false;
    }
    dir_ = tmpl;
    if (::geteuid() == 0) {
      struct passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr || ::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        return false;
      }
    }
    ::chmod(dir_.c_str(), 0700);
    if (!Run(bindir_ + "/initdb -D " + data() + " -U postgres --auth=trust -E UTF8 " +
             "--no-sync >" + dir_ + "/initdb.log 2>&1")) {
      return false;
    }
    std::string conf = "listen_addresses = ''\nunix_socket_directories = '" + dir_ +
                       "'\nport = 5432\nfsync = off\nfull_page_writes = off\n"
                       "max_connections = 200\nshared_buffers = 32MB\n" +
                       extra_conf + "\n";
    if (!Run("sh -c 'cat >> " + data() + "/postgresql.conf' <<'EOF'\n" + conf + "EOF")) {
      return false;
    }
    return Start();
  }

  bool Start() {
    started_ = Run(bindir_ + "/pg_ctl -D " + data() + " -l " + dir_ + "/server.log -w -t 60 start" +
                   " >/dev/null 2>&1");
    return started_;
  }
  // mode: fast | immediate
  bool Stop(const std::string& mode = "fast") {
    bool ok = Run(bindir_ + "/pg_ctl -D " + data() + " -m " + mode + " -w -t 60 stop" +
                  " >/dev/null 2>&1");
    started_ = false;
    return ok;
  }

  // SIGSTOP / SIGCONT to every process of the cluster (a server that hangs without closing its
  // connections).
  bool Freeze(bool on) {
    const std::string sig = on ? "STOP" : "CONT";
    return Run("pid=$(head -1 " + data() + "/postmaster.pid) && kill -" + sig +
               " $pid $(pgrep -P $pid)");
  }

  // A new, empty database; returns its conninfo.
  std::string CreateDatabase() {
    std::string name = "otd_test_" + std::to_string(++counter_);
    if (!Sql("postgres", "CREATE DATABASE " + name)) {
      return "";
    }
    return ConnInfo(name);
  }
  void DropDatabase(const std::string& name) {
    Sql("postgres", "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
  }

  std::string ConnInfo(const std::string& db) const {
    return "host=" + dir_ + " port=5432 user=postgres dbname=" + db;
  }
  // Runs one statement as the superuser; false on failure.
  bool Sql(const std::string& db, const std::string& sql) const {
    PGconn* c = PQconnectdb(ConnInfo(db).c_str());
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
      PGresult* r = PQexec(c, sql.c_str());
      ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
      if (!ok) {
        std::fprintf(stderr, "pg_server: %s: %s", sql.c_str(), PQerrorMessage(c));
      }
      PQclear(r);
    }
    PQfinish(c);
    return ok;
  }
  // The first column of the first row of a query ("" when none or on failure).
  std::string Query(const std::string& db, const std::string& sql) const {
    PGconn* c = PQconnectdb(ConnInfo(db).c_str());
    std::string out;
    if (PQstatus(c) == CONNECTION_OK) {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
        out = PQgetvalue(r, 0, 0);
      }
      PQclear(r);
    }
    PQfinish(c);
    return out;
  }

  const std::string& dir() const { return dir_; }
  std::string data() const { return dir_ + "/data"; }

 private:
  static bool RunningAsPostgres() {
    struct passwd* pw = ::getpwnam("postgres");
    return pw != nullptr && pw->pw_uid == ::geteuid();
  }
  static std::string Quote(const std::string& s) {
    std::string out = "'";
    for (char ch : s) {
      out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    }
    return out + "'";
  }
  bool Run(const std::string& cmd) const {
    std::string full = ::geteuid() == 0 ? "runuser -u postgres -- sh -c " + Quote(cmd) : cmd;
    return std::system(full.c_str()) == 0;
  }

  std::string bindir_;
  std::string dir_;
  bool started_ = false;
  std::atomic<int> counter_{0};
};

// One PostgreSQL per test binary, as a gtest environment: SetUp() starts it and publishes it in
// `*server` (null when it cannot run, with the reason in `*skip`); TearDown() stops it.
class PgTestEnvironment : public ::testing::Environment {
 public:
  PgTestEnvironment(PgTestServer** server, std::string* skip) : out_(server), skip_(skip) {}
  void SetUp() override {
    server_ = std::make_unique<PgTestServer>();
    *skip_ = server_->Unavailable();
    if (!skip_->empty()) {
      return;
    }
    if (!server_->Init()) {
      *skip_ = "could not start PostgreSQL (see " + server_->dir() + "/server.log)";
      return;
    }
    *out_ = server_.get();
  }
  void TearDown() override {
    *out_ = nullptr;
    server_.reset();
  }

 private:
  PgTestServer** out_;
  std::string* skip_;
  std::unique_ptr<PgTestServer> server_;
};

}  // namespace otd::store::testing
