"""Issue 14 (hostile review): regression tests against the real daemon for item 1 (active content
on the vault's origin: the headers of every answer, attachment for active types, cross-site
cookie requests) and item 7 (the access-code limit, diagnosable signature failures). The real
browser half of item 1 is test_browser_isolation.py."""

import json
import os
import unittest

import harness
import opentoken_client as oc

POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
ACTIVE_TYPES = ["text/html", "text/html; charset=utf-8", "image/svg+xml", "application/xhtml+xml",
                "text/xml", "application/xml", "application/javascript", "text/javascript",
                "application/pdf", "text/css", "x-unknown/thing"]
PASSIVE_TYPES = ["text/plain", "text/plain; charset=utf-8", "application/json", "image/png",
                 "application/octet-stream"]


class HostileReviewTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(extra_config={"log_level": "debug"})
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        cls.user = oc.logged_in_user(cls.d, cls.spool, "hr-user@example.com")
        r = cls.user.req("POST", f"/account/{cls.user.account_id}/accessCode")
        assert r.status == 201, r.body
        pair = r.json()
        cls.code, cls.secret = pair["code"], pair["secret"]
        cls.signer = oc.Signer(cls.d, cls.code, cls.secret)
        cls.tls_signer = oc.Signer(cls.d, cls.code, cls.secret, transport="tls")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def account(self, suffix=""):
        return f"/account/{self.user.account_id}{suffix}"

    def tokenize(self, body, content_type, public):
        q = "?public=true" if public else ""
        r = self.signer.request("POST", self.account("/token") + q, body=body,
                                content_type=content_type)
        self.assertEqual(r.status, 201, r.body)
        return r.header("Location")

    # --- item 1: headers -----------------------------------------------------------------------
    def test_detokenized_active_content_is_an_attachment_in_a_sandbox(self):
        body = b"<script>alert(document.cookie)</script>\x00\xff"
        for public in (True, False):
            for ctype in ACTIVE_TYPES + PASSIVE_TYPES:
                with self.subTest(public=public, content_type=ctype):
                    loc = self.tokenize(body, ctype, public)
                    r = (self.d.request("GET", loc) if public
                         else self.signer.request("GET", loc, content_type=ctype))
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(r.body, body)  # byte-exact payload
                    self.assertEqual(r.header("Content-Type"), ctype)  # byte-exact type
                    self.assertEqual(r.header("Content-Security-Policy"), POLICY)
                    self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
                    disposition = r.header("Content-Disposition")
                    if ctype in ACTIVE_TYPES:
                        self.assertEqual(disposition, "attachment")
                    else:
                        self.assertIsNone(disposition)

    def test_every_other_answer_has_the_policy(self):
        answers = [self.d.request("GET", "/"),
                   self.d.request("GET", "/healthCheck"),
                   self.d.request("GET", "/schema/account/login-request.json"),
                   self.d.request("GET", "/no/such/route"),
                   self.d.request("GET", self.account("/token/nope")),
                   self.d.request("GET", "/healthCheck", transport="tls"),
                   self.user.req("GET", self.account())]
        for r in answers:
            self.assertEqual(r.header("Content-Security-Policy"), POLICY, (r.status, r.headers))
        raw, _ = self.d.raw(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        self.assertIn(b"HTTP/1.1 400", raw)
        self.assertIn(f"Content-Security-Policy: {POLICY}".encode(), raw)

    # --- item 1: cross-site cookie requests ----------------------------------------------------
    def cookie_req(self, method, path, headers, transport="unix", body=None):
        h = {"Cookie": "login=" + self.user.cookie}
        h.update(headers)
        if body is not None:
            h["Content-Type"] = "application/json"
            body = json.dumps(body)
        return self.d.request(method, path, body=body, headers=h, transport=transport)

    def test_cross_site_cookie_requests_are_refused(self):
        public_origin = f"https://127.0.0.1:{self.d.port}"
        refused = [{"Origin": "https://evil.example"},
                   {"Origin": "null"},
                   {"Origin": "http://127.0.0.1:1"},
                   {"Sec-Fetch-Site": "cross-site"},
                   {"Sec-Fetch-Site": "cross-site", "Origin": public_origin}]
        for headers in refused:
            with self.subTest(headers=headers):
                r = self.cookie_req("POST", self.account("/accessCode"), headers)
                self.assertEqual(r.status, 403, r.body)
                self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
                self.assertEqual(r.json()["code"], "forbidden")
                r = self.cookie_req("DELETE", self.account("/accessCode/" + self.code), headers)
                self.assertEqual(r.status, 403, r.body)
                r = self.cookie_req("POST", "/access-tokens", headers,
                                    body={"name": "x", "scope": ["account.read"]})
                self.assertEqual(r.status, 403, r.body)
                self.assertEqual(r.json()["type"], "Forbidden")
                r = self.cookie_req("POST", self.account("/logout"), headers)
                self.assertEqual(r.status, 403, r.body)
        # The session survived every refused logout; the code every refused revocation.
        self.assertEqual(self.user.req("GET", self.account()).status, 200)
        r = self.signer.request("POST", self.account("/token"), body=b"still signs")
        self.assertEqual(r.status, 201, r.body)

    def test_same_site_and_non_browser_cookie_requests_work(self):
        public_origin = f"https://127.0.0.1:{self.d.port}"
        allowed = [({}, "unix"),
                   ({"Origin": public_origin}, "unix"),
                   ({"Origin": public_origin, "Sec-Fetch-Site": "same-origin"}, "tls"),
                   ({"Origin": "http://localhost"}, "unix")]  # the request's own Host
        for headers, transport in allowed:
            with self.subTest(headers=headers, transport=transport):
                r = self.cookie_req("POST", self.account("/accessCode"), headers, transport)
                self.assertEqual(r.status, 201, r.body)
                code = r.json()["code"]
                r = self.cookie_req("DELETE", self.account("/accessCode/" + code), headers,
                                    transport)
                self.assertEqual(r.status, 204, r.body)
        # Reads are never refused for their Origin (the cookie is SameSite=Strict anyway).
        r = self.cookie_req("GET", self.account(), {"Origin": "https://evil.example"})
        self.assertEqual(r.status, 200, r.body)

    # --- item 7 ----------------------------------------------------------------------------------
    def test_access_code_limit_is_a_409_naming_it(self):
        user = oc.logged_in_user(self.d, self.spool, "hr-limit@example.com")
        path = f"/account/{user.account_id}/accessCode"
        for i in range(100):
            r = user.req("POST", path)
            self.assertEqual(r.status, 201, (i, r.body))
        r = user.req("POST", path)
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
        self.assertIn("maximum of 100 access codes", r.json()["message"])

    def test_signature_failures_link_to_signature_information(self):
        cases = {
            "no authorization": lambda h, b: ({k: v for k, v in h.items()
                                               if k != "Authorization"}, b),
            "wrong signature": lambda h, b: (dict(h, Authorization=h["Authorization"][:-4]
                                                  + "0000"), b),
            "stale date": None,
        }
        log_start = len(self.d.read_log())
        for name, tamper in cases.items():
            with self.subTest(case=name):
                if tamper is None:
                    r = self.signer.request("POST", self.account("/token"), body=b"x",
                                            date=oc.ot1_date(0))
                else:
                    r = self.signer.request("POST", self.account("/token"), body=b"x",
                                            tamper=tamper)
                self.assertEqual(r.status, 401, r.body)
                link = oc.find_link(r, rel="related", title="signature-information")
                info = self.d.request("GET", link["href"])
                self.assertEqual(info.status, 200, info.body)
                doc = info.json()
                self.assertEqual(doc["scheme"], "OT1-HMAC-SHA256-HEX")
                self.assertEqual(doc["requiredSignedHeaders"],
                                 ["host", "content-type", "x-opentoken-date"])
                self.assertEqual((doc["datePastSeconds"], doc["dateFutureSeconds"]), (300, 60))
                self.assertRegex(doc["serverTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # The unsigned GET of a private token is a signed route's 401 too.
        loc = self.tokenize(b"private", "text/plain", public=False)
        r = self.d.request("GET", loc)
        self.assertEqual(r.status, 401)
        oc.find_link(r, rel="related", title="signature-information")
        # A debug line says why, never with the secret or a signature.
        lines = [json.loads(l) for l in self.d.read_log()[log_start:].splitlines()
                 if '"signature_rejected_reason"' in l]
        reasons = {l["reason"] for l in lines}
        self.assertTrue(any("date" in r.lower() for r in reasons), reasons)
        self.assertTrue(any("Authorization" in r for r in reasons), reasons)
        self.assertTrue(all(l["level"] == "debug" for l in lines), lines)
        text = self.d.read_log()[log_start:]
        self.assertNotIn(self.secret, text)


if __name__ == "__main__":
    unittest.main()
