"""Issue 16: two active daemons on one PostgreSQL cluster (primary + 2 synchronous standbys)
sharing one SoftHSM2 token: one vault.

- a token made on node 1 reads back on node 2 and is deleted there (then gone on node 1);
- an access code revoked on node 1 is refused on node 2 at once (no cache in between);
- under write load from several threads on both nodes, kill -9 of the primary, then promotion
  of the most advanced standby: every acknowledged (201) token reads back byte-exact from both
  daemons, every acknowledged delete (204) stays deleted, a write that is not acknowledged is a
  503 (never a 2xx for something that is not there), /healthCheck is 503 while no primary
  answers, and both daemons recover by themselves (no restart).

Skipped (with the reason) only when PostgreSQL 15 is not installed or when this build has no
PostgreSQL store (the config parser does not know storage.backend).
"""

import os
import random
import signal
import subprocess
import threading
import time
import unittest

import pg_cluster
from harness import Daemon
from opentoken_client import Signer, expand, find_link, logged_in_user
from pg_cluster import PgCluster

PG_OK, PG_WHY = pg_cluster.available()
UNKNOWN_KEY = "unknown configuration key"


def no_pg_backend(stderr):
    return UNKNOWN_KEY in stderr and ("storage.backend" in stderr or
                                      "storage.postgresql" in stderr)


_probe = []


def backend_missing():
    """The reason when this build has no PostgreSQL store (its config parser does not know
    storage.backend), else "". Probed once, before any PostgreSQL is started."""
    if not _probe:
        d = Daemon(init_keys=False)
        try:
            d.extra_config = {"storage": {"backend": "postgresql", "path": d.dir + "/data",
                                          "postgresql": {"conninfo": "host=/nonexistent"}}}
            d.write_config()
            r = d.admin("init")
            _probe.append("this build has no PostgreSQL store (storage.backend unknown to the "
                          f"config parser: {r.stderr.strip()})" if no_pg_backend(r.stderr)
                          else "")
        finally:
            d.cleanup()
    return _probe[0]


def storage_config(cluster, node_dir, owner=False):
    """A node's storage config; owner=True: as the schema owner (for opentoken-admin init)."""
    return {
        "backend": "postgresql",
        "path": os.path.join(node_dir, "data"),
        "postgresql": {
            "conninfo": cluster.conninfo(user=cluster.owner() if owner else None),
            "password_file": cluster.owner_password_file if owner else cluster.password_file,
            "pool_size": 4,
            "statement_timeout_ms": 5000,
            "connect_timeout_ms": 2000,
        },
    }


class Vault:
    """A PgCluster (or `cluster`: an object with PgCluster's start/conninfo/owner/role/
    password-file/cleanup interface, e.g. tests/long's Patroni cluster) and two daemons on it
    sharing node 1's token."""

    def __init__(self, cluster=None):
        why = backend_missing()
        if why:
            raise unittest.SkipTest(why)
        self.cluster = cluster if cluster is not None else PgCluster(standbys=2)
        self.nodes = []
        try:
            self.cluster.start()
            n1 = Daemon(init_keys=False)
            self.nodes.append(n1)
            # Schema and keys: init as the schema owner, granting the daemons' role least
            # privilege; the daemons then run as that role.
            n1.extra_config = {"storage": storage_config(self.cluster, n1.dir, owner=True)}
            n1.write_config()
            r = n1.admin("init", "--grant-to", self.cluster.role)
            assert r.returncode == 0, f"opentoken-admin init on PostgreSQL failed: {r.stderr}"
            n1.extra_config = {"storage": storage_config(self.cluster, n1.dir)}
            n1.write_config()
            n2 = Daemon(init_keys=False, hsm_from=n1)
            self.nodes.append(n2)
            n2.extra_config = {"storage": storage_config(self.cluster, n2.dir)}
            n2.write_config()
            for n in self.nodes:
                n.start()
        except BaseException:
            self.close()
            raise

    def close(self):
        """Stops both daemons (SIGTERM; kill -9 after 30 s) and the cluster, whatever fails:
        a daemon slow to stop must not leave PostgreSQL running."""
        slow = []
        try:
            for n in self.nodes:
                if n.proc is not None and n.proc.poll() is None:
                    n.proc.send_signal(signal.SIGTERM)
            for n in self.nodes:
                try:
                    if n.proc is not None:
                        n.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    slow.append(os.path.basename(n.dir))
            for n in reversed(self.nodes):
                n.cleanup()
        finally:
            self.cluster.cleanup()
        assert not slow, f"daemons not stopped 30 s after SIGTERM: {slow}"


class User:
    def __init__(self, node, address):
        spool = os.path.join(node.dir, "mail")
        self.c = logged_in_user(node, spool, address)
        account = self.c.req("GET", find_link(self.c.login_reply, rel="up",
                                               title="account")["href"])
        self.account_id = self.c.account_id
        self.template = find_link(account, title="account-token-create")["href"]
        self.codes_href = find_link(account, title="account-accessCode")["href"]
        self.pair, self.pair_href = self.new_pair()

    def new_pair(self):
        r = self.c.req("POST", self.codes_href, {"description": "cluster test"})
        assert r.status == 201, r.body
        return r.json(), r.header("Location")

    def token_url(self):
        return expand(self.template, accountId=self.account_id)

    def signer(self, node, pair=None):
        p = pair or self.pair
        return Signer(node, p["code"], p["secret"])


@unittest.skipUnless(PG_OK, PG_WHY)
class ClusterCoherenceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.v = Vault()
        cls.n1, cls.n2 = cls.v.nodes
        cls.alice = User(cls.n1, "alice@example.com")

    @classmethod
    def tearDownClass(cls):
        cls.v.close()

    def test_tokenize_on_one_node_detokenize_and_delete_on_the_other(self):
        body = os.urandom(4096)
        r = self.alice.signer(self.n1).request("POST", self.alice.token_url(), body,
                                               "application/octet-stream")
        self.assertEqual(r.status, 201, r.body)
        loc = r.header("Location")
        g = self.alice.signer(self.n2).request("GET", loc, b"", "application/octet-stream")
        self.assertEqual(g.status, 200, g.body)
        self.assertEqual(g.body, body)
        self.assertEqual(self.alice.signer(self.n2).request("DELETE", loc).status, 204)
        self.assertEqual(self.alice.signer(self.n1).request("GET", loc).status, 404)
        self.assertEqual(self.alice.signer(self.n2).request("GET", loc).status, 404)
        self.assertEqual(self.alice.signer(self.n1).request("DELETE", loc).status, 404)

    def test_access_code_revoked_on_one_node_is_refused_on_the_other_at_once(self):
        pair, href = self.alice.new_pair()
        s2 = self.alice.signer(self.n2, pair)
        self.assertEqual(s2.request("POST", self.alice.token_url(), b"x").status, 201)
        self.assertEqual(self.alice.c.req("DELETE", href).status, 204)  # on node 1
        self.assertEqual(s2.request("POST", self.alice.token_url(), b"x").status, 401)
        self.assertEqual(self.alice.signer(self.n1, pair).request(
            "POST", self.alice.token_url(), b"x").status, 401)

    def test_both_nodes_are_healthy(self):
        for n in (self.n1, self.n2):
            self.assertEqual(n.request("GET", "/healthCheck").status, 200)


class Load:
    """Writers on both nodes: tokenize random payloads, and delete some of their own tokens on
    the other node. Keeps what was acknowledged and every status seen."""

    def __init__(self, user, nodes, threads=4):
        self.user, self.nodes = user, nodes
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.tokens = {}         # location -> payload, acknowledged 201, not deleted
        self.deleted = set()     # acknowledged 204
        self.unknown_deletes = set()  # 503 on delete: outcome unknown
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
            try:
                if mine and n % 3 == 0:
                    loc = mine.pop(rnd.randrange(len(mine)))
                    r = self.user.signer(node).request("DELETE", loc)
                    self._count("DELETE", r.status)
                    with self.lock:
                        if r.status == 204:
                            self.tokens.pop(loc)
                            self.deleted.add(loc)
                        else:
                            self.unknown_deletes.add(loc)
                            self.tokens.pop(loc)
                    continue
                body = os.urandom(rnd.randrange(1, 2048))
                r = self.user.signer(node).request("POST", self.user.token_url(), body,
                                                   "application/octet-stream")
                self._count("POST", r.status)
                if r.status == 201:
                    loc = r.header("Location")
                    with self.lock:
                        self.tokens[loc] = body
                    mine.append(loc)
                elif r.status == 503:
                    time.sleep(0.05)
            except Exception as e:  # noqa: BLE001 - a transport failure is a finding
                with self.lock:
                    self.errors.append(repr(e))
                time.sleep(0.05)

    def finish(self):
        self.stop.set()
        for w in self.workers:
            w.join(timeout=30)


@unittest.skipUnless(PG_OK, PG_WHY)
class ClusterFailoverTest(unittest.TestCase):
    def setUp(self):
        self.v = Vault()
        self.addCleanup(self.v.close)
        self.n1, self.n2 = self.v.nodes
        self.alice = User(self.n1, "alice@example.com")

    def health(self, node):
        try:
            return node.request("GET", "/healthCheck").status
        except OSError:
            return None

    def wait_health(self, want, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = [self.health(n) for n in (self.n1, self.n2)]
            if got == [want, want]:
                return time.time()
            time.sleep(0.05)
        self.fail(f"/healthCheck not {want} on both nodes within {timeout} s: {got}")

    def test_kill_primary_under_write_load_loses_nothing_acknowledged(self):
        c = self.v.cluster
        load = Load(self.alice, [self.n1, self.n2]).start()
        try:
            deadline = time.time() + 30
            while load.acked() < 40 and time.time() < deadline:
                time.sleep(0.05)
            self.assertGreaterEqual(load.acked(), 40, load.statuses)
            # A revocation acknowledged under load, just before the primary dies.
            revoked, revoked_href = self.alice.new_pair()
            self.assertEqual(self.alice.c.req("DELETE", revoked_href).status, 204)
            t_kill = time.time()
            old = c.kill_primary()
            # No writable primary: both nodes say so, writes get 503.
            self.wait_health(503, timeout=20)
            before_promote = dict(load.statuses["POST"])
            time.sleep(0.5)
            new = c.promote()
            for s in c.standbys():
                c.repoint(s, new)
            c.wait_sync(timeout=30)
            t_healthy = self.wait_health(200, timeout=30)
            # Both nodes tokenize again, without a restart.
            for n in (self.n1, self.n2):
                r = self.alice.signer(n).request("POST", self.alice.token_url(), b"after")
                self.assertEqual(r.status, 201, r.body)
            time.sleep(1)
        finally:
            load.finish()
        print(f"\nfailover: {old.name} killed, {new.name} promoted; healthy again after "
              f"{t_healthy - t_kill:.1f} s; statuses {load.statuses}; "
              f"{len(load.tokens)} tokens, {len(load.deleted)} deletes acknowledged",
              flush=True)
        self.assertEqual(load.errors, [])
        self.assertLessEqual(set(load.statuses["POST"]), {201, 503}, load.statuses)
        self.assertLessEqual(set(load.statuses["DELETE"]), {204, 503}, load.statuses)
        self.assertGreater(before_promote.get(503, 0) + load.statuses["DELETE"].get(503, 0), 0,
                           "no write was refused while there was no primary")
        for n in (self.n1, self.n2):
            for loc, body in load.tokens.items():
                g = self.alice.signer(n).request("GET", loc, b"", "application/octet-stream")
                self.assertEqual(g.status, 200, f"acknowledged token {loc} lost: {g.body}")
                self.assertEqual(g.body, body, f"acknowledged token {loc} changed")
            for loc in load.deleted:
                self.assertEqual(self.alice.signer(n).request("GET", loc).status, 404,
                                 f"acknowledged delete of {loc} undone")
        for n in (self.n1, self.n2):
            r = self.alice.signer(n, revoked).request("POST", self.alice.token_url(), b"x")
            self.assertEqual(r.status, 401, "acknowledged revocation undone")
        # The surviving standby streams from the new primary.
        self.assertEqual(len(c.standbys()), 1)


if __name__ == "__main__":
    unittest.main()
