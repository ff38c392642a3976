"""Operator hazards (issue 14, item 8), against the real daemon and admin tool:

* SIGHUP reloads instead of killing the daemon: the audit trail is reopened after a rotation (the
  chain continues in the new file and both verify as one), the TLS pair is reloaded for new
  connections (open ones keep theirs), and a broken pair is refused while serving goes on;
* two tokens with the same label are refused (exit 69 naming their slots and serials);
  hsm.token_serial selects one;
* a store is bound to the token keys it was made with: `init` on an empty store (a storage.path
  typo) refuses while the token holds a vault's keys unless --new-store, and a store of another
  token stops the daemon and `init` (exit 69, naming both).

scripts/serve restarts: test_serve_restarts.py."""

import glob
import os
import signal
import socket
import ssl
import subprocess
import time
import unittest

from harness import LABEL, MODULE, Daemon
from opentoken_client import Signer, logged_in_user


def token_serials(d, label=LABEL):
    """Serial numbers of the initialised tokens labelled `label` in d's token directory, read
    with softhsm2-util (not with the code under test)."""
    out = subprocess.run(["softhsm2-util", "--show-slots"], env=d.env(), capture_output=True,
                         text=True, check=True).stdout
    serials, serial = [], None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Serial number:"):
            serial = line.split(":", 1)[1].strip()
        elif line.startswith("Label:"):
            if line.split(":", 1)[1].strip() == label and serial:
                serials.append(serial)
            serial = None
    return serials


def token_objects(d):
    """Object files of every token in d's token directory (keys are files in SoftHSM2)."""
    return sorted(p for p in glob.glob(os.path.join(d.dir, "hsm", "tokens", "*", "*.object"))
                  if not p.endswith("token.object"))


def peer_der(port):
    """The DER certificate the TLS listener shows a new connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def new_pair(directory, name):
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class SighupTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.d.start()
        self.pid = self.d.proc.pid
        self.audit = os.path.join(self.d.dir, "data", "audit.log")

    def tearDown(self):
        self.d.cleanup()

    def log_since_start(self):
        return self.d.read_log()[self.d.log_offset:]

    def hup_and_wait(self, times):
        """Sends SIGHUP and waits for the daemon's `times`-th reloaded line; it must survive."""
        self.d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.d.proc.poll() is not None:
                self.fail(f"SIGHUP ended the daemon (exit {self.d.proc.returncode}): "
                          + self.log_since_start()[-2000:])
            if self.log_since_start().count('"event":"reloaded"') >= times:
                break
            time.sleep(0.05)
        else:
            self.fail("no reloaded line after SIGHUP: " + self.log_since_start()[-2000:])
        self.assertIsNone(self.d.proc.poll())
        self.assertEqual(self.d.proc.pid, self.pid)
        return [line for line in self.log_since_start().splitlines() if '"reloaded"' in line][-1]

    def test_sighup_reopens_a_rotated_audit_log_and_the_chain_verifies_across_both_files(self):
        user = logged_in_user(self.d, os.path.join(self.d.dir, "mail"), "rotate@example.com")
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
        signer = Signer(self.d, pair["code"], pair["secret"])
        before = signer.request("POST", f"/account/{user.account_id}/token", b"before rotation")
        self.assertEqual(before.status, 201)
        # Detokenize answers only once its audit line is durable.
        self.assertEqual(signer.request("GET", before.header("Location")).status, 200)

        rotated = self.audit + ".1"
        os.rename(self.audit, rotated)  # logrotate's `create` mode
        line = self.hup_and_wait(1)
        self.assertIn('"audit":"reopened"', line)

        after = signer.request("POST", f"/account/{user.account_id}/token", b"after rotation")
        self.assertEqual(after.status, 201)
        self.assertEqual(signer.request("GET", after.header("Location")).status, 200)
        self.assertEqual(signer.request("GET", before.header("Location")).body, b"before rotation")
        self.assertTrue(os.path.exists(self.audit), "no new audit.log after SIGHUP")
        self.assertEqual(os.stat(self.audit).st_mode & 0o777, 0o600)
        self.assertEqual(self.d.stop(), 0)
        with open(self.audit) as f:
            new = f.read()
        self.assertIn('"e":"audit_log_reopened"', new)
        self.assertIn('"e":"detokenize"', new)

        v = self.d.admin("audit-verify", rotated, self.audit)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertIn("in 2 files (seq 1..", v.stdout)
        # The new file alone starts mid-chain: said so, and checkable with --partial.
        alone = self.d.admin("audit-verify")
        self.assertEqual(alone.returncode, 1, alone.stdout + alone.stderr)
        self.assertIn("it continues an earlier (rotated) file", alone.stdout)
        self.assertEqual(self.d.admin("audit-verify", "--partial").returncode, 0)
        # In the wrong order the boundary does not chain.
        wrong_order = self.d.admin("audit-verify", "--partial", self.audit, rotated)
        self.assertEqual(wrong_order.returncode, 1)

    def test_sighup_reloads_the_tls_pair_for_new_connections_and_keeps_a_broken_one_out(self):
        first = peer_der(self.d.port)
        self.assertEqual(first, pem_der(self.d.cert))
        keep = self.d.tls_conn()  # a keep-alive connection opened before the reload
        keep.request("GET", "/healthCheck", headers={"Host": f"127.0.0.1:{self.d.port}"})
        r = keep.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        sock_before = keep.sock

        cert, key = new_pair(self.d.dir, "second")
        os.replace(key, self.d.key)
        os.replace(cert, self.d.cert)
        line = self.hup_and_wait(1)
        self.assertIn('"tls":"reloaded"', line)
        second = peer_der(self.d.port)
        self.assertEqual(second, pem_der(self.d.cert))
        self.assertNotEqual(second, first)
        # The old connection still works, on the same socket.
        keep.request("GET", "/healthCheck", headers={"Host": f"127.0.0.1:{self.d.port}"})
        r = keep.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertIs(keep.sock, sock_before)
        keep.close()

        # A broken certificate: refused, the daemon keeps serving with the second pair.
        with open(self.d.cert) as f:
            good_cert = f.read()
        with open(self.d.cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        line = self.hup_and_wait(2)
        self.assertIn('"tls":"failed"', line)
        self.assertIn('"event":"tls_reload_failed"', self.log_since_start())
        self.assertIn("listen.tls.certificate", self.log_since_start())
        self.assertEqual(peer_der(self.d.port), second)
        # A certificate whose key is another one: refused too.
        other_cert, _ = new_pair(self.d.dir, "third")
        os.replace(other_cert, self.d.cert)
        line = self.hup_and_wait(3)
        self.assertIn('"tls":"failed"', line)
        self.assertIn("does not match the certificate", self.log_since_start())
        self.assertEqual(peer_der(self.d.port), second)
        with open(self.d.cert, "w") as f:
            f.write(good_cert)
        self.assertEqual(self.d.request("GET", "/healthCheck", transport="tls",
                                        headers={"Host": f"127.0.0.1:{self.d.port}"}).status, 200)
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)
        self.assertEqual(self.d.stop(), 0)


class DuplicateTokenLabelTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()  # token 1, keys made by init
        self.first = token_serials(self.d)
        self.assertEqual(len(self.first), 1)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", LABEL,
                        "--so-pin", "12345678", "--pin", self.d.pin],
                       env=self.d.env(), check=True, stdout=subprocess.DEVNULL)
        self.serials = token_serials(self.d)
        self.assertEqual(len(self.serials), 2)
        self.second = [s for s in self.serials if s != self.first[0]][0]

    def tearDown(self):
        self.d.cleanup()

    def with_serial(self, serial):
        c = self.d.config()
        c["hsm"]["token_serial"] = serial
        self.d.write_config(c)

    def test_an_ambiguous_label_is_refused_by_the_daemon_and_the_admin_tool(self):
        code, log = self.d.run_to_exit(timeout=20)
        self.assertEqual(code, 69, log[-2000:])
        for serial in self.serials:
            self.assertIn(serial, log)
        self.assertIn("2 PKCS#11 tokens labelled 'otd-it'", log)
        self.assertIn("slot ", log)
        self.assertIn("hsm.token_serial", log)
        objects = token_objects(self.d)
        for command in ("init", "inspect", "rotate-keys"):
            r = self.d.admin(command)
            self.assertEqual(r.returncode, 69, command + ": " + r.stdout + r.stderr)
            for serial in self.serials:
                self.assertIn(serial, r.stderr)
        self.assertEqual(token_objects(self.d), objects, "an admin command created keys")

    def test_hsm_token_serial_selects_the_token_and_the_other_one_is_refused_for_this_store(self):
        self.with_serial(self.first[0])
        self.d.start()
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)
        self.assertIn(f'"serial":"{self.first[0]}"', self.d.read_log())
        user = logged_in_user(self.d, os.path.join(self.d.dir, "mail"), "serial@example.com")
        pair = user.req("POST", f"/account/{user.account_id}/accessCode", {}).json()
        signer = Signer(self.d, pair["code"], pair["secret"])
        r = signer.request("POST", f"/account/{user.account_id}/token", b"in the right token")
        self.assertEqual(r.status, 201)
        token = r.header("Location")
        self.assertEqual(self.d.stop(), 0)

        # The other token (no keys) is not the store's: the daemon stops naming both, and init
        # creates nothing in it (the old init made fresh keys there: every request 401 after).
        self.with_serial(self.second)
        objects = token_objects(self.d)
        code, log = self.d.run_to_exit(timeout=20)
        self.assertEqual(code, 69, log[-2000:])
        self.assertIn(os.path.join(self.d.dir, "data"), log)
        self.assertIn(self.first[0], log)   # the token the store records
        self.assertIn(self.second, log)     # the token in use
        r = self.d.admin("init")
        self.assertEqual(r.returncode, 69, r.stdout + r.stderr)
        self.assertIn(self.second, r.stderr)
        self.assertEqual(token_objects(self.d), objects, "init created keys in the wrong token")

        self.with_serial(self.first[0])
        self.d.start()
        g = signer.request("GET", token)
        self.assertEqual((g.status, g.body), (200, b"in the right token"))
        self.assertEqual(self.d.stop(), 0)


class StoreIdentityTest(unittest.TestCase):
    def setUp(self):
        self.a = Daemon()
        self.a.start()
        self.user = logged_in_user(self.a, os.path.join(self.a.dir, "mail"), "store@example.com")
        pair = self.user.req("POST", f"/account/{self.user.account_id}/accessCode", {}).json()
        self.signer = Signer(self.a, pair["code"], pair["secret"])
        r = self.signer.request("POST", f"/account/{self.user.account_id}/token", b"kept payload")
        self.assertEqual(r.status, 201)
        self.token = r.header("Location")
        self.serial = token_serials(self.a)[0]
        self.others = []

    def tearDown(self):
        self.a.cleanup()
        for d in self.others:
            d.cleanup()

    def test_a_storage_path_typo_is_refused_by_init_unless_new_store(self):
        self.assertEqual(self.a.admin("rotate-keys").returncode, 0)  # the token holds v2 keys
        self.assertEqual(self.a.stop(), 0)
        typo = os.path.join(self.a.dir, "dta")
        c = self.a.config()
        c["storage"]["path"] = typo
        self.a.write_config(c)

        code, log = self.a.run_to_exit(timeout=20)
        self.assertEqual(code, 69, log[-2000:])
        self.assertIn(f"storage.path {typo} holds no vault", log)
        self.assertIn(self.serial, log)

        r = self.a.admin("init")
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.returncode, 69)
        for want in (f"storage.path {typo}", MODULE, self.serial, "otd-kek-v2", "--new-store"):
            self.assertIn(want, r.stderr)
        code, _ = self.a.run_to_exit(timeout=20)  # still no vault there
        self.assertEqual(code, 69)

        # Told explicitly: a second, empty vault on the same token keys.
        r = self.a.admin("init", "--new-store")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"store {typo}: created", r.stdout)
        self.a.start()
        # Another vault: the access code that signs is not there either.
        self.assertEqual(self.signer.request("GET", self.token).status, 401)
        self.assertEqual(self.a.stop(), 0)
        self.assertEqual(self.a.admin("init", "--new-store").returncode, 69)  # not empty now

        # The right path still has everything.
        c["storage"]["path"] = os.path.join(self.a.dir, "data")
        self.a.write_config(c)
        self.a.start()
        g = self.signer.request("GET", self.token)
        self.assertEqual((g.status, g.body), (200, b"kept payload"))

    def test_a_store_of_another_token_stops_the_daemon_and_init_naming_both(self):
        self.assertEqual(self.a.stop(), 0)
        b = Daemon()  # its own token, with keys of its own vault (same labels, other keys)
        self.others.append(b)
        b_serial = token_serials(b)[0]
        store = os.path.join(self.a.dir, "data")
        c = b.config()
        c["storage"]["path"] = store
        b.write_config(c)

        code, log = b.run_to_exit(timeout=20)
        self.assertEqual(code, 69, log[-2000:])
        self.assertIn(f"storage.path {store} holds vault", log)
        self.assertIn(self.serial, log)  # recorded in the store
        self.assertIn(b_serial, log)     # the token in use
        self.assertIn("fingerprint differs", log)
        objects = token_objects(b)
        for command in ("init", "rotate-keys"):
            r = b.admin(command)
            self.assertEqual(r.returncode, 69, command + ": " + r.stdout + r.stderr)
            self.assertIn(store, r.stderr)
        self.assertEqual(token_objects(b), objects, "init or rotate-keys created keys")

        # Nothing was written into the store: its own token still reads everything.
        self.a.start()
        g = self.signer.request("GET", self.token)
        self.assertEqual((g.status, g.body), (200, b"kept payload"))


if __name__ == "__main__":
    unittest.main()
