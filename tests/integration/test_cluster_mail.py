"""Issue 16: the SMTP outbox is in the database, so queued mail survives a dead node.

Two daemons on one PostgreSQL (pg_server.py) sharing one SoftHSM2 token, and an SMTP peer
(smtp_peer.py) that is down at first: a registration on node 1 queues its confirmation mail;
node 1 is killed (-9); the peer comes up; node 2 delivers the message and its confirmation link
works (on node 2). Before the change the mail stayed in node 1's outbox directory for ever.
"""

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

import pg_server
from harness import Daemon, free_port
from opentoken_client import Client, confirm_path

HERE = os.path.dirname(os.path.abspath(__file__))
WHY_NOT = pg_server.unavailable()
ADDRESS = "cluster-mail@example.com"


@unittest.skipIf(WHY_NOT, WHY_NOT)
class ClusterMailTest(unittest.TestCase):
    def setUp(self):
        self.pg = pg_server.PgServer()
        self.pg.psql("CREATE DATABASE otd")
        self.smtp_port = free_port()  # nothing listens there yet
        self.inbox = None
        self.peer = None
        self.n1 = Daemon(init_keys=False)
        self.n2 = Daemon(init_keys=False)
        # Node 2 shares node 1's token (the smallest hook: its softhsm2.conf and PIN file).
        self.n2.conf, self.n2.pin, self.n2.pin_file = self.n1.conf, self.n1.pin, self.n1.pin_file
        for d in (self.n1, self.n2):
            d.extra_config = {
                "storage": {"path": os.path.join(d.dir, "data"), "backend": "postgresql",
                            "postgresql": {"conninfo": self.pg.conninfo("otd"), "pool_size": 4}},
                "mail": {"smtp_url": f"smtp://127.0.0.1:{self.smtp_port}",
                         "from": "vault@example.com",
                         "outbox_dir": os.path.join(d.dir, "outbox")},
            }
            d.write_config()
        self.n1.admin("init", check=True)

    def tearDown(self):
        try:
            if self.peer is not None:
                self.peer.send_signal(signal.SIGTERM)
                self.peer.wait(timeout=10)
            self.n1.cleanup()
            self.n2.cleanup()
        finally:
            self.pg.cleanup()

    def wait_for_inbox(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = sorted(glob.glob(os.path.join(self.inbox, "*.eml")))
            if found:
                return found
            time.sleep(0.2)
        self.fail("no message reached the SMTP peer; node 1 log:\n" + self.n1.read_log() +
                  "\nnode 2 log:\n" + self.n2.read_log())

    def test_mail_queued_on_a_dead_node_is_delivered_by_another(self):
        self.n1.start()
        self.n2.start()
        c = Client(self.n1, address=ADDRESS)
        c.register()
        self.assertEqual(c.secure().status, 204)  # the confirmation mail is queued (Ok = durable)
        # Node 1 tries and fails (the peer is down), then dies without a word.
        deadline = time.time() + 10
        while "mail_delivery_failed" not in self.n1.read_log() and time.time() < deadline:
            time.sleep(0.1)
        self.n1.kill()
        # Nothing of the message in node 1's directories (it is in the database, sealed).
        leftovers = glob.glob(os.path.join(self.n1.dir, "**", "*.eml"), recursive=True)
        self.assertEqual(leftovers, [])

        self.inbox = os.path.join(self.n2.dir, "inbox")
        self.peer = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "smtp_peer.py"), "--dir", self.inbox,
             "--port", str(self.smtp_port), "--print-port"], stdout=subprocess.PIPE, text=True)
        self.assertEqual(int(self.peer.stdout.readline()), self.smtp_port)

        paths = self.wait_for_inbox(timeout=90)
        time.sleep(1)  # a duplicate (at-least-once) would show up here; none is expected
        paths = sorted(glob.glob(os.path.join(self.inbox, "*.eml")))
        self.assertEqual(len(paths), 1, paths)
        with open(paths[0][:-4] + ".json") as f:
            self.assertEqual(json.load(f)["rcpt_to"], [ADDRESS])
        self.assertIn('"event":"mail_delivered"', self.n2.read_log())
        with open(paths[0], "rb") as f:
            raw = f.read().decode("utf-8", "replace")
        msg = email.message_from_string(raw, policy=email.policy.default)
        link = confirm_path(msg.get_body(preferencelist=("plain",)).get_content())
        c.d = self.n2  # the registration lives in the database: node 2 confirms it
        r = c.req("GET", link)
        self.assertEqual(r.status, 201, r.body)
        self.assertNotIn(ADDRESS, self.n1.read_log() + self.n2.read_log())
        # While queued, nothing of the message was in clear in the database (sealed records):
        # the queued copy is gone now, so check a second one that stays queued (peer down).
        self.peer.send_signal(signal.SIGTERM)
        self.peer.wait(timeout=10)
        self.peer = None
        c2 = Client(self.n2, address="second-" + ADDRESS)
        c2.register()
        self.assertEqual(c2.secure().status, 204)
        dump = self.pg.pg_dump("otd")
        self.assertNotIn(b"example.com", dump)
        self.assertNotIn(link.encode(), dump)
        self.assertNotIn(b"Subject:", dump)


if __name__ == "__main__":
    unittest.main()
