#!/usr/bin/env python3
"""Issue 16, long variant: the production topology of docs/cluster.md -- three PostgreSQL 15
members managed by Patroni with a single-member etcd as DCS, `synchronous_mode` (and
`synchronous_mode_strict`) on -- and two opentokend daemons on it sharing one SoftHSM2 token.
Patroni does the failover by itself; nothing here promotes or re-points anything.

Under write load from 4 threads over both daemons (tokenize, delete on the other daemon), each
fault in turn:
  kill9-node   kill -9 of the leader's whole node: its Patroni and all its PostgreSQL
               processes at once (a crashed machine); after the failover the node is started
               again (a reboot) and must come back as a replica (pg_rewind), not as a primary;
  stop-pg      SIGSTOP of every PostgreSQL process of the leader (a hung database: its Patroni
               still runs, but cannot renew the leader key); SIGCONT once another member leads;
  stop-node    SIGSTOP of the leader's Patroni and PostgreSQL (a paused VM); SIGCONT once
               another member leads.
After each fault: another member leads, the old leader is demoted (after SIGCONT: a replica
within 60 s, and never more than one member is a primary that Patroni counts as leader), every
acknowledged (201) token reads back byte-exact from both daemons, every acknowledged delete
(204) stays deleted, a write not acknowledged is a 503 or a client timeout (never another 2xx),
and both daemons answer 201 and /healthCheck 200 again without a restart. The time from the
fault to both daemons answering 201 again is printed (and the time to the new leader).

Everything (daemons, Patroni, PostgreSQL, etcd) is stopped at the end, also on failure, and the
test fails if a process started here is left.

Usage (after scripts/build and tests/long/install-deps-long, as root: PostgreSQL runs as the
`postgres` user):
    python3 tests/long/patroni_failover_long.py [--faults kill9-node,stop-pg,stop-node]
Environment as for the integration tests: OTD_BIN_DIR (default build/bin), OTD_PKCS11_MODULE,
OTD_PG_BINDIR (default /usr/lib/postgresql/15/bin). Keep the temp dir: OTD_KEEP=1.
"""

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("OTD_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))
os.environ.setdefault("OTD_SOURCE_DIR", os.path.join(HERE, "..", ".."))

import pg_cluster  # noqa: E402
from pg_cluster import PG_BIN, Node, _lit, _pg_ids, free_port  # noqa: E402
from test_cluster import User, Vault  # noqa: E402

PATRONI = shutil.which("patroni") or "/usr/bin/patroni"
ETCD = shutil.which("etcd") or "/usr/bin/etcd"

# Patroni timings (bootstrap.dcs). Patroni needs loop_wait + 2 * retry_timeout <= ttl.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 4
MAX_LAG = 1024 * 1024

# Patroni's DCS client. Default "etcd" (etcd's v2 API, which etcd 3.4 serves with --enable-v2):
# Patroni renews the leader key there with a compare-and-swap on its own name, so a leader that
# was frozen past the ttl cannot take the key back. "etcd3" (the v3 API) in Debian 12's Patroni
# 3.0.2 is NOT safe against that: after its lease expired, a frozen leader that wakes up writes
# the leader key unconditionally with a new lease, over the member that was promoted meanwhile,
# which then demotes itself (patroni/patroni#2689, fixed in Patroni 3.0.3). --dcs etcd3 with
# --faults stop-pg reproduces it.
DCS = "etcd"


def available():
    ok, why = pg_cluster.available()
    if not ok:
        return ok, why
    for tool in (PATRONI, ETCD):
        if not os.access(tool, os.X_OK):
            return False, f"{tool} not found (tests/long/install-deps-long)"
    if os.geteuid() != 0:
        return False, "run as root (PostgreSQL and Patroni run as the postgres user)"
    return True, ""


def _spawn(argv, log, as_postgres=False):
    kw = {}
    ids = _pg_ids()
    if as_postgres and ids:
        kw = {"user": ids[0], "group": ids[1], "extra_groups": []}
    f = open(log, "ab")
    try:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd="/",
                                start_new_session=True,
                                env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8",
                                     "HOME": "/tmp"}, **kw)
    finally:
        f.close()


def _signal(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


class Member:
    """One Patroni member: its Patroni process and the PostgreSQL it manages."""

    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name
        self.pg = Node(cluster, name, free_port())   # data in BASE/name/data
        self.api = free_port()
        self.conf = os.path.join(self.pg.dir, "patroni.yml")
        self.log = os.path.join(self.pg.dir, "patroni.log")
        self.proc = None

    def start(self):
        self.proc = _spawn([PATRONI, self.conf], self.log, as_postgres=True)

    def patroni_pids(self):
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def status(self, timeout=2):
        """Patroni's GET /patroni (dict), or None when the REST API does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api}/patroni",
                                        timeout=timeout) as r:
                return json.loads(r.read())
        except Exception:  # noqa: BLE001 - HTTP 503 (replica not running) etc.
            return None

    def config(self, etcd_port, sockdir, passwords):
        c = self.cluster
        return {
            "scope": "otd", "namespace": "/otd/", "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{self.api}",
                        "connect_address": f"127.0.0.1:{self.api}"},
            # Which Patroni DCS client: see DCS below.
            self.cluster.dcs: {"hosts": [f"127.0.0.1:{etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                    "maximum_lag_on_failover": MAX_LAG,
                    "synchronous_mode": True, "synchronous_mode_strict": True,
                    "postgresql": {
                        "use_pg_rewind": True, "use_slots": True,
                        "parameters": {
                            "wal_level": "replica", "hot_standby": "on",
                            "wal_log_hints": "on", "max_wal_senders": 10,
                            "max_replication_slots": 10, "max_connections": 100,
                            "wal_receiver_status_interval": "1s",
                            "hot_standby_feedback": "on",
                            "password_encryption": "scram-sha-256",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg.port}",
                "connect_address": f"127.0.0.1:{self.pg.port}",
                "data_dir": self.pg.data, "bin_dir": PG_BIN,
                "pgpass": os.path.join(self.pg.dir, "pgpass"),
                "use_unix_socket": True,
                "authentication": {
                    "superuser": {"username": "postgres", "password": passwords["postgres"]},
                    "replication": {"username": "replicator",
                                    "password": passwords["replicator"]},
                    "rewind": {"username": "rewinder", "password": passwords["rewinder"]},
                },
                "parameters": {"unix_socket_directories": sockdir,
                               "unix_socket_permissions": "0700",
                               "shared_buffers": "32MB", "logging_collector": "off"},
                "pg_hba": [
                    "local all postgres peer",
                    "host all postgres 127.0.0.1/32 scram-sha-256",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host postgres rewinder 127.0.0.1/32 scram-sha-256",
                    f"host {c.db} {c.role},{c.owner()} 127.0.0.1/32 scram-sha-256",
                ],
            },
        }


class PatroniCluster:
    """etcd + 3 Patroni members; the interface of PgCluster that test_cluster.Vault uses
    (start, conninfo, owner, role, password files, cleanup)."""

    def __init__(self, members=3, db="opentoken", role="opentoken", dcs=None):
        self.dcs = dcs or DCS
        self.base = tempfile.mkdtemp(prefix="otd-patroni-")
        self.db, self.role = db, role
        self.sockdir = os.path.join(self.base, "sock")
        self.password_file = os.path.join(self.base, "vault.password")
        self.owner_password_file = os.path.join(self.base, "owner.password")
        self.etcd_port, self.etcd_peer = free_port(), free_port()
        self.etcd = None
        self.members = [Member(self, f"pg{i}") for i in range(members)]

    # --- the PgCluster interface -------------------------------------------------------------
    def owner(self):
        return self.role + "_owner"

    def conninfo(self, db=None, user=None):
        hosts = ",".join("127.0.0.1" for _ in self.members)
        ports = ",".join(str(m.pg.port) for m in self.members)
        return (f"host={hosts} port={ports} target_session_attrs=read-write "
                f"dbname={db or self.db} user={user or self.role}")

    def start(self, timeout=120):
        ids = _pg_ids()
        os.chmod(self.base, 0o755)
        os.makedirs(self.sockdir, mode=0o700)
        for m in self.members:
            os.makedirs(m.pg.dir, mode=0o700)
        if ids:
            for p in [self.sockdir] + [m.pg.dir for m in self.members]:
                os.chown(p, ids[0], ids[1])
        etcd_dir = os.path.join(self.base, "etcd")
        self.etcd = _spawn([
            ETCD, "--name", "e0", "--data-dir", etcd_dir,
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-cluster", f"e0=http://127.0.0.1:{self.etcd_peer}",
            "--initial-cluster-state", "new", "--enable-v2=true",
            "--logger", "zap", "--log-outputs", "stderr"],
            os.path.join(self.base, "etcd.log"))
        self._wait(lambda: self._etcd_healthy(), 30, "etcd healthy")
        passwords = {k: secrets.token_urlsafe(24) for k in ("postgres", "replicator", "rewinder")}
        for m in self.members:
            with open(m.conf, "w") as f:
                json.dump(m.config(self.etcd_port, self.sockdir, passwords), f, indent=1)
            os.chmod(m.conf, 0o600)
            if ids:
                os.chown(m.conf, ids[0], ids[1])
        # The first member bootstraps (initdb); the others clone it once it leads.
        self.members[0].start()
        self._wait(lambda: self.leader() is not None, timeout, "a Patroni leader")
        for m in self.members[1:]:
            m.start()
        self.wait_healthy(timeout)
        self._make_vault_roles(self.leader())
        return self

    def _etcd_healthy(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health",
                                        timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"
        except Exception:  # noqa: BLE001
            return False

    def _make_vault_roles(self, leader):
        def new_password(path):
            pw = secrets.token_urlsafe(24)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(pw + "\n")
            return pw
        p = leader.pg
        for name, path in ((self.owner(), self.owner_password_file),
                           (self.role, self.password_file)):
            p.psql(f"create role {name} login password {_lit(new_password(path))}")
        p.psql(f"create database {self.db} owner {self.owner()}")
        p.psql(f"revoke all on database {self.db} from public")
        p.psql(f"grant connect on database {self.db} to {self.role}")

    # --- state ---------------------------------------------------------------------------------
    @staticmethod
    def _wait(cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def cluster_view(self, exclude=()):
        """GET /cluster from the first member that answers (not in `exclude`), or None."""
        for m in self.members:
            if m.name in exclude or not m.patroni_pids():
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{m.api}/cluster",
                                            timeout=2) as r:
                    return json.loads(r.read())
            except Exception:  # noqa: BLE001
                continue
        return None

    def leader(self, exclude=()):
        """The member holding the leader key (per Patroni's /cluster), running, or None."""
        v = self.cluster_view(exclude)
        if not v:
            return None
        for x in v.get("members", []):
            if x.get("role") == "leader" and x.get("state") == "running":
                return self.member(x["name"])
        return None

    def member(self, name):
        return next(m for m in self.members if m.name == name)

    def healthy(self, want_members=None):
        """Leader + every (wanted) other member a running replica, one of them sync_standby,
        lag 0. Returns the /cluster view or None."""
        v = self.cluster_view()
        if not v:
            return None
        names = set(want_members or (m.name for m in self.members))
        ms = {x["name"]: x for x in v.get("members", []) if x["name"] in names}
        if set(ms) != names:
            return None
        roles = sorted(x.get("role") for x in ms.values())
        if roles.count("leader") != 1 or "sync_standby" not in roles:
            return None
        if any(x.get("state") not in ("running", "streaming") for x in ms.values()):
            return None
        if any(x.get("lag", 0) not in (0, "0") for x in ms.values() if x["role"] != "leader"):
            return None
        return v

    def wait_healthy(self, timeout=120, want_members=None):
        return self._wait(lambda: self.healthy(want_members), timeout,
                          "leader + streaming replicas with a sync standby")

    def primaries(self):
        """Names of the members whose PostgreSQL answers pg_is_in_recovery() = false."""
        return [m.name for m in self.members if m.pg.running() and
                m.pg.in_recovery() is False]

    # --- faults --------------------------------------------------------------------------------
    def kill_node(self, m):
        """kill -9 of the member's Patroni and all its PostgreSQL processes at once."""
        pids = m.patroni_pids() + m.pg.pids()
        _signal(pids, signal.SIGKILL)
        if m.proc is not None:
            m.proc.wait(timeout=10)
        m.pg.kill()  # waits for the processes, removes lock files naming a zombie

    # --- cleanup -------------------------------------------------------------------------------
    def strays(self):
        """Processes still running whose command line names this cluster's directory (and
        etcd/Patroni processes started here)."""
        out = []
        mine = {p.pid for p in [self.etcd] + [m.proc for m in self.members] if p is not None}
        for e in os.listdir("/proc"):
            if not e.isdigit():
                continue
            try:
                with open(f"/proc/{e}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{e}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if state == "Z":
                continue
            if self.base.encode() in cmd or (int(e) in mine):
                out.append((int(e), cmd.replace(b"\0", b" ").decode(errors="replace")[:120]))
        return out

    def stop(self):
        """SIGCONT everything (a stopped process ignores SIGTERM), SIGTERM the Patroni members
        (each stops its PostgreSQL), kill -9 after 30 s what remains, then etcd."""
        for m in self.members:
            _signal(m.patroni_pids() + m.pg.pids(), signal.SIGCONT)
        for m in self.members:
            _signal(m.patroni_pids(), signal.SIGTERM)
        deadline = time.time() + 30
        for m in self.members:
            if m.proc is None:
                continue
            try:
                m.proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(timeout=10)
        for m in self.members:
            m.pg.kill()
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.terminate()
            try:
                self.etcd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.etcd.kill()
                self.etcd.wait(timeout=10)
        # Anything else started under our directory (a postgres forked by a killed Patroni).
        left = self.strays()
        _signal([p for p, _ in left], signal.SIGKILL)
        time.sleep(0.5)
        return left

    def cleanup(self):
        left = self.stop()
        if os.environ.get("OTD_KEEP"):
            print(f"kept {self.base}", flush=True)
        else:
            shutil.rmtree(self.base, ignore_errors=True)
        still = self.strays()
        assert not still, f"processes left after cleanup: {still}"
        if left:
            print(f"cleanup: killed stray processes {left}", flush=True)


class Load:
    """Writers on both daemons: tokenize random payloads, delete a third of their own tokens on
    the other daemon. A request without an answer within 10 s (client timeout) counts as status
    'timeout': its outcome is unknown, like a 503."""

    def __init__(self, user, nodes, threads=4):
        self.user, self.nodes = user, nodes
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.tokens = {}
        self.deleted = set()
        self.unknown_deletes = set()
        self.statuses = {"POST": {}, "DELETE": {}}
        self.errors = []
        self.workers = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def start(self):
        for w in self.workers:
            w.start()
        return self

    def _count(self, method, status):
        with self.lock:
            self.statuses[method][status] = self.statuses[method].get(status, 0) + 1

    def acked(self):
        with self.lock:
            return len(self.tokens)

    def _run(self, i):
        rnd = random.Random(i)
        mine = []
        n = 0
        while not self.stop.is_set():
            n += 1
            node = self.nodes[(i + n) % len(self.nodes)]
            if mine and n % 3 == 0:
                loc = mine.pop(rnd.randrange(len(mine)))
                try:
                    status = self.user.signer(node).request("DELETE", loc).status
                except (socket.timeout, TimeoutError):
                    status = "timeout"
                except Exception as e:  # noqa: BLE001 - a transport failure is a finding
                    status = "error"
                    with self.lock:
                        self.errors.append(repr(e))
                self._count("DELETE", status)
                with self.lock:
                    self.tokens.pop(loc)
                    (self.deleted if status == 204 else self.unknown_deletes).add(loc)
                continue
            body = os.urandom(rnd.randrange(1, 2048))
            try:
                r = self.user.signer(node).request("POST", self.user.token_url(), body,
                                                   "application/octet-stream")
                status = r.status
            except (socket.timeout, TimeoutError):
                status = "timeout"
            except Exception as e:  # noqa: BLE001
                status = "error"
                with self.lock:
                    self.errors.append(repr(e))
            self._count("POST", status)
            if status == 201:
                with self.lock:
                    self.tokens[r.header("Location")] = body
                mine.append(r.header("Location"))
            elif status != 201:
                time.sleep(0.05)

    def finish(self):
        self.stop.set()
        for w in self.workers:
            w.join(timeout=30)


class Probe:
    """One thread per daemon, each POSTing a small token in a loop (10 s client timeout) and
    recording (start, end, ok). recovery(t0): seconds from t0 until every daemon answered 201
    to a probe started after its last failed one (0 when no probe failed after t0)."""

    def __init__(self, test, nodes):
        self.test, self.nodes = test, nodes
        self.stop = threading.Event()
        self.log = {i: [] for i in range(len(nodes))}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(len(nodes))]
        for t in self.threads:
            t.start()

    def _run(self, i):
        while not self.stop.is_set():
            t = time.time()
            ok = self.test.post_ok(self.nodes[i])
            self.log[i].append((t, time.time(), ok))
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def recovery(self, t0):
        worst = 0.0
        for entries in self.log.values():
            after = [e for e in entries if e[1] >= t0]
            failed = [e for e in after if not e[2]]
            if not failed:
                continue
            last_fail = max(e[0] for e in failed)
            oks = [e[1] for e in after if e[2] and e[0] > last_fail]
            worst = max(worst, (min(oks) if oks else float("inf")) - t0)
        return round(worst, 1)


FAULTS = ("kill9-node", "stop-pg", "stop-node")


class PatroniFailoverTest(unittest.TestCase):
    faults = FAULTS
    results = []

    def setUp(self):
        ok, why = available()
        if not ok:
            self.skipTest(why)
        self.c = PatroniCluster()
        self.v = Vault(cluster=self.c)
        self.addCleanup(self.v.close)
        self.n1, self.n2 = self.v.nodes
        self.alice = User(self.n1, "alice@example.com")

    def post_ok(self, node):
        try:
            r = self.alice.signer(node).request("POST", self.alice.token_url(), b"probe")
            return r.status == 201
        except OSError:
            return False

    def health(self, node):
        try:
            return node.request("GET", "/healthCheck").status
        except OSError:
            return None

    def run_fault(self, fault):
        c = self.c
        old = c.leader()
        self.assertIsNotNone(old)
        load = Load(self.alice, [self.n1, self.n2]).start()
        probe = Probe(self, [self.n1, self.n2])
        res = {"fault": fault, "old_leader": old.name}
        primaries_seen = []
        try:
            deadline = time.time() + 30
            start_acked = load.acked()
            while load.acked() < start_acked + 40 and time.time() < deadline:
                time.sleep(0.05)
            self.assertGreaterEqual(load.acked(), start_acked + 40, load.statuses)
            revoked, revoked_href = self.alice.new_pair()
            self.assertEqual(self.alice.c.req("DELETE", revoked_href).status, 204)

            stopped = []
            t0 = time.time()
            if fault == "kill9-node":
                c.kill_node(old)
            elif fault == "stop-pg":
                stopped = old.pg.pids()
            else:
                stopped = old.patroni_pids() + old.pg.pids()
            _signal(stopped, signal.SIGSTOP)

            def new_leader():
                m = c.leader(exclude=(old.name,))
                return m if m is not None and m.name != old.name else None
            new = c._wait(new_leader, 90, "a new leader")
            t_leader = time.time()
            res["new_leader"] = new.name
            res["leader_s"] = round(t_leader - t0, 1)
            if stopped:
                # Let the daemons work against the new leader while the old one is frozen,
                # then wake it: Patroni must demote it.
                time.sleep(2)
                _signal(stopped, signal.SIGCONT)
                t_cont = time.time()
                while time.time() < t_cont + 60:
                    prim = c.primaries()
                    primaries_seen.append(prim)
                    st = old.status()
                    if (old.name not in prim and st and st.get("role") == "replica"
                            and st.get("state") == "running"):
                        break
                    time.sleep(0.2)
                res["demoted_s"] = round(time.time() - t_cont, 1)
                self.assertNotIn(old.name, c.primaries(), "old leader still a primary")
                res["max_primaries_after_cont"] = max(len(p) for p in primaries_seen)
            # Both daemons write again without a restart.
            c._wait(lambda: self.post_ok(self.n1) and self.post_ok(self.n2), 90,
                    "both daemons answering 201")
            c._wait(lambda: self.health(self.n1) == 200 and self.health(self.n2) == 200, 30,
                    "/healthCheck 200 on both daemons")
            if fault == "kill9-node":
                # The crashed machine reboots: its Patroni starts and must rejoin as a replica
                # (pg_rewind over the commits the others never saw), not as a second primary.
                c.wait_healthy(120, want_members=[m.name for m in c.members if m is not old])
                res["sync_standby_again_s"] = round(time.time() - t0, 1)
                t_boot = time.time()
                old.start()
                c.wait_healthy(120)
                res["rejoined_s"] = round(time.time() - t_boot, 1)
                self.assertEqual(c.primaries(), [new.name])
            else:
                c.wait_healthy(120)
                res["sync_standby_again_s"] = round(time.time() - t0, 1)
            time.sleep(1)
        finally:
            probe.finish()
            load.finish()
        # From the fault until both daemons answered 201 again, for good.
        res["writes_ok_s"] = probe.recovery(t0)
        res["statuses"] = load.statuses
        res["acked"] = len(load.tokens)
        res["deleted"] = len(load.deleted)
        print(f"\n{fault}: {json.dumps(res)}", flush=True)
        self.results.append(res)
        self.assertEqual(load.errors, [])
        self.assertLessEqual(set(load.statuses["POST"]), {201, 503, "timeout"}, load.statuses)
        self.assertLessEqual(set(load.statuses["DELETE"]), {204, 503, "timeout"},
                             load.statuses)
        for n in (self.n1, self.n2):
            for loc, body in load.tokens.items():
                g = self.alice.signer(n).request("GET", loc, b"", "application/octet-stream")
                self.assertEqual(g.status, 200, f"acknowledged token {loc} lost: {g.body}")
                self.assertEqual(g.body, body, f"acknowledged token {loc} changed")
            for loc in load.deleted:
                self.assertEqual(self.alice.signer(n).request("GET", loc).status, 404,
                                 f"acknowledged delete of {loc} undone")
            r = self.alice.signer(n, revoked).request("POST", self.alice.token_url(), b"x")
            self.assertEqual(r.status, 401, "acknowledged revocation undone")
        self.assertEqual(c.primaries(), [c.leader().name])

    def test_patroni_failover_under_write_load(self):
        t = time.time()
        for fault in self.faults:
            with self.subTest(fault=fault):
                self.run_fault(fault)
        print(f"\nall faults: {time.time() - t:.0f} s", flush=True)


def main():
    global DCS
    ap = argparse.ArgumentParser()
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"comma-separated, in order, from {FAULTS}")
    ap.add_argument("--dcs", choices=("etcd", "etcd3"), default=DCS,
                    help="Patroni's etcd client: v2 API (default) or v3 (see DCS)")
    args = ap.parse_args()
    DCS = args.dcs
    faults = [f for f in args.faults.split(",") if f]
    for f in faults:
        if f not in FAULTS:
            ap.error(f"unknown fault {f}")
    PatroniFailoverTest.faults = faults
    t = time.time()
    result = unittest.TextTestRunner(verbosity=2).run(
        PatroniFailoverTest("test_patroni_failover_under_write_load"))
    print(f"run time {time.time() - t:.0f} s", flush=True)
    sys.exit(0 if result.wasSuccessful() and not result.skipped else 1)


if __name__ == "__main__":
    main()
