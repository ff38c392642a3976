"""Key rotation without downtime (issue 8): `opentoken-admin rotate-keys` and `rewrap` while the
daemon serves signed tokenize/detokenize traffic. No request may fail, every token made before,
during and after the rotation must read back byte-exactly (also after a restart), new records
must use the new index key, and data keys must end up under the new KEK."""

import os
import re
import threading
import time
import unittest

from harness import Daemon
from opentoken_client import Signer, logged_in_user


class Load:
    """Signed tokenize + detokenize loops in threads; records every unexpected answer."""

    def __init__(self, signer, account_id, known, threads=3):
        self.s, self.account = signer, account_id
        self.known = known  # token path -> payload (shared, guarded by lock)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.failures = []
        self.requests = 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, n):
        i = 0
        while not self.stop.is_set():
            i += 1
            payload = f"load {n}-{i} {time.time()}".encode()
            r = self.s.request("POST", f"/account/{self.account}/token", payload)
            if r.status != 201:
                self.fail(f"tokenize {r.status} {r.body[:200]!r}")
                continue
            path = r.header("Location")
            with self.lock:
                self.known[path] = payload
                old_path, old_payload = next(iter(self.known.items()))  # the oldest token
            for p, want in ((path, payload), (old_path, old_payload)):
                g = self.s.request("GET", p)
                if g.status != 200 or g.body != want:
                    self.fail(f"detokenize {g.status} {g.body[:200]!r}")
            with self.lock:
                self.requests += 3

    def fail(self, what):
        with self.lock:
            self.failures.append(what)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def counts(status_text, label):
    """{version: count} from `opentoken-admin inspect` lines like 'records keyed by otd-index-v2: 5'."""
    out = {}
    for m in re.finditer(label + r"-v(\d+): (\d+)", status_text):
        out[int(m.group(1))] = int(m.group(2))
    return out


def wait_for_next_totp_step():
    time.sleep(30.5 - time.time() % 30)


class KeyRotationTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.d.start()
        spool = os.path.join(self.d.dir, "mail")
        self.user = logged_in_user(self.d, spool, "rotation@example.com")
        pair = self.user.req("POST", f"/account/{self.user.account_id}/accessCode", {}).json()
        self.signer = Signer(self.d, pair["code"], pair["secret"])
        self.known = {}
        for i in range(10):
            body = f"before rotation {i}".encode() + bytes([0, 255, i])
            r = self.signer.request("POST", f"/account/{self.user.account_id}/token", body,
                                    content_type="application/octet-stream")
            self.assertEqual(r.status, 201)
            self.known[r.header("Location")] = body

    def tearDown(self):
        self.d.cleanup()

    def read_all(self, signer):
        for path, body in list(self.known.items()):
            g = signer.request("GET", path)
            self.assertEqual(g.status, 200, path)
            self.assertEqual(g.body, body, path)

    def test_rotation_under_load_loses_nothing_and_moves_keys_forward(self):
        before = self.d.admin("inspect", check=True).stdout
        self.assertIn("current versions: kek 1, index 1", before)
        self.assertEqual(counts(before, "data keys wrapped by otd-kek").keys(), {1})

        with Load(self.signer, self.user.account_id, self.known) as load:
            time.sleep(1.5)
            r = self.d.admin("rotate-keys")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("otd-kek-v2: created, now current", r.stdout)
            self.assertIn("otd-index-v2: created, now current", r.stdout)
            self.assertRegex(r.stdout, r"rewrap: \d+ data keys moved to the current KEK")
            self.assertIn("rewrap", r.stderr)  # progress
            time.sleep(7)  # the daemon picks the new versions up within 5 s; keep serving
        self.assertEqual(load.failures, [], load.failures[:5])
        self.assertGreater(load.requests, 30)
        print(f"[ info ] {load.requests} requests during rotation, 0 failures")

        after = self.d.admin("inspect", check=True).stdout
        self.assertIn("current versions: kek 2, index 2", after)
        # Every data key is now wrapped by the new KEK (registration keys made during the
        # rotation included), and new records are keyed by the new index key.
        self.assertEqual(set(counts(after, "data keys wrapped by otd-kek").keys()), {2})
        index = counts(after, "records keyed by otd-index")
        self.assertGreater(index.get(2, 0), 0, after)
        self.assertGreater(index.get(1, 0), 0, after)  # the old tokens keep their keys

        # Everything still reads, the pre-rotation access code still signs (its secret moves to
        # the new KEK on first use), logins and new access codes work.
        self.read_all(self.signer)
        wait_for_next_totp_step()  # a TOTP code is good for one login (replay refused)
        self.assertEqual(self.user.login().status, 200)  # account + challenge found after rotation
        pair = self.user.req("POST", f"/account/{self.user.account_id}/accessCode", {}).json()
        fresh = Signer(self.d, pair["code"], pair["secret"])
        self.read_all(fresh)
        # A second account registers after rotation (its e-mail index entry uses index v2), and
        # the first address still cannot register twice.
        other = logged_in_user(self.d, os.path.join(self.d.dir, "mail"), "second@example.com")
        self.assertEqual(other.req("GET", f"/account/{other.account_id}").status, 200)

        # A second rotation, rewrap run on its own, then a restart: nothing is lost.
        r = self.d.admin("rotate-keys", "--no-rewrap")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("run `opentoken-admin rewrap`", r.stdout)
        r = self.d.admin("rewrap")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.d.stop(), 0)
        v = self.d.admin("verify")
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertEqual(set(counts(v.stdout, "data keys wrapped by otd-kek").keys()), {3})
        self.d.start()
        self.read_all(self.signer)
        # The session made after the first rotation (keyed by index v2) still works.
        self.assertEqual(self.user.req("GET", f"/account/{self.user.account_id}").status, 200)

    def test_rewrap_again_is_a_no_op_and_help_is_there(self):
        self.assertEqual(self.d.admin("rotate-keys", check=True).returncode, 0)
        r = self.d.admin("rewrap", check=True)
        self.assertIn("rewrap: 0 data keys moved", r.stdout)
        for command in ("rotate-keys", "rewrap", "status", "inspect", "verify", "backup", "restore",
                        "purge-expired", "init"):
            h = self.d.admin(command, "--help")
            self.assertEqual(h.returncode, 0, command)
            self.assertIn(f"usage: opentoken-admin {command}", h.stdout)
        self.assertEqual(self.d.admin("rotate-keys", "--bogus").returncode, 64)
        self.assertEqual(self.d.admin("no-such-command").returncode, 64)
        self.read_all(self.signer)


if __name__ == "__main__":
    unittest.main()
