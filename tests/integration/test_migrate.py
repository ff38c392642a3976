"""Issue 16: `opentoken-admin migrate --to-config NEW.json` (daemon/migrate.h).

A vault filled through the real daemon on LMDB (accounts, access codes, private and public tokens,
access tokens) is migrated into a real PostgreSQL (pg_server.py), served from there (everything
detokenizes byte-exact, the account logs in, the access token works), migrated back into a fresh
LMDB and checked again. Refusals: a daemon serving the LMDB source, a non-empty target, a target
holding another vault.
"""

import json
import os
import time
import unittest

import pg_server
from harness import Daemon
from opentoken_client import Signer, find_link, logged_in_user

WHY_NOT = pg_server.unavailable()


@unittest.skipIf(WHY_NOT, WHY_NOT)
class MigrateTest(unittest.TestCase):
    def setUp(self):
        self.pg = pg_server.PgServer()
        self.pg.psql("CREATE DATABASE otd")
        self.d = Daemon()
        self.other = None

    def tearDown(self):
        try:
            if self.d.proc is not None and self.d.proc.poll() is None:
                self.d.stop()
            self.d.cleanup()
            if self.other is not None:
                self.other.cleanup()
        finally:
            self.pg.cleanup()

    def write(self, name, storage):
        c = self.d.config()
        c["storage"] = storage
        path = os.path.join(self.d.dir, name)
        with open(path, "w") as f:
            json.dump(c, f)
        return path

    def migrate(self, from_path, to_path, *extra):
        self.d.config_path = from_path
        return self.d.admin("migrate", "--to-config", to_path, *extra)

    def serve(self, config_path):
        self.d.config_path = config_path
        self.d.start()

    def login_again(self, c):
        # A TOTP step is accepted once per account: wait for a step the account has not used.
        step = int(time.time() // 30)
        while int(time.time() // 30) <= getattr(c, "last_step", step - 1):
            time.sleep(0.5)
        c.last_step = int(time.time() // 30)
        c.cookie = None
        r = c.login()
        self.assertEqual(r.status, 200, r.body)

    def check_vault(self, c, tokens, access_token):
        s = Signer(self.d, c.pair["code"], c.pair["secret"])
        for loc, body, public in tokens:
            r = (self.d.request("GET", loc) if public else s.request("GET", loc))
            self.assertEqual(r.status, 200, (loc, r.body))
            self.assertEqual(r.body, body)
            if not public:
                self.assertEqual(self.d.request("GET", loc).status, 401)
        r = self.d.request("GET", "/access-tokens",
                           headers={"Authorization": "Bearer " + access_token})
        self.assertEqual(r.status, 200, r.body)
        self.login_again(c)
        # The migrated vault takes writes too.
        r = s.request("POST", f"/account/{c.account_id}/token", b"after migration")
        self.assertEqual(r.status, 201, r.body)

    def test_lmdb_to_postgresql_and_back(self):
        d = self.d
        old = d.config_path
        d.start()
        c = logged_in_user(d, os.path.join(d.dir, "mail"), "migrate@example.com")
        c.last_step = int(time.time() // 30)
        pair = c.req("POST", f"/account/{c.account_id}/accessCode", {})
        self.assertEqual(pair.status, 201, pair.body)
        c.pair = pair.json()
        s = Signer(d, c.pair["code"], c.pair["secret"])
        tokens = []
        for i in range(40):
            public = i % 3 == 0
            body = os.urandom(1 + i * 37) if i % 2 else f"text {i}\n".encode()
            r = s.request("POST", f"/account/{c.account_id}/token?public={str(public).lower()}",
                          body, "application/octet-stream")
            self.assertEqual(r.status, 201, r.body)
            tokens.append((r.header("Location"), body, public))
        at = c.req("POST", "/access-tokens", {"name": "migrated", "scope": ["accessTokens.read"]})
        self.assertEqual(at.status, 201, at.body)
        access_token = at.json()["token"]

        pg_conf = self.write("pg.json", {
            "path": os.path.join(d.dir, "pgstate"), "backend": "postgresql",
            "postgresql": {"conninfo": self.pg.conninfo("otd"), "pool_size": 4}})
        # The daemon serves the LMDB source: refused (serve.lock), nothing copied.
        r = self.migrate(old, pg_conf)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("a daemon serves the store", r.stderr)
        self.assertEqual(d.stop(), 0)

        r = self.migrate(old, pg_conf)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("verify ok", r.stdout)
        self.assertIn("copy tokens: 0/", r.stderr)  # plain progress lines (no terminal)
        self.assertIn("(100%)", r.stderr)
        # Again into the now non-empty target: refused without --allow-non-empty.
        again = self.migrate(old, pg_conf)
        self.assertEqual(again.returncode, 1, again.stderr)
        self.assertIn("not empty", again.stderr)
        dump = self.pg.pg_dump("otd")
        for _, body, _ in tokens:
            if body.startswith(b"text"):
                self.assertNotIn(body, dump)

        self.serve(pg_conf)
        self.check_vault(c, tokens, access_token)
        self.assertEqual(d.stop(), 0)

        back = self.write("lmdb2.json", {"path": os.path.join(d.dir, "data2"), "map_size_mb": 64})
        r = self.migrate(pg_conf, back)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("verify ok", r.stdout)
        self.serve(back)
        self.check_vault(c, tokens, access_token)
        self.assertEqual(d.stop(), 0)

        # Another vault (its own token keys and store) as the target: refused, untouched.
        self.other = Daemon()
        foreign = self.write("foreign.json", {"path": os.path.join(self.other.dir, "data"),
                                              "map_size_mb": 64})
        r = self.migrate(back, foreign, "--allow-non-empty")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("another vault", r.stderr)


if __name__ == "__main__":
    unittest.main()
