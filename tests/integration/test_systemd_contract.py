"""Issue 2: sd_notify READY/STOPPING, socket mode, TLS protocol floor, socket activation."""

import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
import unittest

from harness import Daemon


class SystemdContractTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        self.d.cleanup()

    def test_notifies_ready_then_stopping(self):
        path = os.path.join(self.d.dir, "notify.sock")
        n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        n.bind(path)
        n.settimeout(20)
        os.environ["NOTIFY_SOCKET"] = path
        try:
            self.d.start()
        finally:
            del os.environ["NOTIFY_SOCKET"]
        msgs = n.recv(4096).decode()
        self.assertIn("READY=1", msgs)
        # READY comes only once the listeners are up.
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)
        self.assertEqual(self.d.stop(), 0)
        self.assertIn("STOPPING=1", n.recv(4096).decode())
        n.close()

    def test_unix_socket_has_the_configured_mode(self):
        c = self.d.config()
        c["listen"]["unix"]["mode"] = "0600"
        self.d.write_config(c)
        self.d.start()
        self.assertEqual(stat.S_IMODE(os.stat(self.d.sock).st_mode), 0o600)
        self.d.stop()

    def test_tls_refuses_versions_below_1_2(self):
        self.d.start()
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            try:
                ctx.minimum_version = version
                ctx.maximum_version = version
                ctx.set_ciphers("ALL:@SECLEVEL=0")
            except (ValueError, ssl.SSLError):
                continue  # the client library cannot even offer it
            with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as raw:
                with self.assertRaises((ssl.SSLError, ConnectionResetError)):
                    ctx.wrap_socket(raw).do_handshake()
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = self.d.tls_context()
            ctx.minimum_version = version
            ctx.maximum_version = version
            with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    self.assertEqual(s.version(), "TLSv1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2")
                    cipher = s.cipher()[0]
                    self.assertTrue("GCM" in cipher or "CHACHA20" in cipher, cipher)
        self.d.stop()

    @unittest.skipUnless(shutil.which("systemd-socket-activate"), "systemd-socket-activate missing")
    def test_adopts_a_socket_activated_listener(self):
        sock = os.path.join(self.d.dir, "run", "activated.sock")
        # systemd-socket-activate passes only the variables named with -E.
        argv = ["systemd-socket-activate", "-l", sock, "-E", "SOFTHSM2_CONF=" + self.d.conf] + self.d.argv()
        log = open(self.d.log_path, "ab")
        proc = subprocess.Popen(argv, env=self.d.env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 10
            while not os.path.exists(sock) and time.time() < deadline:
                time.sleep(0.05)
            # The daemon is started on the first connection and serves it on the inherited fd.
            self.d.sock = sock
            r = self.d.request("GET", "/healthCheck")
            self.assertEqual(r.status, 200)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()
        self.assertIn('"event":"ready"', self.d.read_log())


if __name__ == "__main__":
    unittest.main()
