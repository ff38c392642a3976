"""Issue 3: registration with TOTP MFA and e-mail confirmation, login, sessions, logout."""

import glob
import os
import re
import time
import unittest

from harness import Daemon
from opentoken_client import (Client, challenge_hash, confirm_path, find_link, password_hash,
                              read_mails, totp, wait_for_mail)


class AccountFlowTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Every test registers from this one peer: the per-peer registration rate
        # (test_registration_limits.py) is raised out of the way. The login delay is 30 s so that
        # a slow (sanitizer) build on a loaded machine cannot outlive it between two requests: the
        # limiter counts whole seconds, so a 2 s delay could end 1.0 s after it began.
        cls.d = Daemon(extra_config={"accounts": {"login_free_failures": 3, "login_base_delay_seconds": 30,
                                                  "challenge_lifetime_seconds": 10,
                                                  "registrations_per_peer": 200}})
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0

    def setUp(self):
        for f in glob.glob(os.path.join(self.spool, "*.eml")):
            os.unlink(f)

    def test_documented_flow_works_by_following_links_on_both_transports(self):
        for n, t in enumerate(("unix", "tls")):
            c = Client(self.d, t, address=f"flow{n}@example.com")
            r = c.register()
            self.assertEqual(r.header("Content-Type"), "application/json")
            body = r.json()
            cfg = body["passwordHashConfig"]
            self.assertEqual({k: cfg[k] for k in ("algorithm", "derivedLength", "encoding", "iterations", "type")},
                             {"algorithm": "sha512", "derivedLength": 48, "encoding": "base64",
                              "iterations": 100000, "type": "pbkdf2"})
            self.assertGreaterEqual(len(cfg["salt"]), 32)
            mfa = body["mfa"]["totp"]
            self.assertEqual(bytes.fromhex(mfa["keyHex"]), c.seed)
            self.assertRegex(mfa["keyBase32"], r"^[A-Z2-7]+$")
            self.assertTrue(mfa["keyUri"].startswith("otpauth://totp/"))
            self.assertIn("secret=" + mfa["keyBase32"], mfa["keyUri"])
            location = r.header("Location")
            self.assertRegex(location, r"^/registration/[A-Za-z0-9_-]{32}$")
            self.assertIn(f'<{location}>; rel="self"', r.links())
            self.assertIn(f'<{location}>; rel="edit"; profile="/schema/registration/secure-request.json"; '
                          f'title="registration-secure"', r.links())
            self.assertIn(f'<{location}/qr>; rel="item"; title="registration-secure-qr"', r.links())
            # The same resource again, and its QR code.
            again = c.req("GET", location)
            self.assertEqual(again.status, 200)
            self.assertEqual(again.json(), body)
            qr = c.req("GET", find_link(r, rel="item", title="registration-secure-qr")["href"])
            self.assertEqual(qr.status, 200)
            self.assertEqual(qr.header("Content-Type"), "image/png")
            self.assertTrue(qr.body.startswith(b"\x89PNG\r\n\x1a\n"))
            # Secure with two consecutive codes, confirm through the mailed link.
            s = c.secure()
            self.assertEqual(s.status, 204, s.body)
            self.assertIn(f'<{location}>; rel="self"', s.links())
            mails = wait_for_mail(self.spool, n + 1)
            msg = mails[-1][1]
            self.assertEqual(msg["To"], c.address)
            self.assertIn("multipart/alternative", msg["Content-Type"])
            conf, path = c.confirm(self.spool)
            self.assertEqual(conf.status, 201, conf.body)
            account_id = conf.json()["accountId"]
            self.assertRegex(account_id, r"^[A-Za-z0-9_-]{32}$")
            self.assertIn(f'</account/{account_id}>; rel="self"', conf.links())
            self.assertIn(f'</account/{account_id}/login>; rel="login"; profile="/schema/account/login-request.json"; '
                          f'title="account-login"', conf.links())
            c.account_id = account_id
            c.login_href = find_link(conf, rel="login")["href"]
            # Confirmation works exactly once.
            self.assertEqual(c.req("GET", path).status, 404)
            # Login with challenge and TOTP.
            lr = c.login()
            self.assertEqual(lr.status, 200, lr.body)
            self.assertEqual(lr.json()["sessionId"], c.cookie)
            cookie = lr.header("Set-Cookie")
            self.assertIn("HttpOnly", cookie)
            self.assertIn("Path=/account/", cookie)
            self.assertIn("Max-Age=600", cookie)
            if t == "tls":
                self.assertIn("Secure", cookie)
            else:
                self.assertNotIn("Secure", cookie)
            account_link = find_link(lr, rel="up", title="account")["href"]
            a = c.req("GET", account_link)
            self.assertEqual(a.status, 200, a.body)
            self.assertEqual(a.json(), {"email": c.address})
            titles = {find_link(a, title=x)["title"] for x in ("account-accessCode", "account-logout", "account-token-create")}
            self.assertEqual(len(titles), 3)
            # Logout (POST here, GET below) destroys the session.
            out = c.req("POST", find_link(a, title="account-logout")["href"])
            self.assertEqual(out.status, 204)
            self.assertEqual(out.header("Location"), "/")
            self.assertRegex(out.header("Set-Cookie"), r"^login=; .*Max-Age=0")
            self.assertEqual(c.req("GET", account_link).status, 401)

    def test_get_logout_works_and_cookie_of_another_account_is_refused(self):
        a = Client(self.d, address="alice@example.com")
        a.full_registration(self.spool)
        for f in glob.glob(os.path.join(self.spool, "*.eml")):
            os.unlink(f)
        b = Client(self.d, address="bob@example.com")
        b.full_registration(self.spool)
        self.assertEqual(a.login().status, 200)
        self.assertEqual(b.login().status, 200)
        # Alice's cookie on Bob's account.
        r = self.d.request("GET", f"/account/{b.account_id}", headers={"Cookie": "login=" + a.cookie})
        self.assertEqual(r.status, 403)
        r = a.req("GET", f"/account/{a.account_id}/logout")
        self.assertEqual(r.status, 204)
        self.assertEqual(a.req("GET", f"/account/{a.account_id}").status, 401)
        self.assertEqual(b.req("GET", f"/account/{b.account_id}").status, 200)

    def test_wrong_totp_codes_leave_the_registration_unchanged(self):
        c = Client(self.d, address="wrongcode@example.com")
        c.register()
        edit = find_link(c.registration, rel="edit")["href"]
        now = time.time()
        bad = [
            {"current": totp(c.seed, now, -1), "previous": totp(c.seed, now)},  # swapped
            {"current": totp(c.seed, now), "previous": totp(c.seed, now)},      # same twice
            {"current": "000000", "previous": "111111"},
            {"current": totp(c.seed, now, -5), "previous": totp(c.seed, now, -6)},  # too old
        ]
        for codes in bad:
            r = c.req("POST", edit, {"mfa": {"totp": codes}, "passwordHash": c.pw_hash})
            self.assertEqual(r.status, 400, codes)
            self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
        self.assertEqual(read_mails(self.spool), [])
        self.assertEqual(c.secure().status, 204)

    def test_confirmation_with_a_wrong_code_fails_without_side_effects(self):
        c = Client(self.d, address="confirm@example.com")
        c.register()
        self.assertEqual(c.secure().status, 204)
        path = confirm_path(wait_for_mail(self.spool)[0][2])
        wrong = path[:-1] + ("A" if path[-1] != "A" else "B")
        self.assertEqual(c.req("GET", wrong).status, 404)
        unsecured = Client(self.d, address="unsecured@example.com")
        unsecured.register()
        loc = unsecured.registration.header("Location")
        self.assertEqual(c.req("GET", loc + "/confirm/" + path.rsplit("/", 1)[1]).status, 404)
        r = c.req("GET", path)
        self.assertEqual(r.status, 201)
        self.assertEqual(c.req("GET", path).status, 404)
        # The registration is gone once confirmed.
        self.assertEqual(c.req("GET", c.registration.header("Location")).status, 404)

    def test_resecuring_sends_a_new_link_and_the_old_one_dies(self):
        c = Client(self.d, address="resend@example.com")
        c.register()
        self.assertEqual(c.secure().status, 204)
        first = confirm_path(wait_for_mail(self.spool, 1)[0][2])
        time.sleep(0.01)
        self.assertEqual(c.secure().status, 204)
        mails = wait_for_mail(self.spool, 2)
        second = confirm_path(mails[-1][2])
        self.assertNotEqual(first, second)
        self.assertEqual(c.req("GET", first).status, 404)
        self.assertEqual(c.req("GET", second).status, 201)

    def test_login_failures_look_the_same_and_codes_cannot_be_replayed(self):
        c = Client(self.d, address="replay@example.com")
        c.full_registration(self.spool)
        # First login with the previous window's code, then the current one: both fine.
        self.assertEqual(c.login(step_offset=-1).status, 200)
        second = time.time()
        self.assertEqual(c.login(now=second).status, 200)
        # The same code again (a replay; its step is still the current or the previous one even
        # when a 30 s boundary passed in between): refused.
        r = c.login(now=second)
        self.assertEqual(r.status, 401)
        replay_body = r.json()
        # Wrong password, and an unknown account: the same reply.
        wrong_pw = c.login(step_offset=0, pw_hash="d3JvbmcgcGFzc3dvcmQgaGFzaCB2YWx1ZQ==")
        self.assertEqual(wrong_pw.status, 401)
        ghost = Client(self.d)
        ghost.seed = c.seed
        ghost.login_href = "/account/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/login"
        ch = ghost.req("GET", ghost.login_href)
        self.assertEqual(ch.status, 200)
        self.assertEqual(set(ch.json()), {"challengeHashConfig", "passwordHashConfig"})
        self.assertEqual(ch.json()["passwordHashConfig"]["salt"],
                         ghost.req("GET", ghost.login_href).json()["passwordHashConfig"]["salt"])
        unknown = ghost.login()
        self.assertEqual(unknown.status, 401)
        for r in (wrong_pw, unknown):
            self.assertEqual({k: v for k, v in r.json().items() if k != "logref"},
                             {k: v for k, v in replay_body.items() if k != "logref"})

    def test_challenge_is_single_use_and_expires(self):
        c = Client(self.d, address="challenge@example.com")
        c.full_registration(self.spool)
        ch = c.req("GET", c.login_href).json()
        h = challenge_hash(c.pw_hash, ch["challengeHashConfig"])
        ok = c.req("POST", c.login_href, {"challengeHash": h, "mfa": {"totp": totp(c.seed, time.time(), -1)}})
        self.assertEqual(ok.status, 200)
        again = c.req("POST", c.login_href, {"challengeHash": h, "mfa": {"totp": totp(c.seed, time.time())}})
        self.assertEqual(again.status, 401)
        # An expired challenge (lifetime 10 s in this daemon).
        ch = c.req("GET", c.login_href).json()
        time.sleep(11)
        h = challenge_hash(c.pw_hash, ch["challengeHashConfig"])
        late = c.req("POST", c.login_href, {"challengeHash": h, "mfa": {"totp": totp(c.seed, time.time())}})
        self.assertEqual(late.status, 401)

    def test_repeated_failures_are_rate_limited(self):
        c = Client(self.d, address="brute@example.com")
        c.full_registration(self.spool)
        statuses = [c.login(pw_hash="YnJ1dGUgZm9yY2UgcGFzc3dvcmQgaGFzaA==").status for _ in range(5)]
        self.assertEqual(statuses[:3], [401, 401, 401])
        self.assertIn(429, statuses[3:])
        r = c.req("POST", c.login_href, {"challengeHash": "0" * 128, "mfa": {"totp": "000000"}})
        self.assertEqual(r.status, 429)
        self.assertIsNotNone(r.header("Retry-After"))
        # Even the right password is refused while locked.
        self.assertEqual(c.login().status, 429)

    def test_bad_request_bodies_are_rejected_with_the_error_shape(self):
        cases = [
            ('{"email": "a@example.com"', "application/json", 400),          # malformed
            ('{"email": "a@example.com", "admin": true}', "application/json", 400),  # unknown field
            ('{"email": "a@example.com", "email": "b@example.com"}', "application/json", 400),  # duplicate
            ('{"email": "not-an-address"}', "application/json", 400),
            ('{"email": 5}', "application/json", 400),
            ('{}', "application/json", 400),
            ('[]', "application/json", 400),
            ('{"email": "a@example.com"}', "text/plain", 415),
            ('{"email": "a@example.com"}', "application/x-www-form-urlencoded", 415),
            ('{"email": "' + "a" * 300 + '@example.com"}', "application/json", 400),
        ]
        for body, ctype, status in cases:
            r = self.d.request("POST", "/registration", body=body, headers={"Content-Type": ctype})
            self.assertEqual(r.status, status, body[:60])
            self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
            self.assertNotIn(b"a@example.com", r.body)
        r = self.d.request("POST", "/registration", body="{" + '"email":"a@example.com",' * 5000 + "}",
                           headers={"Content-Type": "application/json"})
        self.assertIn(r.status, (400, 413))

    def test_unknown_registration_and_session_answers(self):
        self.assertEqual(self.d.request("GET", "/registration/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").status, 404)
        self.assertEqual(self.d.request("GET", "/registration/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/qr").status, 404)
        r = self.d.request("GET", "/account/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                           headers={"Cookie": "login=BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"})
        self.assertEqual(r.status, 401)
        self.assertEqual(self.d.request("GET", "/account/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").status, 401)

    def test_store_holds_no_email_or_password_hash_in_clear(self):
        c = Client(self.d, address="secret-address-1234@example.com")
        c.full_registration(self.spool)
        self.assertEqual(c.login().status, 200)
        seed_hex = c.seed.hex().encode()
        for path in glob.glob(os.path.join(self.d.dir, "data", "*")):
            with open(path, "rb") as f:
                data = f.read()
            self.assertNotIn(b"secret-address-1234", data)
            self.assertNotIn(c.pw_hash.encode(), data)
            self.assertNotIn(c.seed, data)
            self.assertNotIn(seed_hex, data)
            self.assertNotIn(c.account_id.encode(), data)
            self.assertNotIn(c.cookie.encode(), data)
        log = self.d.read_log()
        self.assertNotIn("secret-address-1234", log)
        self.assertNotIn(c.pw_hash, log)
        self.assertNotIn(c.cookie, log)


if __name__ == "__main__":
    unittest.main()
