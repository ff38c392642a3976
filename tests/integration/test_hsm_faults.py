"""Issue 7 item 4: the token's storage vanishes under load and comes back.

While it is gone every data-path request answers 503 with the generic error shape (no key
labels, no 404/500) and health is unhealthy; nothing acknowledged is lost; when the token's files
are back the daemon recovers by itself (the hsm module re-initialises the PKCS#11 library:
SoftHSM 2.6.1 keeps a token whose files vanished invalid inside the process until then), without
a restart. A restart afterwards reads everything too. The PKCS#11 shim test
(test_hsm_shim_faults.py) covers errors injected into chosen calls."""

import os
import threading
import time
import unittest

from harness import Daemon, names_token_object
from opentoken_client import Signer, logged_in_user


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


class Load:
    """Client threads that tokenize in a loop and remember what was acknowledged (201)."""

    def __init__(self, signers, account_id, threads=3):
        self.signers = signers
        self.account_id = account_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}        # location -> payload
        self.statuses = {}     # status -> count
        self.bad = []          # replies that are neither 201 nor a well-formed 503
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, i):
        s = self.signers[i % len(self.signers)]
        n = 0
        while not self.stop.is_set():
            payload = f"load-{i}-{n}".encode()
            n += 1
            try:
                r = s.request("POST", f"/account/{self.account_id}/token", payload)
            except OSError as e:  # the daemon must never drop a connection here
                with self.lock:
                    self.bad.append(f"connection error: {e!r}")
                continue
            with self.lock:
                self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                if r.status == 201:
                    self.acked[r.header("Location")] = payload
                elif (r.status != 503 or r.header("Content-Type") != "application/vnd.error+json"
                      or names_token_object(r.body)):
                    self.bad.append(f"{r.status} {r.header('Content-Type')} {r.body[:200]!r}")

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def count(self, status):
        with self.lock:
            return self.statuses.get(status, 0)


class HsmFaultTest(unittest.TestCase):
    def test_the_label_check_ignores_the_random_logref(self):
        # Regression: a 503 whose random logref happened to contain "otd-" failed this suite.
        self.assertFalse(names_token_object(
            b'{"code":"service-unavailable","logref":"bNv0otd-6IAg","message":"service temporarily unavailable"}'))
        self.assertTrue(names_token_object(b'{"code":"x","logref":"a","message":"key otd-kek-v1 is missing"}'))
        self.assertTrue(names_token_object(b"token otd-it not present"))

    def test_token_files_vanish_under_load_and_the_daemon_recovers_without_restart(self):
        d = Daemon()
        try:
            d.start()
            c = logged_in_user(d, os.path.join(d.dir, "mail"), "fault@example.com")
            signers = []
            for _ in range(2):
                pair = c.req("POST", f"/account/{c.account_id}/accessCode", {}).json()
                signers.append(Signer(d, pair["code"], pair["secret"]))
            s = signers[0]
            loc = s.request("POST", f"/account/{c.account_id}/token", b"acknowledged").header("Location")
            tokens = os.path.join(d.dir, "hsm", "tokens")
            pid = d.proc.pid
            with Load(signers, c.account_id) as load:
                self.assertTrue(wait_for(lambda: load.count(201) >= 20, 30), load.statuses)
                os.rename(tokens, tokens + ".away")
                # Health turns unhealthy by itself (the daemon notices on the next use).
                self.assertTrue(wait_for(lambda: d.request("GET", "/healthCheck").status == 503, 15))
                before = load.count(503)
                self.assertTrue(wait_for(lambda: load.count(503) >= before + 20, 15), load.statuses)
                replies = {
                    "health": d.request("GET", "/healthCheck"),
                    "tokenize": s.request("POST", f"/account/{c.account_id}/token", b"during"),
                    "detokenize": s.request("GET", loc),
                    "login challenge": c.req("GET", c.login_href),
                    "registration": d.request("POST", "/registration",
                                              body='{"email": "x@example.com"}',
                                              headers={"Content-Type": "application/json"}),
                }
                for name, r in replies.items():
                    with self.subTest(request=name):
                        self.assertEqual(r.status, 503, r.body)
                        self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
                        self.assertFalse(names_token_object(r.body), r.body)
                acked_during_outage = load.count(201)
                os.rename(tokens + ".away", tokens)
                # Back by itself: healthy, and the clients' requests succeed again.
                self.assertTrue(wait_for(lambda: d.request("GET", "/healthCheck").status == 200, 20),
                                d.read_log()[-2000:])
                self.assertTrue(wait_for(lambda: load.count(201) >= acked_during_outage + 20, 20),
                                load.statuses)
            self.assertEqual(d.proc.pid, pid)
            self.assertIsNone(d.proc.poll(), "the daemon exited")
            self.assertEqual(load.bad, [])
            log = d.read_log()
            self.assertIn('"hsm_module_reinitialised"', log)
            # Nothing acknowledged is lost: before, during and after the outage.
            g = s.request("GET", loc)
            self.assertEqual((g.status, g.body), (200, b"acknowledged"))
            for where, payload in load.acked.items():
                r = s.request("GET", where)
                self.assertEqual((r.status, r.body), (200, payload), where)
            # And after a restart on the restored token.
            self.assertEqual(d.stop(), 0)
            d.start()
            some = list(load.acked.items())[:: max(1, len(load.acked) // 50)]
            for where, payload in some + [(loc, b"acknowledged")]:
                r = s.request("GET", where)
                self.assertEqual((r.status, r.body), (200, payload), where)
            self.assertEqual(d.stop(), 0)
            print(f"\n  load: {load.statuses}, acknowledged {len(load.acked)}")
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
