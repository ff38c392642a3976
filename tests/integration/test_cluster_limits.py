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
import time
import unittest

import pg_server
from harness import Daemon
from opentoken_client import Client

WHY_NOT = pg_server.unavailable()
BAD_HASH = "YnJ1dGUgZm9yY2UgcGFzc3dvcmQgaGFzaA=="


def two_nodes(pg, db, accounts):
    """Two daemons on database `db` of `pg` with the same token and `accounts` limits, started."""
    pg.psql(f"CREATE DATABASE {db}")

    def config(d):
        return {"storage": {"path": os.path.join(d.dir, "data"), "backend": "postgresql",
                            "postgresql": {"conninfo": pg.conninfo(db), "pool_size": 4}},
                "accounts": accounts}

    a = Daemon(init_keys=False)
    a.extra_config = config(a)
    a.write_config()
    a.admin("init", check=True)
    # Node b: its own state dir, the same token (a copy of a's SoftHSM2 token directory: the
    # keys are the same objects) and the same database.
    b = Daemon(init_keys=False)
    tokens_b = os.path.join(b.dir, "hsm", "tokens")
    shutil.rmtree(tokens_b)
    shutil.copytree(os.path.join(a.dir, "hsm", "tokens"), tokens_b)
    shutil.copyfile(a.pin_file, b.pin_file)
    b.extra_config = config(b)
    b.write_config()
    a.start()
    b.start()
    return a, b


class TwoNodeCase(unittest.TestCase):
    """Stops the two nodes (cls.a, cls.b) and the PostgreSQL server (cls.pg) of a class."""

    @classmethod
    def tearDownClass(cls):
        try:
            codes = [cls.a.stop(), cls.b.stop()]
            cls.a.cleanup()
            cls.b.cleanup()
            assert codes == [0, 0], codes
        finally:
            cls.pg.cleanup()


@unittest.skipIf(WHY_NOT, WHY_NOT)
class ClusterLimitsTest(TwoNodeCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = pg_server.PgServer()
        cls.a, cls.b = two_nodes(cls.pg, "otd", {
            "login_free_failures": 3, "login_base_delay_seconds": 30,
            "login_peer_free_failures": 1000, "registrations_per_address": 2,
            "registrations_per_peer": 1000})


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


@unittest.skipIf(WHY_NOT, WHY_NOT)
class ClusterPendingRegistrationsTest(TwoNodeCase):
    """A peer's pending (unconfirmed) registrations are capped over both nodes, and a
    registration confirmed on the other node gives its place back. Before, each node counted its
    own, so a peer spreading registrations over N nodes held N times the cap."""

    @classmethod
    def setUpClass(cls):
        cls.pg = pg_server.PgServer()
        cls.a, cls.b = two_nodes(cls.pg, "otdpending", {
            "max_pending_registrations_per_peer": 2, "registrations_per_peer": 1000})


    def test_a_peers_pending_cap_holds_over_both_nodes(self):
        first = Client(self.a, address="pending-1@example.com")
        first.register()
        second = Client(self.b, address="pending-2@example.com")
        second.register()
        for node in (self.a, self.b):  # the cap (2) is reached over both nodes
            r = Client(node, address="pending-3@example.com").req(
                "POST", "/registration", {"email": "pending-3@example.com"})
            self.assertEqual(r.status, 429, r.body[:200])
            self.assertEqual(json.loads(r.body)["code"], "too-many-requests")
            wait = int(r.header("Retry-After"))
            self.assertGreater(wait, 60)  # until the pending ones expire, not a rate's backoff
        # The first (started on a) is secured and confirmed on b: its place is given back.
        first.d = self.b
        self.assertEqual(first.secure().status, 204)
        r, _ = first.confirm(os.path.join(self.b.dir, "mail"))
        self.assertEqual(r.status, 201, r.body[:200])
        deadline = time.time() + 10  # given back without waiting for the commit
        while True:
            r = Client(self.a, address="pending-4@example.com").req(
                "POST", "/registration", {"email": "pending-4@example.com"})
            if r.status != 429 or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 200, r.body[:200])
        r = Client(self.b, address="pending-5@example.com").req(
            "POST", "/registration", {"email": "pending-5@example.com"})
        self.assertEqual(r.status, 429, r.body[:200])


if __name__ == "__main__":
    unittest.main()
