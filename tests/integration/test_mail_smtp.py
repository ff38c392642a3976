"""Issue 3: registration mail delivered by the daemon to a real SMTP peer (STARTTLS required),
including a delivery that fails first and is retried."""

import email
import email.policy
import glob
import json
import os
import signal
import subprocess
import sys
import time
import unittest

from harness import Daemon
from opentoken_client import Client, confirm_path

HERE = os.path.dirname(os.path.abspath(__file__))


class SmtpDeliveryTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(init_keys=True)
        self.inbox = os.path.join(self.d.dir, "inbox")
        # The peer uses the daemon's TLS pair (CN localhost, SAN 127.0.0.1) for STARTTLS.
        self.peer = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "smtp_peer.py"), "--dir", self.inbox, "--print-port",
             "--fail-first", "1", "--tls-cert", self.d.cert, "--tls-key", self.d.key, "--require-tls"],
            stdout=subprocess.PIPE, text=True)
        port = int(self.peer.stdout.readline())
        c = self.d.config()
        c["mail"] = {"smtp_url": f"smtp://127.0.0.1:{port}", "from": "vault@example.com",
                     "require_tls": True, "ca_file": self.d.cert,
                     "outbox_dir": os.path.join(self.d.dir, "outbox")}
        self.d.write_config(c)
        self.d.start()

    def tearDown(self):
        self.peer.send_signal(signal.SIGTERM)
        self.peer.wait(timeout=10)
        self.d.cleanup()

    def wait_for_inbox(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = sorted(glob.glob(os.path.join(self.inbox, "*.eml")))
            if found:
                return found
            time.sleep(0.1)
        self.fail("no message reached the SMTP peer; daemon log:\n" + self.d.read_log())

    def test_confirmation_mail_goes_over_smtp_with_starttls_after_a_retry(self):
        c = Client(self.d, address="smtp-user@example.com")
        c.register()
        self.assertEqual(c.secure().status, 204)
        path = self.wait_for_inbox()[0]
        with open(path[:-4] + ".json") as f:
            envelope = json.load(f)
        self.assertTrue(envelope["tls"])
        self.assertEqual(envelope["rcpt_to"], ["smtp-user@example.com"])
        self.assertEqual(envelope["mail_from"], "vault@example.com")
        self.assertGreaterEqual(envelope["transaction"], 2)  # the first one was refused with 451
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",)).get_content()
        html = msg.get_body(preferencelist=("html",)).get_content()
        link = confirm_path(text)
        self.assertIn(link, html)
        r = c.req("GET", link)
        self.assertEqual(r.status, 201, r.body)
        log = self.d.read_log()
        self.assertIn("mail_delivery_failed", log)
        self.assertNotIn("smtp-user@example.com", log)


if __name__ == "__main__":
    unittest.main()
