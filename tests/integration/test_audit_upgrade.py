"""Audit line format 2 (issue 20) against a trail written by a daemon from before it.

Needs the binaries of a build from before format 2: OTD_OLD_BIN_DIR (e.g. a build of the commit
before the change); skipped without. The old daemon writes format-1 lines, the new one continues
the chain in format 2 after a restart, and the new audit-verify checks the whole trail; a format-2
line rewritten as a format-1 line (a downgrade) is refused."""

import hashlib
import json
import os
import unittest

import audit_lines
import harness
from harness import Daemon
from opentoken_client import Signer, logged_in_user

OLD = os.environ.get("OTD_OLD_BIN_DIR", "")


@unittest.skipIf(not OLD, "OTD_OLD_BIN_DIR (binaries from before audit format 2) is not set")
class AuditUpgradeTest(unittest.TestCase):
    def setUp(self):
        self.new_bin = harness.BIN
        self.d = Daemon()
        self.audit = os.path.join(self.d.dir, "data", "audit.log")
        self.spool = os.path.join(self.d.dir, "mail")

    def tearDown(self):
        harness.BIN = self.new_bin
        self.d.cleanup()

    def traffic(self, signer, account_id):
        r = signer.request("POST", f"/account/{account_id}/token", b"upgrade")
        self.assertEqual(r.status, 201)
        self.assertEqual(signer.request("GET", r.header("Location")).status, 200)

    def test_a_format_1_trail_continues_in_format_2_and_verifies(self):
        harness.BIN = OLD
        self.d.start()
        user = logged_in_user(self.d, self.spool, "upgrade@example.com")
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
        signer = Signer(self.d, pair["code"], pair["secret"])
        self.traffic(signer, user.account_id)
        self.assertEqual(self.d.stop(), 0)
        with open(self.audit) as f:
            v1 = f.readlines()
        self.assertTrue(all(line.startswith('{"seq":') for line in v1), v1[0])

        harness.BIN = self.new_bin
        self.d.start()
        self.traffic(signer, user.account_id)
        self.assertEqual(self.d.stop(), 0)
        with open(self.audit) as f:
            lines = f.readlines()
        self.assertEqual(lines[:len(v1)], v1)  # format-1 lines are kept as they are
        first_v2 = json.loads(lines[len(v1)])
        self.assertEqual(first_v2["v"], 2)
        self.assertEqual(first_v2["p"], json.loads(v1[-1])["mac"])  # chained to the last MAC
        self.assertTrue(all(line.startswith('{"s":') for line in lines[len(v1):]))
        v = self.d.admin("audit-verify")
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertIn(f"ok, {len(lines)} entries", v.stdout)
        # The same account hash on both sides of the switch (audit-show prints hex).
        entries = audit_lines.read(self.audit)
        det = [e for e in entries if e["event"] == "detokenize"]
        self.assertEqual(len({e["account"] for e in det}), 1, det)
        self.assertEqual(len({e["object"] for e in det}), 2, det)
        print(f"format 1: {sum(map(len, v1)) / len(v1):.0f} B per line, format 2: "
              f"{sum(map(len, lines[len(v1):])) / (len(lines) - len(v1)):.0f} B per line")

        # Negative control: the last format-2 line rewritten as a format-1 line with a valid
        # SHA-256 link (the writer's own format before the switch): refused.
        last = audit_lines.expand(lines[-1])
        body = json.dumps({"seq": last["seq"], "time": last["time"], "event": last["event"],
                           "outcome": last["outcome"], "prev": "0" * 64},
                          separators=(",", ":"))[:-1]
        forged = body + ',"sha":"' + hashlib.sha256(body.encode()).hexdigest() + '"}\n'
        with open(self.audit, "w") as f:
            f.writelines(lines[:-1] + [forged])
        v = self.d.admin("audit-verify")
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn("format-1 line after format-2", v.stdout)


if __name__ == "__main__":
    unittest.main()
