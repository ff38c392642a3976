"""Audit trail segments (issue 18 part 2): with audit.directory the trail is written as segments
that rotate at a size; each segment's first line is a header chaining to the previous segment;
`opentoken-admin audit-verify` checks the directory and names a missing or truncated segment;
`audit-prune` removes old segments behind a MAC'd checkpoint so the rest still verifies, while a
segment removed without one is reported (negative control)."""

import glob
import json
import os
import re
import shutil
import signal
import time
import unittest

import audit_lines
from harness import Daemon
from opentoken_client import Signer, logged_in_user

NAME = re.compile(r"^audit-(\d{6})-(\d{8}T\d{4}Z)\.log$")


class AuditSegmentsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = None
        self.d = Daemon(extra_config={})
        self.segdir = os.path.join(self.d.dir, "auditlog")
        self.d.extra_config = {"audit": {"directory": self.segdir, "segment_max_bytes": 4096}}
        self.d.write_config()
        self.d.start()
        self.spool = os.path.join(self.d.dir, "mail")

    def tearDown(self):
        self.d.cleanup()

    def segments(self):
        return sorted(f for f in os.listdir(self.segdir) if NAME.match(f))

    def lines(self, name):
        return audit_lines.read(os.path.join(self.segdir, name))

    def fill(self, requests=80):  # ~180 B per line (issue 20): enough for 5 segments of 4 KiB
        user = logged_in_user(self.d, self.spool, "segments@example.com")
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
        signer = Signer(self.d, pair["code"], pair["secret"])
        for _ in range(requests):
            r = signer.request("POST", f"/account/{user.account_id}/token", b"payload")
            self.assertEqual(r.status, 201)
            self.assertEqual(signer.request("GET", r.header("Location")).status, 200)
        return user, signer

    def verify(self):
        return self.d.admin("audit-verify")

    def test_segments_rotate_chain_and_verify(self):
        user, signer = self.fill()
        segs = self.segments()
        self.assertGreaterEqual(len(segs), 4, segs)
        self.assertEqual([int(NAME.match(s).group(1)) for s in segs], list(range(1, len(segs) + 1)))
        self.assertFalse(os.path.exists(os.path.join(self.d.dir, "data", "audit.log")))
        for f in segs:
            self.assertEqual(os.stat(os.path.join(self.segdir, f)).st_mode & 0o777, 0o600)
        prev_last = None
        for i, f in enumerate(segs):
            lines = self.lines(f)
            head = lines[0]
            self.assertEqual(head["event"], "audit_segment")
            self.assertIn(f"segment={i + 1}", head["detail"])
            if i > 0:
                self.assertIn(f"prev={segs[i - 1]} prev_last_seq={prev_last['seq']}", head["detail"])
                self.assertEqual(head["prev"], prev_last["mac"])  # chained to its last MAC
                self.assertEqual(head["seq"], prev_last["seq"] + 1)
            # A segment is closed once full: all but the live one hold at least 4096 bytes.
            if i + 1 < len(segs):
                self.assertGreaterEqual(os.path.getsize(os.path.join(self.segdir, f)), 4096)
            prev_last = lines[-1]
            self.assertIn("mac", prev_last)  # a segment ends with a MAC'd line
        v = self.verify()
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertIn("ok", v.stdout)

        # SIGHUP starts a new segment; the chain goes on in it.
        before = self.segments()
        self.d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and len(self.segments()) == len(before):
            time.sleep(0.05)
        self.assertEqual(len(self.segments()), len(before) + 1)
        events = [e["event"] for e in self.lines(self.segments()[-1])]
        self.assertEqual(events[:2], ["audit_segment", "audit_log_reopened"])
        self.assertEqual(signer.request("POST", f"/account/{user.account_id}/token", b"p").status,
                         201)

        # A restart continues the last segment (no new one while it is not full).
        self.assertEqual(self.d.stop(), 0)
        live = self.segments()[-1]
        size = os.path.getsize(os.path.join(self.segdir, live))
        self.d.start()
        self.assertEqual(signer.request("POST", f"/account/{user.account_id}/token", b"q").status,
                         201)
        self.assertEqual(self.d.stop(), 0)
        self.assertEqual(self.segments()[-1], live)
        self.assertGreater(os.path.getsize(os.path.join(self.segdir, live)), size)
        self.assertIn("daemon_started", [e["event"] for e in self.lines(live)])
        v = self.verify()
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_missing_truncated_and_pruned_segments(self):
        self.fill()
        self.assertEqual(self.d.stop(), 0)
        segs = self.segments()
        self.assertGreaterEqual(len(segs), 5, segs)
        self.assertEqual(self.verify().returncode, 0)
        backup = os.path.join(self.d.dir, "backup")
        shutil.copytree(self.segdir, backup)

        # Negative control: a segment removed from the middle is named.
        os.unlink(os.path.join(self.segdir, segs[2]))
        v = self.verify()
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn("segment 000003 (between " + segs[1] + " and " + segs[3] + ") is missing",
                      v.stdout)
        shutil.copy(os.path.join(backup, segs[2]), self.segdir)
        self.assertEqual(self.verify().returncode, 0)

        # The first segments removed without a checkpoint: reported too.
        for f in segs[:2]:
            os.unlink(os.path.join(self.segdir, f))
        v = self.verify()
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn("segments 000001..000002 before " + segs[2] + " are missing", v.stdout)
        for f in segs[:2]:
            shutil.copy(os.path.join(backup, f), self.segdir)

        # A middle segment cut at a line boundary: named by the next segment's header.
        middle = os.path.join(self.segdir, segs[1])
        with open(middle) as f:
            kept = f.readlines()
        with open(middle, "w") as f:
            f.writelines(kept[:-1])
        v = self.verify()
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn("segment " + segs[1] + " is truncated", v.stdout)
        shutil.copy(os.path.join(backup, segs[1]), self.segdir)

        # The last segment cut mid-line: named.
        last = os.path.join(self.segdir, segs[-1])
        with open(last, "r+b") as f:
            f.truncate(os.path.getsize(last) - 10)
        v = self.verify()
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn(segs[-1], v.stdout)
        self.assertIn("torn last line", v.stdout)
        shutil.copy(os.path.join(backup, segs[-1]), self.segdir)
        self.assertEqual(self.verify().returncode, 0)

        # A compressed old segment is named (gunzip first).
        os.system(f"gzip -k {os.path.join(self.segdir, segs[0])} && rm {os.path.join(self.segdir, segs[0])}")
        v = self.verify()
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn(segs[0] + ".gz is compressed", v.stdout)
        os.system(f"gunzip {os.path.join(self.segdir, segs[0])}.gz")
        self.assertEqual(self.verify().returncode, 0)

        # Prune: a checkpoint, the old segments moved away; the rest verifies.
        shipped = os.path.join(self.d.dir, "shipped")
        os.mkdir(shipped)
        p = self.d.admin("audit-prune", "--before", segs[3], "--move-to", shipped)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(sorted(os.listdir(shipped)), segs[:3])
        self.assertEqual(self.segments(), segs[3:])
        self.assertTrue(os.path.exists(os.path.join(self.segdir, "audit-checkpoint.json")))
        v = self.verify()
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

        # After the prune, a middle segment removed is still reported (negative control).
        os.unlink(os.path.join(self.segdir, segs[4]))
        v = self.verify()
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn("segment 000005", v.stdout)
        shutil.copy(os.path.join(backup, segs[4]), self.segdir)
        self.assertEqual(self.verify().returncode, 0)

        # A forged checkpoint (history said to start later, hiding a removed segment) is refused.
        cp = os.path.join(self.segdir, "audit-checkpoint.json")
        with open(cp) as f:
            text = f.read()
        os.unlink(os.path.join(self.segdir, segs[3]))
        with open(cp, "w") as f:
            f.write(text.replace('"segment":4', '"segment":5').replace(segs[3], segs[4]))
        v = self.verify()
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn("checkpoint", v.stdout)
        self.assertIn("does not verify", v.stdout)

        # The daemon starts again on the pruned directory and continues the chain.
        shutil.copy(os.path.join(backup, segs[3]), self.segdir)
        with open(cp, "w") as f:
            f.write(text)
        self.d.start()
        self.assertEqual(self.d.stop(), 0)
        v = self.verify()
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)


    def test_an_existing_single_file_keeps_verifying_and_syslog_copy_is_harmless(self):
        # Before: the default single file (no audit.directory).
        self.assertEqual(self.d.stop(), 0)
        shutil.rmtree(self.segdir)
        self.d.extra_config = {"audit": {"syslog": True}}
        self.d.write_config()
        self.d.start()
        self.fill(requests=3)
        self.assertEqual(self.d.stop(), 0)
        legacy = os.path.join(self.d.dir, "data", "audit.log")
        self.assertTrue(os.path.exists(legacy))
        self.assertFalse(os.path.exists(self.segdir))
        v = self.verify()
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        # Switched to segments: a new chain in the directory; the old file still verifies alone.
        self.d.extra_config = {"audit": {"directory": self.segdir, "syslog": True}}
        self.d.write_config()
        self.d.start()
        self.assertEqual(self.d.stop(), 0)
        self.assertEqual(len(self.segments()), 1)
        self.assertEqual(self.verify().returncode, 0)
        v = self.d.admin("audit-verify", legacy)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)


if __name__ == "__main__":
    unittest.main()
