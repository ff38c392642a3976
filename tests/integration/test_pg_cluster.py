"""Issue 16: the PostgreSQL cluster fixture itself (tests/integration/pg_cluster.py).

A primary and two synchronous standbys (ANY 1) started by the test as the postgres user: the
standbys stream with sync_state quorum; the vault role logs in over TCP with its password from
the 0600 file (and not without it); a commit with every standby down does not return; after a
kill -9 of the primary and the promotion of the most advanced standby, every commit that was
acknowledged before the kill is there, and the other standby streams from the new primary.
No PostgreSQL process is left behind.
"""

import os
import select
import stat
import subprocess
import threading
import time
import unittest

import pg_cluster
from pg_cluster import PgCluster

OK, WHY = pg_cluster.available()


def vault_psql(cluster, sql, password=None, conninfo=None, owner=False, timeout=30):
    """psql as the daemon role (or the schema owner) over TCP (scram), through the multi-host
    conninfo."""
    env = dict(os.environ)
    if password is None:
        with open(cluster.owner_password_file if owner else cluster.password_file) as f:
            password = f.read().strip()
    if owner and conninfo is None:
        conninfo = cluster.conninfo(user=cluster.owner())
    env["PGPASSWORD"] = password
    env["PGCONNECT_TIMEOUT"] = "5"
    return subprocess.run([pg_cluster.PSQL, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                           "-d", conninfo or cluster.conninfo(), "-c", sql],
                          env=env, capture_output=True, text=True, timeout=timeout)


class AckedWriter:
    """One psql session on the primary inserting 1, 2, 3 ... each in its own (synchronous)
    commit; `acked` holds the ids whose commit returned to the client."""

    def __init__(self, node):
        self.proc = node.psql_popen(db="postgres")
        self.acked = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        i = 0
        try:
            while True:
                i += 1
                self.proc.stdin.write(f"insert into acked values ({i}) returning id;\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
                if not line:
                    return
                self.acked.append(int(line))
        except (BrokenPipeError, ValueError, OSError):
            return

    def wait_for(self, n, timeout=30):
        deadline = time.time() + timeout
        while len(self.acked) < n:
            if time.time() > deadline:
                raise TimeoutError(f"only {len(self.acked)} commits acknowledged")
            time.sleep(0.01)

    def close(self):
        self.thread.join(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


@unittest.skipUnless(OK, WHY)
class PgClusterTest(unittest.TestCase):
    def setUp(self):
        self.c = PgCluster(standbys=2)
        self.addCleanup(self.assert_no_postgres_left)
        self.addCleanup(self.c.cleanup)
        self.c.start()
        self.c.primary().psql("create table acked (id int primary key)")

    def assert_no_postgres_left(self):
        for n in self.c.nodes:
            self.assertEqual(n.pids(), [], f"{n.name} still running")

    def ids_on(self, node):
        out = node.psql("select id from acked order by id")
        return {int(x) for x in out.split()} if out else set()

    def test_standbys_stream_synchronously_and_roles_use_tcp_passwords(self):
        p = self.c.primary()
        self.assertEqual(p.name, "pg0")
        rows = self.c.wait_sync()
        self.assertEqual(sorted((r[0], r[1], r[2]) for r in rows),
                         [("pg1", "streaming", "quorum"), ("pg2", "streaming", "quorum")])
        self.assertEqual(p.psql("show synchronous_standby_names"), "ANY 1 (pg0, pg1, pg2)")
        self.assertEqual(p.psql("show synchronous_commit"), "on")
        for f in (self.c.password_file, self.c.owner_password_file):
            self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), 0o600)
        r = vault_psql(self.c, "create table t (v text); insert into t values ('x');"
                               " grant select on t to opentoken;"
                               " select current_user, inet_server_port()", owner=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), f"opentoken_owner|{p.port}")
        # The daemon's role logs in but owns nothing and may create nothing.
        r = vault_psql(self.c, "select current_user")
        self.assertEqual(r.stdout.strip(), "opentoken", r.stderr)
        r = vault_psql(self.c, "create table u (v int)")
        self.assertIn("permission denied", r.stderr)
        r = vault_psql(self.c, "select 1", password="wrong")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("password authentication failed", r.stderr)
        # The standbys serve the committed row (read-only), the vault role cannot write there.
        for s in self.c.standbys():
            r = vault_psql(self.c, "select v from t",
                           conninfo=f"host=127.0.0.1 port={s.port} dbname=opentoken "
                                    "user=opentoken")
            self.assertEqual(r.stdout.strip(), "x", r.stderr)

    def test_commit_without_any_standby_does_not_return(self):
        p = self.c.primary()
        standbys = self.c.standbys()
        for s in standbys:
            s.stop()
        w = p.psql_popen()
        try:
            w.stdin.write("insert into acked values (1) returning id;\n")
            w.stdin.flush()
            readable, _, _ = select.select([w.stdout], [], [], 2)
            self.assertEqual(readable, [], "the commit returned without any standby")
            waiting = p.psql("select count(*) from pg_stat_activity where wait_event = 'SyncRep'")
            self.assertEqual(waiting, "1", "the commit is not waiting for a synchronous standby")
            # One standby back is enough for ANY 1: the commit returns.
            standbys[0].start()
            self.assertEqual(w.stdout.readline().strip(), "1")
        finally:
            w.kill()
            w.wait()
            for f in (w.stdin, w.stdout, w.stderr):
                f.close()

    def test_kill_primary_promote_keeps_every_acknowledged_commit(self):
        p = self.c.primary()
        w = AckedWriter(p)
        try:
            w.wait_for(200)
            self.c.kill_primary()
        finally:
            w.close()
        acked = set(w.acked)
        self.assertGreaterEqual(len(acked), 200)
        new = self.c.promote()
        self.assertFalse(new.in_recovery())
        missing = acked - self.ids_on(new)
        self.assertEqual(missing, set(), f"acknowledged commits lost on {new.name}")
        others = [s for s in self.c.standbys() if s is not new]
        self.assertEqual(len(others), 1)
        self.c.repoint(others[0], new)
        rows = self.c.wait_sync(timeout=30)
        self.assertEqual([(r[0], r[1]) for r in rows], [(others[0].name, "streaming")])
        # The multi-host conninfo finds the new primary; the write waits for the re-pointed
        # standby and is on it once acknowledged.
        r = vault_psql(self.c, "select inet_server_port()")
        self.assertEqual(r.stdout.strip(), str(new.port), r.stderr)
        new.psql("insert into acked values (-1)")
        self.assertIn(-1, self.ids_on(others[0]))

    def test_promote_picks_the_standby_that_holds_the_acknowledged_commits(self):
        # pg2 is down while pg1 alone acknowledges; then the primary dies and pg2 comes back:
        # it lacks those commits, so promoting it would lose them. promote() must pick pg1.
        p = self.c.primary()
        pg1, pg2 = self.c.node("pg1"), self.c.node("pg2")
        pg2.stop()
        for i in range(1, 51):
            p.psql(f"insert into acked values ({i})")
        self.c.kill_primary()
        pg2.start()
        self.assertLess(pg2.receive_lsn(), pg1.receive_lsn())
        self.assertIs(self.c.best_standby(), pg1)
        new = self.c.promote()
        self.assertIs(new, pg1)
        self.assertEqual(self.ids_on(new), set(range(1, 51)))
        self.c.repoint(pg2, new)
        self.c.wait_sync(expected=["pg2"], timeout=30)
        deadline = time.time() + 10
        while self.ids_on(pg2) != set(range(1, 51)) and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.ids_on(pg2), set(range(1, 51)))

    def test_failover_helper_and_restart_keep_the_failed_node_down(self):
        old, new = self.c.failover()
        self.assertEqual(old.name, "pg0")
        self.assertEqual(self.c.primary(), new)
        # A restart of the whole cluster from its state file must not bring the killed primary
        # back as a second primary (split brain).
        self.c.stop()
        again = PgCluster(base=self.c.base)
        again.start()
        self.assertFalse(again.node("pg0").running())
        self.assertEqual(again.primary().name, new.name)
        again.rejoin(again.node("pg0"))
        self.assertEqual(sorted(s.name for s in again.standbys()),
                         sorted(n.name for n in again.nodes if n.name != new.name))
        again.stop()

    def test_restart_after_a_failover_by_hand_starts_no_second_primary(self):
        # The operator kills the primary and promotes pg1 with plain commands (not through the
        # helpers, so cluster.json does not know): a restart must fence pg0 by its timeline and
        # make pg2 follow pg1.
        p = self.c.primary()
        p.psql("insert into acked values (1)")
        p.kill()
        self.c.node("pg1").psql("select pg_promote()")
        self.c.stop()
        again = PgCluster(base=self.c.base)
        again.start()
        self.assertFalse(again.node("pg0").running())
        self.assertIn("pg0", again.failed)
        self.assertEqual(again.primary().name, "pg1")
        rows = again.wait_sync(expected=["pg2"])
        self.assertEqual([r[0] for r in rows], ["pg2"])
        again.primary().psql("insert into acked values (2)")
        self.assertEqual(self.ids_on(again.node("pg2")), {1, 2})
        again.stop()


if __name__ == "__main__":
    unittest.main()
