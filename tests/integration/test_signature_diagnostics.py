"""Issue 17 part 3: the 401 of an OT1-signed route says which check failed, one message per check,
in the vnd.error shape, without anything secret; on a signature mismatch the debug log holds the
SHA-256 of the canonical request the server computed, so a client author can compare it with
theirs. Part 2 (server side): X-OpenToken-Date takes the RFC 3339 forms common libraries print
(JavaScript's toISOString() with milliseconds, Python's isoformat(), numeric offsets)."""

import datetime
import hashlib
import hmac
import json
import os
import time
import unittest

import harness
import opentoken_client as oc

MANDATORY = ("host", "content-type", "x-opentoken-date")
SIGNATURE_MISMATCH = ("signature mismatch: the HMAC-SHA256 of the canonical request the server "
                      "built with this access code's secret differs (see /signature-information "
                      "for the canonical request)")
NOT_RFC3339 = ("X-OpenToken-Date is not an RFC 3339 date-time (yyyy-mm-ddThh:mm:ss[.fraction] then "
               "Z or +hh:mm/-hh:mm, e.g. 2026-12-06T08:00:00Z or 2026-12-06T08:00:00.123Z)")


def without(name):
    return lambda h, b: ({k: v for k, v in h.items() if k.lower() != name}, b)


class SignatureDiagnosticsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon(extra_config={"log_level": "debug"})
        cls.d.start()
        spool = os.path.join(cls.d.dir, "mail")
        cls.user = oc.logged_in_user(cls.d, spool, "diag-user@example.com")
        cls.code, cls.secret = cls.new_code()
        cls.signer = oc.Signer(cls.d, cls.code, cls.secret)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    @classmethod
    def new_code(cls):
        r = cls.user.req("POST", f"/account/{cls.user.account_id}/accessCode")
        assert r.status == 201, r.body
        return r.json()["code"], r.json()["secret"]

    def token_path(self):
        return f"/account/{self.user.account_id}/token"

    def assert_refused(self, r, message, prefix=False):
        """A signed route's 401: vnd.error naming the failed check, the scheme, the help link."""
        self.assertEqual(r.status, 401, r.body)
        self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
        self.assertEqual(r.header("WWW-Authenticate"), "OT1-HMAC-SHA256-HEX")
        oc.find_link(r, rel="related", title="signature-information")
        body = r.json()
        self.assertEqual(set(body), {"code", "logref", "message"})
        self.assertEqual(body["code"], "unauthorized")
        if prefix:
            self.assertTrue(body["message"].startswith(message), body["message"])
        else:
            self.assertEqual(body["message"], message)
        # Never the secret nor the signature the server expected.
        self.assertNotIn(self.secret, r.body.decode())
        return body

    def debug_lines(self, request_id):
        return [l for l in (json.loads(x) for x in self.d.read_log().splitlines() if x.strip())
                if l.get("event") == "signature_rejected_reason"
                and l.get("request_id") == request_id]

    # --- the Authorization header ----------------------------------------------------------------
    def test_no_authorization_header(self):
        r = self.signer.request("POST", self.token_path(), body=b"x",
                                tamper=without("authorization"))
        self.assert_refused(
            r, "no Authorization header: this request must be signed (OT1-HMAC-SHA256-HEX)")

    def test_two_authorization_headers(self):
        h = oc.ot1_sign("POST", self.token_path(),
                        {"Host": "localhost", "Content-Type": "text/plain",
                         "X-OpenToken-Date": oc.ot1_date()}, b"x", self.code, self.secret)
        head = "".join(f"{k}: {v}\r\n" for k, v in h.items())
        raw = (f"POST {self.token_path()} HTTP/1.1\r\n{head}Authorization: {h['Authorization']}\r\n"
               "Content-Length: 1\r\nConnection: close\r\n\r\nx").encode()
        data, _ = self.d.raw(raw)
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head_bytes.startswith(b"HTTP/1.1 401"), head_bytes)
        self.assertEqual(json.loads(body)["message"],
                         "malformed Authorization header: send exactly one Authorization header")

    def test_malformed_authorization_headers(self):
        sig = "0" * 64
        cases = {
            f"OT1-HMAC-SHA1-HEX; access-code={self.code}; signed-headers=host; signature={sig}":
                "malformed Authorization header: the scheme must be OT1-HMAC-SHA256-HEX",
            f"OT1-HMAC-SHA256-HEX; access-code={self.code}; "
            f"signed-headers={' '.join(MANDATORY)}; signature={sig.upper()[:-1]}G":
                "malformed Authorization header: signature is not 64 lower-case hex digits",
            f"OT1-HMAC-SHA256-HEX; access-code={self.code}; signature={sig}":
                "malformed Authorization header: no signed-headers parameter",
            f"OT1-HMAC-SHA256-HEX; access-code={self.code}; "
            f"signed-headers={' '.join(MANDATORY)}; signature={sig}; extra=1":
                "malformed Authorization header: unknown parameter (access-code, signed-headers "
                "and signature only)",
            f"OT1-HMAC-SHA256-HEX; access-code=\"{self.code}\"; "
            f"signed-headers={' '.join(MANDATORY)}; signature={sig}":
                "malformed Authorization header: access-code is not 1-128 of [A-Za-z0-9_-]",
        }
        for value, message in cases.items():
            with self.subTest(value=value):
                r = self.signer.request("POST", self.token_path(), body=b"x",
                                        tamper=lambda h, b, v=value: (dict(h, Authorization=v), b))
                body = self.assert_refused(r, message)
                self.assertNotIn(self.code, body["message"])  # input is never echoed

    def test_required_header_not_signed(self):
        for missing in MANDATORY:
            with self.subTest(missing=missing):
                signed = tuple(n for n in MANDATORY if n != missing)
                r = self.signer.request("POST", self.token_path(), body=b"x", signed=signed)
                self.assert_refused(
                    r, f"a required header is not signed: {missing} (signed-headers must list "
                       "host, content-type and x-opentoken-date)")

    def test_signed_header_absent_from_the_request(self):
        # The detokenize GET pitfall: Content-Type must be sent because it is signed.
        r = self.signer.request("GET", self.token_path() + "/" + "C" * 32,
                                tamper=without("content-type"))
        self.assert_refused(r, "a signed header is not in the request: content-type")
        # A header the client chose to sign is not named (only the mandatory names are).
        r = self.signer.request("POST", self.token_path(), body=b"x",
                                signed=MANDATORY + ("x-client-thing",),
                                extra={"X-Client-Thing": "1"}, tamper=without("x-client-thing"))
        self.assert_refused(r, "a signed header is not in the request")

    def test_unknown_and_revoked_access_codes(self):
        stranger = oc.Signer(self.d, "A" * 32, "s" * 32)
        r = stranger.request("POST", self.token_path(), body=b"x")
        self.assert_refused(r, "unknown access code")
        code, secret = self.new_code()
        r = self.user.req("DELETE", f"/account/{self.user.account_id}/accessCode/{code}")
        self.assertIn(r.status, (200, 204), r.body)
        r = oc.Signer(self.d, code, secret).request("POST", self.token_path(), body=b"x")
        self.assert_refused(r, "unknown access code")

    # --- the date --------------------------------------------------------------------------------
    def test_date_missing(self):
        r = self.signer.request("POST", self.token_path(), body=b"x",
                                tamper=without("x-opentoken-date"))
        self.assert_refused(r, "X-OpenToken-Date header is missing")

    def test_date_unparsable(self):
        for date in ("Sun, 06 Dec 2026 08:00:00 GMT", "1796544000", "2026-12-06 08:00:00Z",
                     "2026-12-06T08:00:00+0100", "2026-02-30T08:00:00Z"):
            with self.subTest(date=date):
                r = self.signer.request("POST", self.token_path(), body=b"x", date=date)
                self.assert_refused(r, NOT_RFC3339)

    def test_date_outside_the_window(self):
        for offset, side in ((-3600, "past"), (3600, "future")):
            with self.subTest(side=side):
                r = self.signer.request("POST", self.token_path(), body=b"x",
                                        date=oc.ot1_date(time.time() + offset))
                body = self.assert_refused(
                    r, f"X-OpenToken-Date is too far in the {side} (accepted: 300 s behind to 60 s "
                       "ahead of the server's clock, now ", prefix=True)
                self.assertRegex(body["message"], r"now \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$")

    # --- the signature ---------------------------------------------------------------------------
    def test_signature_mismatch_logs_the_canonical_hash_and_nothing_secret(self):
        body = b"card 4111111111111111"
        date = oc.ot1_date()
        headers = {"Host": "localhost", "Content-Type": "text/plain", "X-OpenToken-Date": date}
        canonical = oc.ot1_canonical("POST", self.token_path(), headers, MANDATORY, body)
        expected_sig = hmac.new(self.secret.encode(), canonical, hashlib.sha256).hexdigest()
        # 1. The right canonical request, the wrong secret.
        wrong = oc.Signer(self.d, self.code, "w" * 32)
        r = wrong.request("POST", self.token_path(), body=body, date=date)
        self.assert_refused(r, SIGNATURE_MISMATCH)
        self.assertNotIn(expected_sig, r.body.decode())
        lines = self.debug_lines(r.header("X-Request-Id"))
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["level"], "debug")
        self.assertEqual(lines[0]["reason"], SIGNATURE_MISMATCH)
        self.assertEqual(lines[0]["canonical_sha256"], hashlib.sha256(canonical).hexdigest())
        # 2. The right secret over a canonical request the server does not build (a client that
        # forgot the query string): the log shows the hash of the server's, not the client's.
        target = self.token_path() + "?public=true"
        bad = oc.ot1_sign("POST", self.token_path(), headers, body, self.code, self.secret)
        r = self.d.request("POST", target, body=body, headers=bad)
        self.assert_refused(r, SIGNATURE_MISMATCH)
        lines = self.debug_lines(r.header("X-Request-Id"))
        server = oc.ot1_canonical("POST", target, headers, MANDATORY, body)
        self.assertEqual(lines[0]["canonical_sha256"], hashlib.sha256(server).hexdigest())
        self.assertNotEqual(lines[0]["canonical_sha256"], hashlib.sha256(canonical).hexdigest())
        # Neither the secret, the expected signature nor the body is in the log.
        log = self.d.read_log()
        for secret in (self.secret, expected_sig, body.decode(), canonical.decode()):
            self.assertNotIn(secret, log)

    def test_a_good_signature_still_passes(self):
        r = self.signer.request("POST", self.token_path(), body=b"ok")
        self.assertEqual(r.status, 201, r.body)

    def test_unsigned_get_of_a_private_token_says_to_sign(self):
        r = self.signer.request("POST", self.token_path(), body=b"private")
        self.assertEqual(r.status, 201, r.body)
        r = self.d.request("GET", r.header("Location"))
        msg = ("no Authorization header: this token is not public (or does not exist); sign the "
               "request (OT1-HMAC-SHA256-HEX)")
        self.assert_refused(r, msg)
        r = self.d.request("GET", self.token_path() + "/" + "C" * 32)
        self.assert_refused(r, msg)  # unknown and private look alike


class DateFormsTest(unittest.TestCase):
    """Issue 17 part 2: what common libraries print is a valid X-OpenToken-Date."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.start()
        spool = os.path.join(cls.d.dir, "mail")
        cls.user = oc.logged_in_user(cls.d, spool, "dates-user@example.com")
        r = cls.user.req("POST", f"/account/{cls.user.account_id}/accessCode")
        assert r.status == 201, r.body
        cls.signer = oc.Signer(cls.d, r.json()["code"], r.json()["secret"])

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def test_library_date_forms_sign_a_tokenize_and_a_detokenize(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        plus_one = datetime.timezone(datetime.timedelta(hours=1))
        forms = {
            # JavaScript: new Date().toISOString()
            "toISOString": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "python isoformat": now.isoformat(),  # 2026-12-06T08:00:00.123456+00:00
            "numeric offset": now.astimezone(plus_one).replace(microsecond=0).isoformat(),
            "RFC3339Nano": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}001Z",
        }
        path = f"/account/{self.user.account_id}/token"
        for name, date in forms.items():
            with self.subTest(form=name, date=date):
                r = self.signer.request("POST", path, body=name.encode(), date=date)
                self.assertEqual(r.status, 201, r.body)
                r = self.signer.request("GET", r.header("Location"), date=date)
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.body, name.encode())


if __name__ == "__main__":
    unittest.main()
