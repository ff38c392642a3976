"""Issue 4: access code pairs, OT1 signed requests, tokenization (private and public)."""

import glob
import json
import os
import re
import time
import unittest

from harness import Daemon
from opentoken_client import Client, Signer, find_link, expand, logged_in_user, ot1_date, ot1_sign


class TokenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        cls.alice = cls.new_user("alice@example.com")
        cls.bob = cls.new_user("bob@example.com")

    @classmethod
    def new_user(cls, address):
        c = logged_in_user(cls.d, cls.spool, address)
        account = c.req("GET", find_link(c.login_reply, rel="up", title="account")["href"])
        c.account = account
        pair = c.req("POST", find_link(account, title="account-accessCode")["href"],
                     {"description": "Example for Documentation"})
        assert pair.status == 201, pair.body
        c.pair = pair.json()
        c.token_template = find_link(account, title="account-token-create")["href"]
        return c

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0

    def signer(self, user=None, transport="unix"):
        u = user or self.alice
        return Signer(self.d, u.pair["code"], u.pair["secret"], transport)

    def token_url(self, user=None, public=None):
        u = user or self.alice
        url = expand(u.token_template, accountId=u.account_id)
        return url + ("" if public is None else f"?public={public}")

    def tokenize(self, body, content_type="text/plain", public=None, user=None, transport="unix"):
        r = self.signer(user, transport).request("POST", self.token_url(user, public), body, content_type)
        self.assertEqual(r.status, 201, r.body)
        return r.header("Location")

    # --- access codes ------------------------------------------------------------------------
    def test_access_code_pair_is_shown_once_and_listed_without_secret(self):
        p = self.alice.pair
        self.assertEqual(set(p), {"code", "secret", "expires"})
        self.assertRegex(p["code"], r"^[A-Za-z0-9_-]{32}$")
        self.assertRegex(p["secret"], r"^[A-Za-z0-9_-]{32}$")
        self.assertRegex(p["expires"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        listing = self.alice.req("GET", f"/account/{self.alice.account_id}/accessCode")
        self.assertEqual(listing.status, 200)
        items = listing.json()["items"]
        self.assertIn(p["code"], [i["code"] for i in items])
        self.assertNotIn(p["secret"].encode(), listing.body)
        self.assertEqual(items[0]["description"], "Example for Documentation")
        # Without the cookie, or with another account's cookie: refused.
        self.assertEqual(self.d.request("GET", f"/account/{self.alice.account_id}/accessCode").status, 401)
        r = self.d.request("POST", f"/account/{self.alice.account_id}/accessCode", body="{}",
                           headers={"Content-Type": "application/json", "Cookie": "login=" + self.bob.cookie})
        self.assertEqual(r.status, 403)

    def test_listing_many_pairs_stays_within_client_header_limits(self):
        # Regression: one Link header per pair made http.client refuse the reply (> 100 headers).
        u = self.new_user("many-codes@example.com")
        for _ in range(45):
            self.assertEqual(u.req("POST", f"/account/{u.account_id}/accessCode", {}).status, 201)
        r = u.req("GET", f"/account/{u.account_id}/accessCode")
        self.assertEqual(r.status, 200)
        items = r.json()["items"]
        self.assertEqual(len(items), 46)
        self.assertEqual(items[0]["href"], f"/account/{u.account_id}/accessCode/{items[0]['code']}")
        self.assertLess(len(r.headers), 20)

    def test_revoked_code_no_longer_signs(self):
        r = self.alice.req("POST", f"/account/{self.alice.account_id}/accessCode", {})
        self.assertEqual(r.status, 201)
        pair = r.json()
        s = Signer(self.d, pair["code"], pair["secret"])
        self.assertEqual(s.request("POST", self.token_url(), b"x").status, 201)
        self.assertEqual(self.alice.req("DELETE", r.header("Location")).status, 204)
        self.assertEqual(s.request("POST", self.token_url(), b"x").status, 401)
        self.assertEqual(self.alice.req("DELETE", r.header("Location")).status, 404)

    # --- tokenize / detokenize ---------------------------------------------------------------
    def test_documented_round_trip_on_both_transports(self):
        payloads = [
            (b"This is a test.\n", "text/plain"),
            (json.dumps({"pan": "4111111111111111"}).encode(), "application/json"),
            (os.urandom(1024 * 1024), "application/octet-stream"),
            (b"", "text/plain"),
            (bytes(range(256)), "image/png; x=1"),
        ]
        for t in ("unix", "tls"):
            for body, ctype in payloads:
                r = self.signer(transport=t).request("POST", self.token_url(), body, ctype)
                self.assertEqual(r.status, 201, r.body)
                loc = r.header("Location")
                self.assertRegex(loc, rf"^/account/{self.alice.account_id}/token/[A-Za-z0-9_-]{{32}}$")
                self.assertIn(f'<{loc}>; rel="self"', r.links())
                self.assertIn(f'</account/{self.alice.account_id}>; rel="up"; title="account"', r.links())
                g = self.signer(transport=t).request("GET", loc, b"", ctype)
                self.assertEqual(g.status, 200, g.body)
                self.assertEqual(g.body, body)
                self.assertEqual(g.header("Content-Type"), ctype)
                self.assertEqual(g.header("Cache-Control"), "no-store")
                self.assertIsNotNone(g.header("ETag"))
                self.assertIn(f'<{loc}>; rel="self"', g.links())

    def test_public_tokens_are_readable_without_a_signature(self):
        loc = self.tokenize(b"This is public.\n", public="true")
        r = self.d.request("GET", loc)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"This is public.\n")
        private = self.tokenize(b"This is private.\n", public="false")
        self.assertEqual(self.d.request("GET", private).status, 401)
        unknown = re.sub(r"[^/]+$", "A" * 32, private)
        self.assertEqual(self.d.request("GET", unknown).status, 401)  # unsigned: same as private

    def test_unknown_wrong_account_and_deleted_tokens_are_404_alike(self):
        loc = self.tokenize(b"secret data")
        token_id = loc.rsplit("/", 1)[1]
        unknown = self.signer().request("GET", loc[:-1] + ("A" if loc[-1] != "A" else "B"))
        other_account = self.signer(self.bob).request("GET", f"/account/{self.bob.account_id}/token/{token_id}")
        self.assertEqual(unknown.status, 404)
        self.assertEqual(other_account.status, 404)
        self.assertEqual({k: v for k, v in unknown.json().items() if k != "logref"},
                         {k: v for k, v in other_account.json().items() if k != "logref"})
        # Bob cannot read Alice's token through Alice's URL with his own code either.
        self.assertEqual(self.signer(self.bob).request("GET", loc).status, 401)
        self.assertEqual(self.signer().request("DELETE", loc).status, 204)
        self.assertEqual(self.signer().request("GET", loc).status, 404)
        self.assertEqual(self.signer().request("DELETE", loc).status, 404)

    def test_etag_gives_not_modified(self):
        loc = self.tokenize(b"cache me")
        g = self.signer().request("GET", loc)
        etag = g.header("ETag")
        r = self.signer().request("GET", loc, extra={"If-None-Match": etag})
        self.assertEqual(r.status, 304)
        self.assertEqual(r.body, b"")

    def test_expiring_tokens(self):
        future = ot1_date(time.time() + 2)
        r = self.signer().request("POST", self.token_url() + "?expires=" + future, b"short-lived")
        self.assertEqual(r.status, 201, r.body)
        loc = r.header("Location")
        self.assertEqual(self.signer().request("GET", loc).status, 200)
        time.sleep(3)
        self.assertEqual(self.signer().request("GET", loc).status, 404)
        past = ot1_date(time.time() - 10)
        self.assertEqual(self.signer().request("POST", self.token_url() + "?expires=" + past, b"x").status, 400)
        self.assertEqual(self.signer().request("POST", self.token_url() + "?expires=tomorrow", b"x").status, 400)
        self.assertEqual(self.signer().request("POST", self.token_url() + "?colour=red", b"x").status, 400)
        self.assertEqual(self.signer().request("POST", self.token_url() + "?public=yes", b"x").status, 400)

    def test_body_limit(self):
        # Refused from the header alone, before a byte of the body is read.
        sock = self.d.raw_socket()
        sock.sendall(f"POST {self.token_url()} HTTP/1.1\r\nHost: localhost\r\n"
                     f"Content-Type: application/octet-stream\r\nContent-Length: {1024 * 1024 + 1}\r\n\r\n".encode())
        self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 413 "))
        sock.close()

    # --- signature failures ------------------------------------------------------------------
    def test_every_signature_failure_is_a_401_naming_its_check(self):
        # Issue 17: one 401 shape for all, and the message says which check failed (each message
        # one by one: test_signature_diagnostics.py).
        s = self.signer()
        url = self.token_url()
        revoked = self.alice.req("POST", f"/account/{self.alice.account_id}/accessCode", {})
        revoked_pair = revoked.json()
        self.alice.req("DELETE", revoked.header("Location"))

        def drop(name):
            return lambda h, b: ({k: v for k, v in h.items() if k.lower() != name}, b)

        def replace_sig(h, b):
            h = dict(h)
            sig = re.search(r"signature=([0-9a-f]+)", h["Authorization"]).group(1)
            h["Authorization"] = h["Authorization"].replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
            return h, b

        cases = {
            "no authorization": lambda: self.d.request("POST", url, b"x", {"Content-Type": "text/plain"}),
            "missing date header": lambda: s.request("POST", url, b"x", tamper=drop("x-opentoken-date")),
            "bad date": lambda: s.request("POST", url, b"x", date="2016-11-17 20:01:00"),
            "date too old": lambda: s.request("POST", url, b"x", date=ot1_date(time.time() - 6 * 60)),
            "date in the future": lambda: s.request("POST", url, b"x", date=ot1_date(time.time() + 5 * 60)),
            "content-type not signed": lambda: s.request("POST", url, b"x", signed=("host", "x-opentoken-date")),
            "host not signed": lambda: s.request("POST", url, b"x", signed=("content-type", "x-opentoken-date")),
            "date not signed": lambda: s.request("POST", url, b"x", signed=("host", "content-type")),
            "unknown code": lambda: Signer(self.d, "A" * 32, s.secret).request("POST", url, b"x"),
            "revoked code": lambda: Signer(self.d, revoked_pair["code"], revoked_pair["secret"]).request("POST", url, b"x"),
            "code of another account": lambda: self.signer(self.bob).request("POST", url, b"x"),
            "wrong secret": lambda: Signer(self.d, s.code, "B" * 32).request("POST", url, b"x"),
            "wrong signature": lambda: s.request("POST", url, b"x", tamper=replace_sig),
            "upper-case hex": lambda: s.request("POST", url, b"x", tamper=lambda h, b: (
                {**h, "Authorization": re.sub(r"signature=(\w+)", lambda m: "signature=" + m.group(1).upper(), h["Authorization"])}, b)),
            "body changed after signing": lambda: s.request("POST", url, b"x", tamper=lambda h, b: (h, b"y")),
            "content type changed": lambda: s.request("POST", url, b"x", tamper=lambda h, b: ({**h, "Content-Type": "text/html"}, b)),
            "query added": lambda: s.request("POST", url, b"x", tamper=lambda h, b: (h, b)) if False else
                self.d.request("POST", url + "?public=true", b"x",
                               ot1_sign("POST", url, {"Host": "localhost", "Content-Type": "text/plain",
                                                      "X-OpenToken-Date": ot1_date()}, b"x", s.code, s.secret)),
            "wrong scheme": lambda: s.request("POST", url, b"x", tamper=lambda h, b: (
                {**h, "Authorization": h["Authorization"].replace("OT1-HMAC-SHA256-HEX", "OT2-HMAC-SHA256-HEX")}, b)),
        }
        mismatch = "signature mismatch"
        expected = {
            "no authorization": "no Authorization header",
            "missing date header": "X-OpenToken-Date header is missing",
            "bad date": "X-OpenToken-Date is not an RFC 3339 date-time",
            "date too old": "X-OpenToken-Date is too far in the past",
            "date in the future": "X-OpenToken-Date is too far in the future",
            "content-type not signed": "a required header is not signed: content-type",
            "host not signed": "a required header is not signed: host",
            "date not signed": "a required header is not signed: x-opentoken-date",
            "unknown code": "unknown access code",
            "revoked code": "unknown access code",
            "code of another account": "unknown access code",
            "wrong secret": mismatch,
            "wrong signature": mismatch,
            "upper-case hex": "malformed Authorization header: signature is not 64 lower-case hex",
            "body changed after signing": mismatch,
            "content type changed": mismatch,
            "query added": mismatch,
            "wrong scheme": "malformed Authorization header: the scheme must be OT1-HMAC-SHA256-HEX",
        }
        self.assertEqual(set(expected), set(cases))
        for name, call in cases.items():
            with self.subTest(case=name):
                r = call()
                self.assertEqual(r.status, 401, (name, r.body))
                self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
                self.assertEqual(r.header("WWW-Authenticate"), "OT1-HMAC-SHA256-HEX")
                body = r.json()
                self.assertEqual(body["code"], "unauthorized")
                self.assertTrue(body["message"].startswith(expected[name]), body["message"])
                self.assertNotIn(s.secret, body["message"])
        # The signed example with parameters in another order still verifies.
        h = ot1_sign("POST", url, {"Host": "localhost", "Content-Type": "text/plain",
                                   "X-OpenToken-Date": ot1_date()}, b"order", s.code, s.secret)
        parts = h["Authorization"].split("; ")
        h["Authorization"] = parts[0] + "; " + "; ".join(reversed(parts[1:]))
        self.assertEqual(self.d.request("POST", url, b"order", h).status, 201)

    def test_store_and_logs_hold_no_payload_token_id_or_secret(self):
        marker = b"PAYLOAD-MARKER-4111111111111111"
        loc = self.tokenize(marker)
        token_id = loc.rsplit("/", 1)[1].encode()
        for path in glob.glob(os.path.join(self.d.dir, "data", "*")):
            with open(path, "rb") as f:
                data = f.read()
            self.assertNotIn(marker, data)
            self.assertNotIn(token_id, data)
            self.assertNotIn(self.alice.pair["secret"].encode(), data)
            self.assertNotIn(self.alice.pair["code"].encode(), data)
        log = self.d.read_log()
        for s in (marker.decode(), token_id.decode(), self.alice.pair["secret"], self.alice.pair["code"]):
            self.assertNotIn(s, log)


class TokenRestartTest(unittest.TestCase):
    def test_tokens_survive_a_restart(self):
        d = Daemon()
        try:
            d.start()
            spool = os.path.join(d.dir, "mail")
            c = Client(d, address="restart@example.com")
            c.full_registration(spool)
            self.assertEqual(c.login().status, 200)
            pair = c.req("POST", f"/account/{c.account_id}/accessCode", {}).json()
            s = Signer(d, pair["code"], pair["secret"])
            r = s.request("POST", f"/account/{c.account_id}/token", b"kept across restarts")
            self.assertEqual(r.status, 201)
            pub = s.request("POST", f"/account/{c.account_id}/token?public=true", b"public one")
            self.assertEqual(d.stop(), 0)
            d.start()
            g = s.request("GET", r.header("Location"))
            self.assertEqual(g.status, 200)
            self.assertEqual(g.body, b"kept across restarts")
            self.assertEqual(d.request("GET", pub.header("Location")).body, b"public one")
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
