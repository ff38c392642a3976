"""Audit trail (issue 8): every security event is a chained, MAC'd JSON line with hashed ids only;
`opentoken-admin audit-verify` detects a deleted or edited line; detokenize fails closed when
its audit entry cannot be written."""

import json
import os
import shutil
import threading
import time
import unittest

import audit_lines
from harness import Daemon
from opentoken_client import Signer, logged_in_user, totp


class AuditTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.d.start()
        self.audit = os.path.join(self.d.dir, "data", "audit.log")
        self.spool = os.path.join(self.d.dir, "mail")

    def tearDown(self):
        self.d.cleanup()

    def entries(self):
        return audit_lines.read(self.audit)

    def wait_for(self, event, outcome=None, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.entries():
                if e["event"] == event and (outcome is None or e["outcome"] == outcome):
                    return e
            time.sleep(0.1)
        self.fail(f"no audit entry {event}/{outcome}: {[e['event'] for e in self.entries()]}")

    def test_events_are_recorded_chained_and_without_clear_identifiers(self):
        user = logged_in_user(self.d, self.spool, "audited@example.com")
        # A failed login (wrong TOTP) is an event too.
        bad = user.req("POST", user.login_href, {"challengeHash": "00" * 64,
                                                 "mfa": {"totp": "000000"}})
        self.assertEqual(bad.status, 401)
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
        signer = Signer(self.d, pair["code"], pair["secret"])
        r = signer.request("POST", f"/account/{user.account_id}/token", b"audited payload")
        self.assertEqual(r.status, 201)
        token = r.header("Location")
        token_id = token.rsplit("/", 1)[1]
        self.assertEqual(signer.request("GET", token).status, 200)
        self.assertEqual(signer.request("DELETE", token).status, 204)
        self.assertEqual(signer.request("GET", token).status, 404)
        self.assertEqual(user.req("DELETE", f"/account/{user.account_id}/accessCode/{pair['code']}").status, 204)

        self.wait_for("access_code_revoked")
        events = [(e["event"], e["outcome"]) for e in self.entries()]
        for want in [("daemon_started", "ok"), ("registration_started", "ok"),
                     ("registration_secured", "ok"), ("registration_confirmed", "ok"),
                     ("login", "ok"), ("login", "denied"), ("access_code_created", "ok"),
                     ("tokenize", "ok"), ("detokenize", "ok"), ("token_deleted", "ok"),
                     ("detokenize", "not_found"), ("access_code_revoked", "ok")]:
            self.assertIn(want, events)
        entries = self.entries()
        self.assertEqual([e["seq"] for e in entries], list(range(1, len(entries) + 1)))
        # The detokenize and the tokenize of the same token name the same hashed object.
        tok = [e for e in entries if e["event"] == "tokenize"][0]
        det = [e for e in entries if e["event"] == "detokenize" and e["outcome"] == "ok"][0]
        self.assertEqual(tok["object"], det["object"])
        self.assertEqual(tok["account"], det["account"])
        self.assertEqual(len(det["object"]), 32)  # 128 bits (base64url in the file, hex here)
        # Format 2 (issue 20): the detokenize line is at most 200 bytes, MAC'd or not.
        with open(self.audit) as f:
            raw = [line for line in f if '"e":"detokenize","o":"ok"' in line]
        self.assertTrue(raw)
        self.assertLessEqual(max(len(line.encode()) for line in raw), 200, raw)
        # audit-show prints the trail with full names, one JSON object per line.
        shown = self.d.admin("audit-show")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertEqual([json.loads(line) for line in shown.stdout.splitlines()][:len(entries)],
                         [dict(e, format=2) for e in entries])
        # No clear identifier, secret or address anywhere in the file.
        with open(self.audit) as f:
            text = f.read()
        for clear in (user.account_id, token_id, pair["code"], pair["secret"], "audited@example.com",
                      user.cookie, "audited payload"):
            self.assertNotIn(clear, text)
        self.assertEqual(os.stat(self.audit).st_mode & 0o777, 0o600)

        v = self.d.admin("audit-verify")
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertIn(f"ok, {len(entries)} entries", v.stdout)

    def test_concurrent_requests_share_batch_macs_and_verify(self):
        # Under load the writer MACs each group-commit batch once; the lines before a batch's
        # last carry a SHA-256 link. The real daemon's file must show such batches and verify.
        user = logged_in_user(self.d, self.spool, "batches@example.com")
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
        statuses = []

        def client():
            signer = Signer(self.d, pair["code"], pair["secret"])
            for _ in range(40):
                statuses.append(signer.request("POST", f"/account/{user.account_id}/token", b"b").status)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(statuses, [201] * 320)
        self.assertEqual(self.d.stop(), 0)
        with open(self.audit) as f:
            lines = f.read().splitlines()
        mac = sum(1 for line in lines if audit_lines.is_mac(line))
        self.assertGreater(len(lines) - mac, 0, "no multi-line batch under 8 concurrent clients")
        self.assertTrue(audit_lines.is_mac(lines[-1]))
        # Only a batch's last line carries a link: under load most lines carry none.
        print(f"audit: {sum(len(line) + 1 for line in lines) / len(lines):.0f} B per line, "
              f"{len(lines)} lines, {mac} MAC'd")
        v = self.d.admin("audit-verify")
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_a_deleted_or_edited_line_is_detected(self):
        user = logged_in_user(self.d, self.spool, "tamper@example.com")
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
        signer = Signer(self.d, pair["code"], pair["secret"])
        for i in range(3):
            self.assertEqual(signer.request("POST", f"/account/{user.account_id}/token", b"x").status, 201)
        self.assertEqual(self.d.stop(), 0)
        self.assertEqual(self.d.admin("audit-verify").returncode, 0)
        original = os.path.join(self.d.dir, "audit.orig")
        shutil.copy(self.audit, original)
        with open(original) as f:
            lines = f.readlines()
        self.assertGreater(len(lines), 6)

        with open(self.audit, "w") as f:
            f.writelines(lines[:4] + lines[5:])  # line 5 removed
        r = self.d.admin("audit-verify")
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 5:", r.stdout)

        edited = list(lines)
        edited[2] = edited[2].replace('"o":"ok"', '"o":"denied"')
        self.assertNotEqual(edited[2], lines[2])
        with open(self.audit, "w") as f:
            f.writelines(edited)
        r = self.d.admin("audit-verify")
        self.assertEqual(r.returncode, 1)
        # The first line of the batch whose MAC covers line 3 (line 3 itself when it is alone).
        bad = int(r.stdout.split(" line ", 1)[1].split(":", 1)[0])
        self.assertIn(bad, (1, 2, 3), r.stdout)
        self.assertIn("edited", r.stdout)

        shutil.copy(original, self.audit)
        self.assertEqual(self.d.admin("audit-verify").returncode, 0)
        # The daemon continues the chain after a restart.
        self.d.start()
        self.assertEqual(signer.request("POST", f"/account/{user.account_id}/token", b"y").status, 201)
        self.wait_for("daemon_started")
        self.d.stop()
        self.assertEqual(self.d.admin("audit-verify").returncode, 0)

    def test_key_rotation_is_audited(self):
        user = logged_in_user(self.d, self.spool, "rotate@example.com")
        self.assertEqual(self.d.admin("rotate-keys").returncode, 0)
        time.sleep(5.5)  # the daemon re-reads the versions every 5 s
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {})
        self.assertEqual(pair.status, 201)
        e = self.wait_for("key_rotation")
        self.assertEqual(e["detail"], "kek=2 index=2")

    def test_detokenize_fails_closed_when_the_audit_log_cannot_be_written(self):
        user = logged_in_user(self.d, self.spool, "closed@example.com")
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
        signer = Signer(self.d, pair["code"], pair["secret"])
        r = signer.request("POST", f"/account/{user.account_id}/token", b"must not leak")
        self.assertEqual(r.status, 201)
        token = r.header("Location")
        self.assertEqual(self.d.stop(), 0)
        # A real device that fails every write with ENOSPC.
        os.replace(self.audit, self.audit + ".saved")
        os.symlink("/dev/full", self.audit)
        self.d.start()
        g = signer.request("GET", token)
        self.assertEqual(g.status, 503)
        self.assertNotIn(b"must not leak", g.body)
        self.assertEqual(g.header("Content-Type"), "application/vnd.error+json")
        self.assertIn("audit_log_write_failed", self.d.read_log())
        self.assertNotIn("must not leak", self.d.read_log())
        # Once the audit log is writable again (restart), the token reads.
        self.d.stop()
        os.unlink(self.audit)
        os.replace(self.audit + ".saved", self.audit)
        self.d.start()
        g = signer.request("GET", token)
        self.assertEqual(g.status, 200)
        self.assertEqual(g.body, b"must not leak")


if __name__ == "__main__":
    unittest.main()
