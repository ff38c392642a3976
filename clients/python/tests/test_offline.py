"""Offline tests: the documented OT1 vector byte for byte, PBKDF2 / TOTP / challenge-hash known
answers, date forms, Link parsing and the three error shapes. No daemon needed."""

import base64
import datetime as dt
import hashlib
import unittest

from opentoken import (OpenTokenError, TotpParameters, authorization, canonical_string,
                       challenge_hash, format_date, parse_links, parse_rfc3339, password_hash,
                       sign, signature, to_utc, totp, totp_key)
from opentoken.transport import expand

# doc/api/signed-requests.md, "Here's the same signing content shown as a hex dump", verbatim.
DOC_HEX_DUMP = """
00000000  50 4f 53 54 0a 2f 61 63  63 6f 75 6e 74 2f 57 32  |POST./account/W2|
00000010  6c 36 48 30 76 45 68 64  75 72 72 68 53 44 4e 34  |l6H0vEhdurrhSDN4|
00000020  56 6a 56 32 42 6c 67 53  49 43 70 76 45 48 2f 74  |VjV2BlgSICpvEH/t|
00000030  6f 6b 65 6e 0a 0a 68 6f  73 74 3a 61 70 69 2e 6f  |oken..host:api.o|
00000040  70 65 6e 74 6f 6b 65 6e  2e 69 6f 0a 63 6f 6e 74  |pentoken.io.cont|
00000050  65 6e 74 2d 74 79 70 65  3a 74 65 78 74 2f 70 6c  |ent-type:text/pl|
00000060  61 69 6e 0a 78 2d 6f 70  65 6e 74 6f 6b 65 6e 2d  |ain.x-opentoken-|
00000070  64 61 74 65 3a 32 30 31  36 2d 31 31 2d 31 37 54  |date:2016-11-17T|
00000080  32 30 3a 30 31 3a 30 30  5a 0a 0a 54 68 69 73 20  |20:01:00Z..This |
00000090  69 73 20 61 20 74 65 73  74 2e 0a                 |is a test..|
0000009b
"""
DOC_SECRET = "GR6ytMoj1IGxAoBUmYKbVM9z5fZBduUi"
DOC_CODE = "LTyPtAMrYarpdgPxHnIB-aXb5BXIxnf8"
DOC_SIGNATURE = "fc16d5946385ba3f3e65d944f8d519008421681d9f6029698666abc90e52af5e"
DOC_TARGET = "/account/W2l6H0vEhdurrhSDN4VjV2BlgSICpvEH/token"
DOC_DATE = "2016-11-17T20:01:00Z"  # the dump's date (the prose says 19:53:23: docs/api-notes.md)
MANDATORY = "host content-type x-opentoken-date"


def dump_bytes(dump):
    out = bytearray()
    lines = [l for l in dump.strip().splitlines()]
    for line in lines[:-1]:
        hex_part = line[10:58]
        out += bytes.fromhex(hex_part.replace(" ", ""))
    assert int(lines[-1], 16) == len(out)
    return bytes(out)


class SignatureVectorTest(unittest.TestCase):
    def doc_headers(self):
        return {"Host": "api.opentoken.io", "Content-Type": "text/plain",
                "X-OpenToken-Date": DOC_DATE}

    def test_canonical_string_is_the_documented_hex_dump_byte_for_byte(self):
        expected = dump_bytes(DOC_HEX_DUMP)
        self.assertEqual(len(expected), 0x9b)
        got = canonical_string("POST", DOC_TARGET, self.doc_headers(),
                               MANDATORY.split(), b"This is a test.\n")
        self.assertEqual(got, expected)

    def test_signature_is_the_documented_one(self):
        canonical = dump_bytes(DOC_HEX_DUMP)
        self.assertEqual(signature(canonical, DOC_SECRET), DOC_SIGNATURE)
        self.assertEqual(signature(canonical, DOC_SECRET.encode()), DOC_SIGNATURE)

    def test_sign_produces_the_documented_authorization_header(self):
        h = sign("POST", DOC_TARGET, {"Host": "api.opentoken.io", "Content-Type": "text/plain"},
                 b"This is a test.\n", DOC_CODE, DOC_SECRET,
                 date=dt.datetime(2016, 11, 17, 20, 1, 0, tzinfo=dt.timezone.utc))
        self.assertEqual(h["X-OpenToken-Date"], DOC_DATE)
        self.assertEqual(h["Authorization"],
                         "OT1-HMAC-SHA256-HEX; access-code=LTyPtAMrYarpdgPxHnIB-aXb5BXIxnf8; "
                         "signed-headers=host content-type x-opentoken-date; "
                         "signature=" + DOC_SIGNATURE)
        self.assertEqual(h["Host"], "api.opentoken.io")
        self.assertEqual(h["Content-Type"], "text/plain")
        self.assertEqual(set(h), {"Host", "Content-Type", "X-OpenToken-Date", "Authorization"})

    def test_a_date_already_in_the_headers_is_kept_and_any_date_form_is_normalised(self):
        h = sign("POST", DOC_TARGET, self.doc_headers(), b"This is a test.\n", DOC_CODE,
                 DOC_SECRET)
        self.assertTrue(h["Authorization"].endswith(DOC_SIGNATURE))
        # A toISOString() date with an offset: the same instant, sent at second precision.
        for form in ("2016-11-17T20:01:00.999Z", "2016-11-17T21:01:00+01:00",
                     "2016-11-17t20:01:00z", 1479412860, 1479412860.75):
            h = sign("POST", DOC_TARGET, {"host": "API.OpenToken.io  ",
                                          "content-type": " text/plain"},
                     b"This is a test.\n", DOC_CODE, DOC_SECRET, date=form)
            self.assertEqual(h["X-OpenToken-Date"], DOC_DATE, form)
            self.assertTrue(h["Authorization"].endswith("signature=" + DOC_SIGNATURE), form)

    def test_get_without_body_ends_with_two_newlines_and_query_is_its_own_line(self):
        c = canonical_string("GET", "/account/a/token/t?public=true&x=%2F",
                             {"Host": "localhost", "Content-Type": "text/plain",
                              "X-OpenToken-Date": DOC_DATE}, MANDATORY.split())
        self.assertEqual(c, b"GET\n/account/a/token/t\npublic=true&x=%2F\nhost:localhost\n"
                            b"content-type:text/plain\nx-opentoken-date:" + DOC_DATE.encode()
                         + b"\n\n")

    def test_tls_host_with_port_is_signed_as_sent(self):
        h = sign("GET", "/x", {"Host": "127.0.0.1:8443", "Content-Type": "a/b"}, b"", "c", "s",
                 date=DOC_DATE)
        canonical = canonical_string("GET", "/x", h, MANDATORY.split())
        self.assertIn(b"\nhost:127.0.0.1:8443\n", canonical)
        self.assertTrue(h["Authorization"].endswith(signature(canonical, "s")))

    def test_extra_signed_headers_in_the_given_order(self):
        h = sign("POST", "/t", {"Host": "h", "Content-Type": "a/b", "X-Extra": " v "}, b"b",
                 "code", "secret", date=DOC_DATE,
                 signed_headers=("x-extra", "host", "content-type", "x-opentoken-date"))
        self.assertIn("signed-headers=x-extra host content-type x-opentoken-date;",
                      h["Authorization"])
        c = canonical_string("POST", "/t", h, ["x-extra", "host", "content-type",
                                               "x-opentoken-date"], b"b")
        self.assertEqual(c, b"POST\n/t\n\nx-extra:v\nhost:h\ncontent-type:a/b\n"
                            b"x-opentoken-date:2016-11-17T20:01:00Z\n\nb")
        self.assertEqual(authorization("code", ["host"], "ab"),
                         "OT1-HMAC-SHA256-HEX; access-code=code; signed-headers=host; "
                         "signature=ab")

    def test_what_the_server_would_refuse_is_refused_here(self):
        base = {"Host": "h", "Content-Type": "a/b"}
        bad = [
            dict(method="post"),
            dict(target="account/x"),
            dict(target="/a b"),
            dict(headers={"Host": "h"}),
            dict(headers={"Host": "h", "Content-Type": "a/b\r\nX-Evil: 1"}),
            dict(headers={"Host": "h", "host": "i", "Content-Type": "a/b"}),
            dict(signed_headers=("host", "content-type")),
            dict(signed_headers=("host", "host", "content-type", "x-opentoken-date")),
            dict(access_code="a;b"),
        ]
        for case in bad:
            args = dict(method="POST", target="/t", headers=base, body=b"", access_code="c",
                        secret="s", date=DOC_DATE)
            args.update(case)
            with self.assertRaises(ValueError, msg=str(case)):
                sign(**args)


class DateTest(unittest.TestCase):
    def test_every_rfc3339_form_the_server_accepts(self):
        want = dt.datetime(2016, 11, 17, 19, 53, 23, tzinfo=dt.timezone.utc)
        for text in ("2016-11-17T19:53:23Z", "2016-11-17T19:53:23.123Z",
                     "2016-11-17t19:53:23.123456789z", "2016-11-17T21:53:23+02:00",
                     "2016-11-17T19:53:23.5-00:00", "2016-11-17T14:23:23-05:30"):
            self.assertEqual(parse_rfc3339(text), want, text)
            self.assertEqual(format_date(text), "2016-11-17T19:53:23Z", text)
        self.assertEqual(format_date("2016-12-31T23:59:60Z"), "2016-12-31T23:59:59Z")
        self.assertEqual(format_date("2016-11-18T00:30:00+01:00"), "2016-11-17T23:30:00Z")

    def test_forms_that_are_not_rfc3339_are_refused(self):
        for text in ("2016-11-17", "2016-11-17 19:53:23Z", "2016-11-17T19:53:23",
                     "2016-11-17T19:53Z", "2016-02-30T00:00:00Z", "2016-11-17T24:00:00Z",
                     "2016-11-17T19:53:23+2:00", "2016-11-17T19:53:23+24:00",
                     "2016-11-17T19:53:23.Z", "20161117T195323Z", "٢٠١٦-11-17T19:53:23Z", ""):
            with self.assertRaises(ValueError, msg=text):
                parse_rfc3339(text)

    def test_datetimes_and_unix_times(self):
        cet = dt.timezone(dt.timedelta(hours=1))
        self.assertEqual(format_date(dt.datetime(2016, 11, 17, 20, 53, 23, 999999, tzinfo=cet)),
                         "2016-11-17T19:53:23Z")
        self.assertEqual(format_date(1479412403), "2016-11-17T19:53:23Z")
        self.assertEqual(format_date(1479412403.999), "2016-11-17T19:53:23Z")
        self.assertEqual(format_date(0), "1970-01-01T00:00:00Z")
        with self.assertRaises(ValueError):
            to_utc(dt.datetime(2016, 11, 17, 19, 53, 23))  # naive: local or UTC? refused
        with self.assertRaises(TypeError):
            to_utc(True)
        now = format_date()
        self.assertRegex(now, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class AccountHelpersTest(unittest.TestCase):
    # PBKDF2-HMAC-SHA512 ("password", "salt"): the vectors crypto/hash_test.cc also checks.
    VECTORS = {
        1: "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252"
           "c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce",
        2: "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c"
           "f76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e",
        4096: "d197b1b33db0143e018b12f3d1d1479e6cdebdcc97c5c0f87f6902e072f457b5"
              "143f30602641b3d55cd335988cb36b84376060ecd532e039b742a239434af2d5",
    }

    def config(self, iterations, length=64, encoding="base64"):
        return {"type": "pbkdf2", "algorithm": "sha512", "iterations": iterations,
                "derivedLength": length, "salt": "salt", "encoding": encoding}

    def test_password_hash_known_answers(self):
        for iterations, hex_ in self.VECTORS.items():
            self.assertEqual(password_hash("password", self.config(iterations)),
                             base64.b64encode(bytes.fromhex(hex_)).decode())
            self.assertEqual(password_hash("password", self.config(iterations, 64, "hex")), hex_)
        # The server's derivedLength 48: the first 48 bytes of the same stream.
        self.assertEqual(password_hash("password", self.config(1, 48)),
                         base64.b64encode(bytes.fromhex(self.VECTORS[1])[:48]).decode())

    def test_password_hash_refuses_what_it_does_not_know(self):
        for change in ({"type": "scrypt"}, {"algorithm": "md5"}, {"encoding": "rot13"},
                       {"iterations": 0}):
            cfg = self.config(1)
            cfg.update(change)
            with self.assertRaises(ValueError, msg=str(change)):
                password_hash("password", cfg)

    def test_challenge_hash_known_answer(self):
        # SHA-512("abc") (FIPS 180-2 appendix C.1) = challenge hash of "ab" with salt "c".
        abc = ("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
               "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
        self.assertEqual(challenge_hash("ab", {"algorithm": "sha512", "encoding": "hex",
                                               "salt": "c"}), abc)

    def test_totp_rfc6238_appendix_b(self):
        sha1 = b"12345678901234567890"
        sha256 = b"12345678901234567890123456789012"
        sha512 = b"1234567890123456789012345678901234567890123456789012345678901234"
        table = [  # time, SHA-1, SHA-256, SHA-512 (8 digits)
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ]
        for t, c1, c256, c512 in table:
            self.assertEqual(totp(sha1, t, params=TotpParameters(30, 8, "sha1")), c1)
            self.assertEqual(totp(sha256, t, params=TotpParameters(30, 8, "sha256")), c256)
            self.assertEqual(totp(sha512, t, params=TotpParameters(30, 8, "sha512")), c512)
            self.assertEqual(totp(sha1, t), c1[-6:])  # the server's default: 6 digits
        self.assertEqual(totp(sha1, 59 + 30, step_offset=-1), "287082")

    def test_totp_key_forms_and_uri_parameters(self):
        key = b"12345678901234567890"
        b32 = base64.b32encode(key).decode()
        self.assertEqual(totp_key(b32), key)
        self.assertEqual(totp_key(b32.lower().rstrip("=")), key)
        self.assertEqual(totp_key(" ".join(b32[i:i + 4] for i in range(0, 32, 4))), key)
        with self.assertRaises(ValueError):
            totp_key("not base32!")
        self.assertEqual(totp(b32, 59), "287082")
        p = TotpParameters.from_key_uri(
            "otpauth://totp/opentokend:a%40example.com?secret=X&issuer=opentokend")
        self.assertEqual(p, TotpParameters(30, 6, "sha1"))
        p = TotpParameters.from_key_uri("otpauth://totp/x?secret=X&period=60&digits=8"
                                        "&algorithm=SHA256")
        self.assertEqual(p, TotpParameters(60, 8, "sha256"))


class LinksAndErrorsTest(unittest.TestCase):
    def test_link_headers(self):
        links = parse_links('</account/{accountId}/token{?public}>; rel="service"; '
                            'profile="/schema/account/token-create-request.json"; '
                            'templated="true"; title="account-token-create", </>; rel=self')
        self.assertEqual(len(links), 2)
        self.assertEqual(links[0].href, "/account/{accountId}/token{?public}")
        self.assertEqual(links[0].title, "account-token-create")
        self.assertEqual(links[0].params["templated"], "true")
        self.assertEqual(links[1].rel, "self")
        self.assertEqual(expand(links[0].href, accountId="a/b"), "/account/a%2Fb/token")

    def test_the_three_error_shapes(self):
        e = OpenTokenError(401, b'{"code":"unauthorized","logref":"abc","message":"signature '
                                b'verification failed"}', "application/vnd.error+json",
                           method="GET", path="/account/x/token/y")
        self.assertEqual((e.status, e.shape, e.code, e.logref), (401, "vnd.error", "unauthorized",
                                                                 "abc"))
        self.assertEqual(e.message, "signature verification failed")
        self.assertNotIn("/account/x", str(e))
        self.assertIn("401", str(e))
        e = OpenTokenError(404, b'{"type":"NotFound","message":"no such access token"}')
        self.assertEqual((e.shape, e.code, e.message), ("access-tokens", "NotFound",
                                                        "no such access token"))
        e = OpenTokenError(400, b'{"data":{"id":"error_invalid","type":"errors",'
                                b'"attributes":{"message":"bad"}}}')
        self.assertEqual((e.shape, e.code, e.message), ("v1", "error_invalid", "bad"))
        e = OpenTokenError(502, b"<html>")
        self.assertEqual((e.shape, e.code, e.message), (None, None, None))


if __name__ == "__main__":
    unittest.main()


class ClientValidationTest(unittest.TestCase):
    """What the client refuses before sending anything (no daemon: the transport fails if
    used)."""

    class NoNetwork:
        host = "localhost"
        description = "none"

        def request(self, *a, **kw):
            raise AssertionError("nothing may be sent")

    def client(self, **kw):
        from opentoken import Client
        return Client(transport=self.NoNetwork(), **kw)

    def test_urls_and_the_host_header_they_sign(self):
        from opentoken import Client, Transport
        self.assertEqual(Transport.url("https://127.0.0.1:8443").host, "127.0.0.1:8443")
        self.assertEqual(Transport.url("https://Vault.Example.COM/").host, "vault.example.com")
        self.assertEqual(Transport.url("https://[::1]:8443").host, "[::1]:8443")
        self.assertEqual(Transport.unix("/run/x.sock").host, "localhost")
        for bad in ("ftp://h", "https://", "https://u:p@h", "https://h/api", "https://h?x=1",
                    "127.0.0.1:8443"):
            with self.assertRaises(ValueError, msg=bad):
                Transport.url(bad)
        with self.assertRaises(ValueError):
            Client()
        with self.assertRaises(ValueError):
            Client("https://h", socket_path="/s")
        with self.assertRaises(ValueError):
            Client(socket_path="/s", access_code="c")  # a code without its secret

    def test_ids_that_could_leave_their_path_are_refused_before_any_request(self):
        c = self.client(account_id="acct", access_code="code", secret="s")
        for bad in ("../x", "a/b", "a?b", "", "a b", "%2e%2e"):
            with self.assertRaises(ValueError, msg=bad):
                c.detokenize(bad)
            with self.assertRaises(ValueError, msg=bad):
                c.delete(bad)
            with self.assertRaises(ValueError, msg=bad):
                c.get_access_token(bad)
            with self.assertRaises(ValueError, msg=bad):
                c.revoke_access_code(bad)

    def test_calls_without_credentials_are_refused_locally(self):
        c = self.client()
        with self.assertRaises(ValueError):
            c.whoami()  # no account id
        c = self.client(account_id="acct")
        with self.assertRaises(ValueError):
            c.whoami()  # not logged in, no bearer
        with self.assertRaises(ValueError):
            c.create_access_code()
        with self.assertRaises(ValueError):
            c.login("pw")  # neither a TOTP key nor a code
        c.logout()  # not logged in: nothing to do, nothing sent

    def test_secrets_stay_out_of_reprs(self):
        from opentoken import AccessCode, Detokenized, Session
        self.assertNotIn("S3CRET", repr(AccessCode(code="c", secret="S3CRET")))
        self.assertNotIn("S3CRET", repr(Session("a", "S3CRET")))
        self.assertNotIn("S3CRET", repr(Detokenized(b"S3CRET", "text/plain")))
        c = self.client(account_id="acct", access_code="code", secret="S3CRET",
                        bearer_token="otk_S3CRET")
        self.assertNotIn("S3CRET", repr(c))
