"""Issue 16: two daemons on one PostgreSQL database share the rate limits.

Before, each daemon counted login failures and registration steps in its own memory, so an
attacker who spread tries over N nodes got N times the allowance. Now (service/shared_limits.h)
the counts also live in the shared database (keyed by keyed hashes made in the shared token):
login failures spread over both nodes hit the delay as on one node, registration steps spread
over both hit 429 with Retry-After as on one node, and the limits table holds no address, peer or
account id in clear.
"""

import json
import os
import shutil
import unittest

import pg_server
from harness import Daemon
from opentoken_client import Client

WHY_NOT = pg_server.unavailable()
BAD_HASH = "YnJ1dGUgZm9yY2UgcGFzc3dvcmQgaGFzaA=="


@unittest.skipIf(WHY_NOT, WHY_NOT)
class ClusterLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = pg_server.PgServer()
        cls.pg.psql("CREATE DATABASE otd")
        accounts = {"login_free_failures": 3, "login_base_delay_seconds": 30,
                    "login_peer_free_failures": 1000, "registrations_per_address": 2,
                    "registrations_per_peer": 1000}

        def config(d):
            return {"storage": {"path": os.path.join(d.dir, "data"), "backend": "postgresql",
                                "postgresql": {"conninfo": cls.pg.conninfo("otd"),
                                               "pool_size": 4}},
                    "accounts": accounts}

        cls.a = Daemon(init_keys=False)
        cls.a.extra_config = config(cls.a)
        cls.a.write_config()
        cls.a.admin("init", check=True)
        # Node b: its own state dir, the same token (a copy of a's SoftHSM2 token directory: the
        # keys are the same objects) and the same database.
        cls.b = Daemon(init_keys=False)
        tokens_b = os.path.join(cls.b.dir, "hsm", "tokens")
        shutil.rmtree(tokens_b)
        shutil.copytree(os.path.join(cls.a.dir, "hsm", "tokens"), tokens_b)
        shutil.copyfile(cls.a.pin_file, cls.b.pin_file)
        cls.b.extra_config = config(cls.b)
        cls.b.write_config()
        cls.a.start()
        cls.b.start()

    @classmethod
    def tearDownClass(cls):
        try:
            codes = [cls.a.stop(), cls.b.stop()]
            cls.a.cleanup()
            cls.b.cleanup()
            assert codes == [0, 0], codes
        finally:
            cls.pg.cleanup()

    def test_login_failures_spread_over_two_nodes_hit_the_delay(self):
        c = Client(self.a, address="cluster-brute@example.com")
        c.full_registration(os.path.join(self.a.dir, "mail"))
        statuses = []
        for i in range(3):  # the allowance, spread: a, b, a
            c.d = self.a if i % 2 == 0 else self.b
            statuses.append(c.login(pw_hash=BAD_HASH).status)
        self.assertEqual(statuses, [401, 401, 401])
        c.d = self.b
        self.assertEqual(c.login(pw_hash=BAD_HASH).status, 401)  # the 4th starts the delay
        for node in (self.a, self.b):
            c.d = node
            r = c.req("POST", c.login_href, {"challengeHash": "0" * 128,
                                             "mfa": {"totp": "000000"}})
            self.assertEqual(r.status, 429, r.body[:200])
            wait = int(r.header("Retry-After"))
            self.assertGreaterEqual(wait, 28)
            self.assertLessEqual(wait, 30)
            self.assertEqual(c.login().status, 429)  # even the right password, on either node

    def test_registration_steps_spread_over_two_nodes_hit_429(self):
        address = "cluster-bomb@example.com"
        for node in (self.a, self.b):  # the allowance (2), one step on each node
            r = Client(node, address=address).req("POST", "/registration", {"email": address})
            self.assertEqual(r.status, 200, r.body[:200])
        for node in (self.a, self.b):
            r = Client(node, address=address).req("POST", "/registration", {"email": address})
            self.assertEqual(r.status, 429, r.body[:200])
            self.assertEqual(json.loads(r.body)["code"], "too-many-requests")
            wait = int(r.header("Retry-After"))
            self.assertGreaterEqual(wait, 1)
            self.assertLessEqual(wait, 60)

    def test_the_limits_table_holds_no_identifier_in_clear(self):
        c = Client(self.b, address="cluster-clear@example.com")
        c.req("POST", "/registration", {"email": c.address})
        dump = self.pg.pg_dump("otd")
        self.assertNotIn(b"cluster-clear", dump)
        self.assertNotIn(b"registration-address", dump)
        rows = self.pg.psql("SELECT count(*) FROM otd_records WHERE tbl = 'limits'", db="otd")
        self.assertGreater(int(rows), 0)


if __name__ == "__main__":
    unittest.main()
