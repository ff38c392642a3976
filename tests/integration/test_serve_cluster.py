"""Issue 16: `scripts/serve --cluster` (the newcomer's demo), run for real.

Starts it on a fresh state directory, tokenizes on node 1 over the Unix socket and reads back on
node 2 over TLS (port N+1), runs the failover command it prints (kill -9 of the primary,
promotion, re-pointing), checks that both daemons answer again without a restart, then stops it
with SIGINT to its process group (what Ctrl-C does) and checks that no daemon and no PostgreSQL
process is left. A second start on the same state directory keeps the killed primary down
(fenced) and serves the same vault.

Like test_serve_restarts, it runs install-deps and the build first (no-ops when up to date).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import pg_cluster
from harness import BIN, SOURCE, Daemon, free_port
from opentoken_client import Signer, expand, find_link, logged_in_user
from pg_cluster import PgCluster

PG_OK, PG_WHY = pg_cluster.available()
PGC = os.path.join(SOURCE, "tests", "integration", "pg_cluster.py")


class Node(Daemon):
    """Client side of DIR/nodeK (the harness's request helpers)."""

    def __init__(self, state, k, port):  # pylint: disable=super-init-not-called
        self.dir = os.path.join(state, f"node{k}")
        self.port = port
        self.sock = os.path.join(self.dir, "run", "opentokend.sock")
        self.cert = os.path.join(state, "tls", "cert.pem")
        self.proc = None


class Serve:
    def __init__(self, state, port):
        env = dict(os.environ)
        env["OTD_BUILD_DIR"] = os.path.dirname(os.path.abspath(BIN))
        self.lines = []
        self.proc = subprocess.Popen(
            [os.path.join(SOURCE, "scripts", "serve"), "--cluster", "--state", state,
             "--tls-port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_ready(self, timeout=900):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any("Ctrl-C stops" in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("scripts/serve --cluster not ready:\n" + "".join(self.lines))

    def ctrl_c(self, timeout=120):
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self._close()
        return code

    def _close(self):
        # The pipe ends when every process that inherited it is gone; closing it while the
        # reader still waits on it would block on the reader's lock.
        self.reader.join(timeout=10)
        if not self.reader.is_alive() and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=120)


def processes_under(state):
    """pids whose command line names the state dir (daemons, the cluster's postmasters)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if state.encode() in f.read():
                        out.append(int(entry))
            except OSError:
                pass
    return out


@unittest.skipUnless(PG_OK, PG_WHY)
class ServeClusterTest(unittest.TestCase):
    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="otd-serve-cluster-")
        self.port = free_port()
        while True:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", self.port + 1))
                break
            except OSError:
                self.port = free_port()
        self.serve = None
        self.addCleanup(self.cleanup)

    def cleanup(self):
        if self.serve:
            self.serve.kill()
        # Whatever a broken script left running (the temp dir names only this test's processes).
        for pid in processes_under(self.state):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        pg = os.path.join(self.state, "pg")
        if os.path.exists(os.path.join(pg, "cluster.json")):
            PgCluster(base=os.path.realpath(pg)).stop()
        real = os.path.realpath(pg)
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(real, ignore_errors=True)

    def health(self, node):
        try:
            return node.request("GET", "/healthCheck").status
        except OSError:
            return None

    def test_demo_serves_one_vault_fails_over_and_stops_cleanly(self):
        t0 = time.time()
        self.serve = Serve(self.state, self.port)
        self.serve.wait_ready()
        t_ready = time.time() - t0
        n1, n2 = Node(self.state, 1, self.port), Node(self.state, 2, self.port + 1)
        out = "".join(self.serve.lines)
        self.assertIn(f"{self.state}/node1/run/opentokend.sock", out)
        self.assertIn(f"{self.state}/node2/run/opentokend.sock", out)
        self.assertIn(f"pg_cluster.py failover --dir {self.state}/pg", out)

        alice = logged_in_user(n1, os.path.join(n1.dir, "mail"), "alice@example.com")
        account = alice.req("GET", find_link(alice.login_reply, rel="up",
                                             title="account")["href"])
        pair = alice.req("POST", find_link(account, title="account-accessCode")["href"],
                         {"description": "demo"}).json()
        url = expand(find_link(account, title="account-token-create")["href"],
                     accountId=alice.account_id)
        body = os.urandom(512)
        r = Signer(n1, pair["code"], pair["secret"]).request("POST", url, body,
                                                              "application/octet-stream")
        self.assertEqual(r.status, 201, r.body)
        loc = r.header("Location")
        g = Signer(n2, pair["code"], pair["secret"], transport="tls").request("GET", loc)
        self.assertEqual((g.status, g.body), (200, body))

        f = subprocess.run([sys.executable, PGC, "failover", "--dir", f"{self.state}/pg"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(f.returncode, 0, f.stderr)
        deadline = time.time() + 30
        while [self.health(n1), self.health(n2)] != [200, 200] and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual([self.health(n1), self.health(n2)], [200, 200])
        for n in (n1, n2):
            g = Signer(n, pair["code"], pair["secret"]).request("GET", loc)
            self.assertEqual((g.status, g.body), (200, body))
        r = Signer(n2, pair["code"], pair["secret"]).request("POST", url, b"after failover")
        self.assertEqual(r.status, 201, r.body)
        after = r.header("Location")

        self.assertEqual(self.serve.ctrl_c(), 130, "".join(self.serve.lines))
        self.assertEqual(processes_under(self.state), [], "processes left after Ctrl-C")
        self.assertEqual(processes_under(os.path.realpath(f"{self.state}/pg")), [])

        # Second start on the same state: the killed primary stays fenced, same vault.
        self.serve = Serve(self.state, self.port)
        self.serve.wait_ready()
        cluster = PgCluster(base=os.path.realpath(f"{self.state}/pg"))
        self.assertIn("pg0", cluster.failed)
        self.assertFalse(cluster.node("pg0").running())
        self.assertEqual(cluster.primary().name, "pg1")
        for n in (n1, n2):
            for target, want in ((loc, body), (after, b"after failover")):
                g = Signer(n, pair["code"], pair["secret"]).request("GET", target)
                self.assertEqual((g.status, g.body), (200, want))
        self.assertEqual(self.serve.ctrl_c(), 130)
        self.assertEqual(processes_under(self.state), [])
        print(f"\nserve --cluster: ready after {t_ready:.1f} s (first start); whole test "
              f"{time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    unittest.main()
