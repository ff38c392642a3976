"""opentoken-admin: verify, purge-expired, backup while serving, restore into an empty store."""

import json
import os
import shutil
import unittest

from harness import Daemon
from opentoken_client import Client, Signer


class AdminTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.d.start()
        self.c = Client(self.d, address="admin-test@example.com")
        self.c.full_registration(os.path.join(self.d.dir, "mail"))
        self.assertEqual(self.c.login().status, 200)
        pair = self.c.req("POST", f"/account/{self.c.account_id}/accessCode", {}).json()
        self.s = Signer(self.d, pair["code"], pair["secret"])
        r = self.s.request("POST", f"/account/{self.c.account_id}/token", b"backed up payload")
        self.assertEqual(r.status, 201)
        self.token = r.header("Location")

    def tearDown(self):
        self.d.cleanup()

    def test_verify_counts_and_unwraps_every_key(self):
        r = self.d.admin("verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("verify: ok", r.stdout)
        self.assertIn("table tokens: 1 records", r.stdout)
        self.assertRegex(r.stdout, r"data keys wrapped by otd-kek-v1: \d+")
        self.assertEqual(self.d.admin("purge-expired").returncode, 0)

    def test_backup_while_serving_then_restore_and_detokenize(self):
        backup = os.path.join(self.d.dir, "backup")
        r = self.d.admin("backup", backup)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(backup, "manifest.json")) as f:
            manifest = json.load(f)
        self.assertEqual(manifest["kek_version"], 1)
        self.assertEqual(manifest["records"]["tokens"], 1)
        self.assertEqual(len(manifest["sha256"]), 64)
        # A second backup into the same directory is refused.
        self.assertEqual(self.d.admin("backup", backup).returncode, 1)
        # The daemon kept serving; now lose the store and restore it.
        self.assertEqual(self.s.request("GET", self.token).status, 200)
        self.assertEqual(self.d.stop(), 0)
        data = os.path.join(self.d.dir, "data")
        self.assertEqual(self.d.admin("restore", backup).returncode, 1)  # target not empty
        shutil.rmtree(data)
        r = self.d.admin("restore", backup)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.d.admin("verify").returncode, 0)
        self.d.start()
        g = self.s.request("GET", self.token)
        self.assertEqual(g.status, 200)
        self.assertEqual(g.body, b"backed up payload")

    def test_restore_refuses_a_tampered_backup(self):
        backup = os.path.join(self.d.dir, "backup")
        self.assertEqual(self.d.admin("backup", backup).returncode, 0)
        with open(os.path.join(backup, "data.mdb"), "r+b") as f:
            f.seek(4096 + 100)
            b = f.read(1)
            f.seek(4096 + 100)
            f.write(bytes([b[0] ^ 0xFF]))
        self.d.stop()
        shutil.rmtree(os.path.join(self.d.dir, "data"))
        r = self.d.admin("restore", backup)
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not match its manifest", r.stderr)


if __name__ == "__main__":
    unittest.main()
