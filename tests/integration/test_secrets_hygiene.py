"""Issue 7 item 7: secrets hygiene of the running daemon.

Dumps the live daemon's memory with gcore after a full flow (registration, login, access code,
tokenize and detokenize over both transports) and looks for the test's secrets. Also checks that
core dumps are off (RLIMIT_CORE 0) and that the secure heap is locked and excluded from dumps.
Known residue, documented in docs/security-testing.md and not asserted here: token ids in
transient path/link strings, and occasionally one copy of a session id or of the raw TOTP seed in
freed heap memory.
"""

import glob
import os
import shutil
import subprocess
import time
import unittest

from harness import Daemon
from opentoken_client import Client, Signer


@unittest.skipUnless(shutil.which("gcore"), "gcore (gdb) is not installed")
class SecretsHygieneTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.d.start()

    def tearDown(self):
        self.d.stop()
        self.d.cleanup()

    def test_process_limits_and_secure_heap(self):
        pid = self.d.proc.pid
        with open(f"/proc/{pid}/limits") as f:
            core = [l for l in f if l.startswith("Max core file size")][0].split()
        self.assertEqual(core[4:6], ["0", "0"])
        # The OpenSSL secure heap: a 1 MiB mapping that is locked (lo) and not dumped (dd).
        with open(f"/proc/{pid}/smaps") as f:
            smaps = f.read()
        flags = [l for l in smaps.splitlines() if l.startswith("VmFlags:") and " dd" in l and " lo" in l]
        self.assertTrue(flags, "no locked, no-dump mapping found")

    def test_memory_dump_holds_no_payload_password_secret_seed_email_or_pin(self):
        spool = os.path.join(self.d.dir, "mail")
        c = Client(self.d, address="hygiene-address@example.com")
        c.full_registration(spool)
        self.assertEqual(c.login().status, 200)
        pair = c.req("POST", f"/account/{c.account_id}/accessCode", {}).json()
        marker = b"HYGIENE-PAYLOAD-MARKER-5500005555555559"
        big = b"BIG-HYGIENE-MARKER-" + os.urandom(60000).hex().encode()
        for transport, payload in (("unix", marker), ("tls", big)):
            s = Signer(self.d, pair["code"], pair["secret"], transport)
            r = s.request("POST", f"/account/{c.account_id}/token", payload)
            self.assertEqual(r.status, 201)
            self.assertEqual(s.request("GET", r.header("Location")).body, payload)
        time.sleep(0.3)
        core = os.path.join(self.d.dir, "core")
        r = subprocess.run(["gcore", "-o", core, str(self.d.proc.pid)], capture_output=True, timeout=120)
        files = glob.glob(core + "*")
        if not files:
            self.skipTest("gcore could not attach here: " + r.stderr.decode(errors="replace")[-200:])
        with open(files[0], "rb") as f:
            data = f.read()
        os.unlink(files[0])
        secrets = {
            "payload": marker,
            "large payload": big[:64],
            "access-code secret": pair["secret"].encode(),
            "password hash": c.pw_hash.encode(),
            "TOTP seed (hex)": c.seed.hex().encode(),
            "TOTP seed (base32)": c.reg_body["mfa"]["totp"]["keyBase32"].encode(),
            "e-mail address": b"hygiene-address@example.com",
            "HSM PIN": self.d.pin.encode(),
        }
        found = {name: data.count(v) for name, v in secrets.items() if v in data}
        self.assertEqual(found, {}, "secrets found in the memory dump")


if __name__ == "__main__":
    unittest.main()
