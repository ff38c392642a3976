"""Issue 14, item 4: mail bombing and storage growth through registration.

Before: 12 registrations + secure steps to one address sent 12 confirmation mails in 1.3 s, one
keep-alive connection created 701 registrations in 8 s, and registrations could fill the store's
map until every write, tokenize included, answered 503. Now (service/registration_limits.h):
  * POST /registration and the secure step count per address (any spelling) and per peer;
    past the allowance: 429 too-many-requests with Retry-After, nothing written, nothing mailed;
  * a peer holds at most accounts.max_pending_registrations_per_peer pending registrations (429),
    all peers together accounts.max_pending_registrations (503);
  * no new registration while more than storage.unauthenticated_write_limit_percent of the map is
    in use (503), while signed tokenize keeps working up to the full map.
"""

import json
import os
import unittest

from harness import Daemon, Reply, UnixHTTPConnection
from opentoken_client import (Client, Signer, expand, find_link, logged_in_user, password_hash,
                              read_mails)

JSON = {"Content-Type": "application/json"}


def start_registration(client):
    """POST /registration for client.address; on 200 the client can secure (Client.secure)."""
    r = client.req("POST", "/registration", {"email": client.address})
    if r.status == 200:
        client.registration = r
        client.reg_body = r.json()
        client.seed = bytes.fromhex(client.reg_body["mfa"]["totp"]["keyHex"])
        client.pw_hash = password_hash(client.reg_body["passwordHashConfig"])
    return r


def assert_refused(test, r, status, code, max_wait=None, min_wait=1):
    test.assertEqual(r.status, status, r.body[:200])
    test.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
    body = json.loads(r.body)
    test.assertEqual(body["code"], code)
    test.assertTrue(body["logref"])
    wait = int(r.header("Retry-After"))
    test.assertGreaterEqual(wait, min_wait)
    if max_wait is not None:
        test.assertLessEqual(wait, max_wait)
    test.assertNotIn(b"@example.com", r.body)
    return wait


def metrics(daemon):
    conn = UnixHTTPConnection(os.path.join(daemon.dir, "run", "opentokend-metrics.sock"))
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        text = r.read().decode()
    finally:
        conn.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class RegistrationLimitsTest(unittest.TestCase):
    """Default limits: 4 steps per address, 20 per peer, 10 pending per peer."""

    def setUp(self):
        self.d = Daemon()
        self.d.start()
        self.spool = os.path.join(self.d.dir, "mail")

    def tearDown(self):
        code = self.d.stop()
        log = self.d.read_log()
        self.d.cleanup()
        self.assertEqual(code, 0)
        self.assertNotIn("example.com", log)

    def test_a_flood_of_registrations_to_one_address_mails_at_most_the_allowance(self):
        # The reported attack: 12 x (register + secure) to one victim, in two spellings.
        statuses = []
        waits = []
        for i in range(12):
            c = Client(self.d, address="victim@example.com" if i % 2 == 0 else "Victim@Example.COM")
            r = start_registration(c)
            statuses.append(r.status)
            if r.status != 200:
                waits.append(assert_refused(self, r, 429, "too-many-requests", max_wait=60))
                continue
            s = c.secure()
            statuses.append(s.status)
        # 4 steps for the address: two registrations and their two confirmation mails.
        self.assertEqual(statuses, [200, 204, 200, 204] + [429] * 10)
        self.assertEqual(len(waits), 10)
        mails = read_mails(self.spool)
        self.assertEqual(len(mails), 2)
        self.assertEqual({m[1]["To"].lower() for m in mails}, {"victim@example.com"})

        # The secure step alone cannot be repeated to bomb the address either (a registration
        # to another address, secured over and over).
        c = Client(self.d, address="bombed@example.com")
        self.assertEqual(start_registration(c).status, 200)
        secured = []
        for _ in range(12):
            s = c.secure()
            secured.append(s.status)
            if s.status != 204:
                assert_refused(self, s, 429, "too-many-requests", max_wait=60)
        self.assertEqual(secured, [204] * 3 + [429] * 9)
        self.assertEqual(len(read_mails(self.spool)), 2 + 3)

    def test_one_keep_alive_connection_hits_the_peer_caps_and_other_peers_still_register(self):
        conn = self.d.unix_conn()
        results = []
        try:
            for i in range(25):
                conn.request("POST", "/registration",
                             body=json.dumps({"email": f"loop{i}@example.com"}), headers=JSON)
                r = conn.getresponse()
                body = r.read()
                results.append((r.status, r.getheader("Retry-After"), body))
        finally:
            conn.close()
        statuses = [s for s, _, _ in results]
        # 10 pending registrations per peer...
        self.assertEqual(statuses, [200] * 10 + [429] * 15, statuses)
        for status, wait, body in results[10:20]:
            # ...until the first of them expires (24 h)...
            self.assertEqual(json.loads(body)["code"], "too-many-requests")
            self.assertGreater(int(wait), 3600)
        for status, wait, body in results[20:]:
            # ...and after 20 steps the peer has to wait as well (60 s, doubling).
            self.assertEqual(json.loads(body)["code"], "too-many-requests")
            self.assertTrue(1 <= int(wait) <= 60, wait)
        # New connections from the same Unix user are the same peer.
        again = Client(self.d, address="newconn@example.com")
        assert_refused(self, start_registration(again), 429, "too-many-requests", max_wait=60)
        # TLS from 127.0.0.1 is another peer: it registers, secures and confirms.
        other = Client(self.d, "tls", address="other-peer@example.com")
        other.full_registration(self.spool)
        self.assertEqual(other.login().status, 200)
        m = metrics(self.d)
        self.assertEqual(m['opentokend_store_records{table="registrations"}'], 10)
        self.assertEqual(m['opentokend_store_records{table="accounts"}'], 1)


class SmallMapDaemon(Daemon):
    """An 8 MiB map; registrations may fill 45 % of it; the counting limits out of the way."""

    def config(self):
        c = super().config()
        c["storage"]["map_size_mb"] = 8
        c["storage"]["unauthenticated_write_limit_percent"] = 45
        c["accounts"] = {"registrations_per_peer": 100000, "max_pending_registrations": 1000000,
                         "max_pending_registrations_per_peer": 1000000}
        return c


class RegistrationReserveTest(unittest.TestCase):
    def setUp(self):
        self.d = SmallMapDaemon()
        self.d.start()
        self.spool = os.path.join(self.d.dir, "mail")

    def tearDown(self):
        code = self.d.stop()
        self.d.cleanup()
        self.assertEqual(code, 0)

    def test_registrations_stop_at_the_reserve_and_tokenize_keeps_working(self):
        user = logged_in_user(self.d, self.spool, "owner@example.com")
        account = user.req("GET", find_link(user.login_reply, rel="up", title="account")["href"])
        pair = user.req("POST", find_link(account, title="account-accessCode")["href"],
                        {"description": "reserve test"})
        self.assertEqual(pair.status, 201, pair.body)
        signer = Signer(self.d, pair.json()["code"], pair.json()["secret"])
        token_url = expand(find_link(account, title="account-token-create")["href"],
                           accountId=user.account_id)
        # Tokens take 3 of the 8 MiB first.
        stored = []
        for i in range(3):
            payload = bytes([i]) * 1_000_000
            r = signer.request("POST", token_url, payload, "application/octet-stream")
            self.assertEqual(r.status, 201, r.body[:200])
            stored.append((r.header("Location"), payload))

        # Strangers register in a loop on one connection until the reserve (45 % = 3.6 MiB).
        conn = self.d.unix_conn()
        accepted = 0
        first = None
        try:
            for i in range(5000):
                conn.request("POST", "/registration",
                             body=json.dumps({"email": f"fill{i}@example.com"}), headers=JSON)
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    break
                accepted += 1
                first = first or (r.getheaders(), body)
        finally:
            conn.close()
        self.assertGreater(accepted, 10)
        self.assertEqual(r.status, 503, body[:200])
        self.assertEqual(json.loads(body)["code"], "service-unavailable")
        self.assertGreaterEqual(int(r.getheader("Retry-After")), 1)
        self.assertNotIn(b"fill", body)
        assert_refused(self, start_registration(Client(self.d, "tls", address="late@example.com")),
                       503, "service-unavailable")
        m = metrics(self.d)
        map_size = m["opentokend_store_map_size_bytes"]
        self.assertLess(m["opentokend_store_used_bytes"], 0.5 * map_size)

        # Tokenize goes on past the reserve: another 1 MB and small ones, all readable.
        for i, size in enumerate((1_000_000, 100, 2000, 5)):
            payload = bytes([0x40 + i]) * size
            r = signer.request("POST", token_url, payload, "application/octet-stream")
            self.assertEqual(r.status, 201, r.body[:200])
            stored.append((r.header("Location"), payload))
        m = metrics(self.d)
        self.assertGreater(m["opentokend_store_used_bytes"], 0.45 * map_size)
        for location, payload in stored:
            r = signer.request("GET", location)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, payload)
        # A registration made before the reserve can still be secured and confirmed (no new
        # record: the reserve only stops new registrations).
        early = Client(self.d, address="fill0@example.com")
        early.registration = Reply(200, first[0], first[1])
        early.reg_body = json.loads(first[1])
        early.seed = bytes.fromhex(early.reg_body["mfa"]["totp"]["keyHex"])
        early.pw_hash = password_hash(early.reg_body["passwordHashConfig"])
        for f in read_mails(self.spool):
            os.unlink(f[0])
        self.assertEqual(early.secure().status, 204)
        confirmed, _ = early.confirm(self.spool)
        self.assertEqual(confirmed.status, 201, confirmed.body)
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)


if __name__ == "__main__":
    unittest.main()
