"""Issue 16: what one node revokes, deletes or rotates takes effect on the other at once.

Two daemons on one PostgreSQL (the fixture of test_cluster.py) sharing one SoftHSM2 token. For
each object node 2 first warms every cache it has on it (the same request succeeds there), then
node 1 (or `opentoken-admin`) acts, and node 2's very next request must be refused (or, for a
rotation, must read what node 1 made under the new keys).

A shredded account is covered by service/vault_test.cc (two key hierarchies on one store): the
HTTP API has no account deletion route; shredding happens to registrations (confirmation, purge).

Skipped, with the reason, when PostgreSQL 15 or this build's PostgreSQL store is missing.
"""

import json
import os
import shutil
import threading
import time
import unittest

import pg_cluster
from harness import Daemon
from test_cluster import PG_OK, PG_WHY, User, Vault

assert pg_cluster  # the fixture module, imported for its availability probe


def bearer(node, token, method, path, body=None):
    h = {"Authorization": "Bearer " + token}
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    return node.request(method, path, body=body, headers=h)


@unittest.skipUnless(PG_OK, PG_WHY)
class ClusterCacheCoherenceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.v = Vault()
        cls.n1, cls.n2 = cls.v.nodes
        cls.alice = User(cls.n1, "alice@example.com")

    @classmethod
    def tearDownClass(cls):
        cls.v.close()

    def tokenize(self, node, body):
        r = self.alice.signer(node).request("POST", self.alice.token_url(), body,
                                            "application/octet-stream")
        self.assertEqual(r.status, 201, r.body)
        return r.header("Location")

    def detokenize(self, node, loc):
        return self.alice.signer(node).request("GET", loc, b"", "application/octet-stream")

    def test_revoked_access_code(self):
        pair, href = self.alice.new_pair()
        s2 = self.alice.signer(self.n2, pair)
        loc = self.tokenize(self.n1, b"code")
        for _ in range(2):
            self.assertEqual(s2.request("GET", loc, b"", "application/octet-stream").status, 200)
        self.assertEqual(self.alice.c.req("DELETE", href).status, 204)  # on node 1
        self.assertEqual(s2.request("GET", loc, b"", "application/octet-stream").status, 401)

    def test_deleted_token(self):
        loc = self.tokenize(self.n1, b"deleted")
        for _ in range(2):
            self.assertEqual(self.detokenize(self.n2, loc).status, 200)
        self.assertEqual(self.alice.signer(self.n1).request("DELETE", loc).status, 204)
        self.assertEqual(self.detokenize(self.n2, loc).status, 404)

    def new_access_token(self):
        r = self.alice.c.req("POST", "/access-tokens",
                             {"name": "coherence", "scope": ["accessTokens.read"]})
        self.assertEqual(r.status, 201, r.body)
        t = r.json()
        for _ in range(2):
            self.assertEqual(bearer(self.n2, t["token"], "GET", "/access-tokens").status, 200)
        return t

    def test_disabled_access_token(self):
        t = self.new_access_token()
        r = self.alice.c.req("PATCH", "/access-tokens/" + t["id"], {"status": "inactive"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(bearer(self.n2, t["token"], "GET", "/access-tokens").status, 401)

    def test_deleted_access_token(self):
        t = self.new_access_token()
        self.assertEqual(self.alice.c.req("DELETE", "/access-tokens/" + t["id"]).status, 200)
        self.assertEqual(bearer(self.n2, t["token"], "GET", "/access-tokens").status, 401)

    def test_rotated_keys_tokens_made_on_either_node_read_on_the_other_at_once(self):
        old = {self.tokenize(n, b"old-" + n.dir[-4:].encode()): b"old-" + n.dir[-4:].encode()
               for n in (self.n1, self.n2)}
        # Each node caches the key versions for a few seconds. Node 1 idles long enough to
        # read them afresh after the rotation; node 2 keeps reading (its cache stays warm and
        # probably holds the old versions when node 1 writes under the new ones). Three rounds:
        # one is enough for a node 2 that does not re-read the versions on a miss to fail.
        for round_ in range(3):
            end = time.time() + 5.5
            while time.time() < end:
                self.assertEqual(self.detokenize(self.n2, next(iter(old))).status, 200)
                time.sleep(0.2)
            r = self.n1.admin("rotate-keys")
            self.assertEqual(r.returncode, 0, r.stderr)
            body = os.urandom(64)
            loc = self.tokenize(self.n1, body)
            g = self.detokenize(self.n2, loc)
            self.assertEqual((g.status, g.body), (200, body),
                             f"round {round_}: node 2 does not see node 1's token")
            body2 = os.urandom(64)
            loc2 = self.tokenize(self.n2, body2)
            g = self.detokenize(self.n1, loc2)
            self.assertEqual((g.status, g.body), (200, body2))
        for loc, body in old.items():
            for n in (self.n1, self.n2):
                g = self.detokenize(n, loc)
                self.assertEqual((g.status, g.body), (200, body))


class TokenFoundLateTest(unittest.TestCase):
    """Two daemons starting at once on one SoftHSM2 token directory: one once saw no initialised
    token. The daemon now keeps looking for its token for 5 s at start. (No PostgreSQL needed.)"""

    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.tokens = os.path.join(self.d.dir, "hsm", "tokens")
        self.aside = os.path.join(self.d.dir, "hsm", "aside")
        shutil.move(self.tokens, self.aside)
        os.mkdir(self.tokens)  # the token directory is there, the token is not (yet)

    def put_back(self):
        shutil.rmtree(self.tokens)
        shutil.move(self.aside, self.tokens)

    def test_a_token_that_appears_within_seconds_is_found(self):
        t = threading.Timer(1.5, self.put_back)
        t.start()
        try:
            self.d.start()
        finally:
            t.join()
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)
        self.assertIn("hsm_token_not_found_retrying", self.d.read_log())
        self.d.stop()

    def test_a_token_that_never_appears_still_stops_the_daemon_soon(self):
        t0 = time.time()
        code, log = self.d.run_to_exit(timeout=30)
        self.assertNotEqual(code, 0)
        self.assertIn("no PKCS#11 token", log)
        self.assertLess(time.time() - t0, 20)


if __name__ == "__main__":
    unittest.main()
