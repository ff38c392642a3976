"""scripts/serve restarted on one state directory (issue 14, item 8): every restart used to create
another SoftHSM2 token labelled opentokend (the label check never matched softhsm2-util's padded
output), after which the daemon could pick the new, empty token and `init` made fresh keys there:
401 for every signed request, every token unreadable.

Runs the real scripts/serve (install-deps and build are no-ops when the tree is up to date; the
build directory is the one under test: OTD_BUILD_DIR = the parent of OTD_BIN_DIR) four times on
one state directory and reads back every token over both listeners after each start."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BIN, SOURCE, Daemon, free_port
from opentoken_client import Signer, logged_in_user
from test_operator_hazards import token_serials

STARTS = 4  # the first start and three restarts


class ServeState(Daemon):
    """Client side of a scripts/serve state directory (the harness's request helpers)."""

    def __init__(self, state, port):  # pylint: disable=super-init-not-called
        self.dir = state
        self.port = port
        self.sock = os.path.join(state, "run", "opentokend.sock")
        self.cert = os.path.join(state, "tls", "cert.pem")
        self.conf = os.path.join(state, "hsm", "softhsm2.conf")
        self.proc = None


class ServeRestartTest(unittest.TestCase):
    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="otd-serve-")
        self.port = free_port()
        self.client = ServeState(self.state, self.port)
        self.env = dict(os.environ)
        self.env["OTD_BUILD_DIR"] = os.path.dirname(os.path.abspath(BIN))
        self.env.pop("SOFTHSM2_CONF", None)
        self.proc = None
        self.log_path = os.path.join(self.state, "serve.log")

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.state, ignore_errors=True)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def serve(self, timeout):
        """Starts scripts/serve and waits until the daemon answers on the Unix socket."""
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [os.path.join(SOURCE, "scripts", "serve"), "--state", self.state,
                 "--tls-port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"scripts/serve exited {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                if (os.path.exists(self.client.sock)
                        and self.client.request("GET", "/healthCheck").status == 200):
                    return
            except OSError:
                pass  # the socket of a daemon that is not listening yet
            time.sleep(0.2)
        self.fail("scripts/serve did not answer on its socket: " + self.log()[-3000:])

    def stop(self):
        # scripts/serve execs the daemon: the process is opentokend itself.
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=60), 0, self.log()[-3000:])
        self.proc = None

    def test_restarts_keep_one_token_and_every_token_reads_back_over_both_listeners(self):
        tokens = {}  # Location -> payload
        signers = None
        for start in range(STARTS):
            self.serve(timeout=900 if start == 0 else 300)
            if signers is None:
                user = logged_in_user(self.client, os.path.join(self.state, "mail"),
                                      "serve-restarts@example.com")
                pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
                account = user.account_id
                signers = {t: Signer(self.client, pair["code"], pair["secret"], transport=t)
                           for t in ("unix", "tls")}
            for transport, signer in signers.items():
                payload = f"start {start} over {transport}".encode()
                r = signer.request("POST", f"/account/{account}/token", payload)
                self.assertEqual(r.status, 201, f"start {start}, {transport}: {r.body!r}")
                tokens[r.header("Location")] = payload
            for location, payload in tokens.items():
                for transport, signer in signers.items():
                    g = signer.request("GET", location)
                    self.assertEqual((g.status, g.body), (200, payload),
                                     f"start {start}, {transport}, {location}")
            self.stop()
            serials = token_serials(self.client, "opentokend")
            self.assertEqual(len(serials), 1, f"after start {start}: tokens {serials}")
        self.assertEqual(len(tokens), 2 * STARTS)


if __name__ == "__main__":
    unittest.main()
