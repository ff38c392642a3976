"""End to end against a real daemon, over its Unix socket and over TLS: register -> confirm
(link read from the mail spool) -> login -> access code -> tokenize -> detokenize (exact bytes)
-> delete -> 404 -> access tokens -> e-mailed token -> logout.

The daemon is started by tests/support/with_daemon.py (see CMakeLists.txt), which exports
OPENTOKEN_TEST_SOCKET, OPENTOKEN_TEST_URL, OPENTOKEN_TEST_CACERT and OPENTOKEN_TEST_MAIL_DIR.
Without them the tests are skipped, unless OPENTOKEN_TEST_REQUIRED=1 (as in ctest): then they
fail."""

import datetime as dt
import email
import email.policy
import glob
import os
import re
import time
import unittest
import unittest.mock

from opentoken import Client, OpenTokenError

PASSWORD = "correct horse battery staple"
ENV = ("OPENTOKEN_TEST_SOCKET", "OPENTOKEN_TEST_URL", "OPENTOKEN_TEST_CACERT",
       "OPENTOKEN_TEST_MAIL_DIR")
TOKEN_RE = r"otk_[A-Za-z0-9_-]{43}"
ID_RE = r"^[A-Za-z0-9_-]{32}$"


def mails_to(spool, address, word):
    out = []
    for path in sorted(glob.glob(os.path.join(spool, "*.eml"))):
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        if msg["To"] == address and word in msg["Subject"]:
            out.append(msg.get_body(preferencelist=("plain",)).get_content())
    return out


def wait_mail(spool, address, word, count=1, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = mails_to(spool, address, word)
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"no mail #{count} with {word!r} to {address}")


class JourneyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [k for k in ENV if not os.environ.get(k)]
        if missing:
            if os.environ.get("OPENTOKEN_TEST_REQUIRED") == "1":
                raise AssertionError(f"not set: {missing} (run through with_daemon.py)")
            raise unittest.SkipTest("no daemon: run through tests/support/with_daemon.py")
        cls.socket = os.environ["OPENTOKEN_TEST_SOCKET"]
        cls.url = os.environ["OPENTOKEN_TEST_URL"]
        cls.cacert = os.environ["OPENTOKEN_TEST_CACERT"]
        cls.spool = os.environ["OPENTOKEN_TEST_MAIL_DIR"]

    def client(self, transport, **kw):
        if transport == "unix":
            return Client(socket_path=self.socket, timeout=20, **kw)
        return Client(self.url, cafile=self.cacert, timeout=20, **kw)

    def assertRefused(self, status, code, fn, *args, **kw):
        with self.assertRaises(OpenTokenError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.status, status, cm.exception.body)
        self.assertEqual(cm.exception.code, code, cm.exception.body)
        return cm.exception

    # --- the journey, once per transport ---------------------------------------------------
    def journey(self, transport, address):
        c = self.client(transport)
        self.assertEqual(c.health(), {"status": "healthy"})

        reg = c.register(address, PASSWORD)
        self.assertRegex(reg.id, ID_RE)
        self.assertEqual(len(reg.totp_key), 20)
        self.assertNotIn(reg.totp_key_base32, repr(reg))
        self.assertNotIn(reg.totp_key.hex(), repr(reg))
        self.assertEqual(c.registration_qr(reg)[:8], b"\x89PNG\r\n\x1a\n")
        link = re.search(r"https?://\S+/registration/\S+/confirm/[A-Za-z0-9_-]+",
                         wait_mail(self.spool, address, "onfirm")).group(0)
        account_id = c.confirm(link)
        self.assertRegex(account_id, ID_RE)
        self.assertRefused(404, "not-found", c.confirm, link)  # a link works once

        # The TOTP key as bytes over one transport, as base32 text over the other.
        key = reg.totp_key if transport == "unix" else reg.totp_key_base32
        session = c.login(PASSWORD, key)
        self.assertEqual(session.account_id, account_id)
        self.assertNotIn(session.session_id, repr(session))
        self.assertEqual(c.whoami(), {"accountId": account_id, "email": address})

        # Access codes: the secret once, never listed.
        pair = c.create_access_code("journey " + transport)
        self.assertRegex(pair.code, ID_RE)
        self.assertRegex(pair.secret, ID_RE)
        self.assertNotIn(pair.secret, repr(pair))
        listed = c.list_access_codes()
        self.assertEqual([(p.code, p.description, p.secret) for p in listed],
                         [(pair.code, "journey " + transport, None)])
        c.use_access_code(pair)

        # Tokenize / detokenize: exact bytes and content type.
        payload = bytes(range(256)) + b"\r\n\x00 end \n"
        tid = c.tokenize(payload, "application/octet-stream")
        self.assertRegex(tid, ID_RE)
        d = c.detokenize(tid)
        self.assertEqual(d.data, payload)
        self.assertEqual(d.content_type, "application/octet-stream")
        self.assertTrue(d.etag)
        # An expiry in another form than the server's (toISOString() style with an offset).
        soon = (dt.datetime.now(dt.timezone(dt.timedelta(hours=2))) + dt.timedelta(hours=1))
        text_id = c.tokenize(b"This is a test.\n", "text/plain; charset=utf-8",
                             expires=soon.isoformat(timespec="milliseconds"))
        d = c.detokenize(text_id)
        self.assertEqual((d.data, d.content_type),
                         (b"This is a test.\n", "text/plain; charset=utf-8"))
        empty_id = c.tokenize(b"", "text/plain")
        self.assertEqual(c.detokenize(empty_id).data, b"")
        # Public tokens read without credentials; private ones do not.
        anonymous = self.client(transport, account_id=account_id)
        pub_id = c.tokenize(b'{"public": true}', "application/json", public=True)
        d = anonymous.detokenize(pub_id, signed=False)
        self.assertEqual((d.data, d.content_type), (b'{"public": true}', "application/json"))
        self.assertRefused(401, "unauthorized", anonymous.detokenize, tid, signed=False)
        self.assertRefused(401, "unauthorized", anonymous.detokenize, tid, signed=False)

        # Delete, then 404 (and 404 again).
        c.delete(tid)
        e = self.assertRefused(404, "not-found", c.detokenize, tid)
        self.assertEqual(e.shape, "vnd.error")
        self.assertTrue(e.logref)
        self.assertRefused(404, "not-found", c.delete, tid)
        self.assertEqual(c.detokenize(text_id).data, b"This is a test.\n")  # others untouched

        # Signature failures: a wrong secret, then a revoked pair.
        forged = self.client(transport, account_id=account_id, access_code=pair.code,
                             secret="x" * 32)
        e = self.assertRefused(401, "unauthorized", forged.tokenize, b"x", "text/plain")
        self.assertEqual(e.shape, "vnd.error")
        self.assertNotIn(pair.secret, str(e))

        # Access tokens (/access-tokens): create, list, get, update, use as bearer, delete.
        tomorrow = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        t = c.create_access_token("ci " + transport, expiration_date=tomorrow,
                                  scope=["account.read", "accessTokens.read", "tokens.create"],
                                  description="from the journey")
        self.assertRegex(t["token"], "^" + TOKEN_RE + "$")
        self.assertEqual(t["scope"], ["account.read", "accessTokens.read", "tokens.create"])
        self.assertEqual(t["expirationDate"], tomorrow.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        ids = [i["id"] for i in c.list_access_tokens()]
        self.assertIn(t["id"], ids)
        self.assertNotIn("token", c.get_access_token(t["id"]))
        self.assertEqual(c.get_access_token(t["id"])["name"], "ci " + transport)
        u = c.update_access_token(t["id"], name="renamed", status="inactive")
        self.assertEqual((u["name"], u["status"]), ("renamed", "inactive"))
        bearer = self.client(transport, account_id=account_id, bearer_token=t["token"])
        self.assertRefused(401, "Unauthorized", bearer.list_access_tokens)  # inactive
        c.update_access_token(t["id"], status="active")
        self.assertIn(t["id"], [i["id"] for i in bearer.list_access_tokens()])
        self.assertEqual(bearer.whoami()["email"], address)
        bearer_id = bearer.tokenize(b"via bearer", "text/plain")
        self.assertEqual(c.detokenize(bearer_id).data, b"via bearer")
        self.assertRefused(403, "forbidden", bearer.create_access_code)  # no accessCodes.create
        self.assertRefused(403, "Forbidden", bearer.create_access_token, "wider",
                           scope=["accessTokens.create"])
        c.delete_access_token(t["id"])
        e = self.assertRefused(404, "NotFound", c.get_access_token, t["id"])
        self.assertEqual(e.shape, "access-tokens")
        self.assertRefused(401, "Unauthorized", bearer.list_access_tokens)

        # Revoking the pair stops its signatures.
        c.revoke_access_code(pair.code)
        self.assertEqual(c.list_access_codes(), [])
        self.assertRefused(401, "unauthorized", c.detokenize, text_id)
        self.assertRefused(404, "not-found", c.revoke_access_code, pair.code)
        return c, account_id, session

    def logout_and_check(self, c, account_id, session):
        c.logout()
        self.assertFalse(c.logged_in)
        # The old cookie no longer works.
        r = c.request("GET", f"/account/{account_id}", headers={"Cookie": "login=" +
                                                                 session.session_id})
        self.assertEqual(r.status, 401)
        with self.assertRaises(ValueError):
            c.whoami()  # no credentials left in the client

    def test_journey_over_the_unix_socket(self):
        c, account_id, session = self.journey("unix", "py-unix@example.com")
        self.logout_and_check(c, account_id, session)

    def test_journey_over_tls(self):
        c, account_id, session = self.journey("tls", "py-tls@example.com")
        self.assertEqual(c.transport.host, self.url.split("://", 1)[1])  # 127.0.0.1:PORT
        self.logout_and_check(c, account_id, session)

    def test_access_token_by_email_and_its_revocation(self):
        address = "py-mail@example.com"
        c = self.client("unix")
        reg = c.register(address, PASSWORD)
        code = re.search(r"/confirm/([A-Za-z0-9_-]+)",
                         wait_mail(self.spool, address, "onfirm")).group(1)
        account_id = c.confirm(code, reg)  # the bare code works too
        c.request_access_token_by_email(address)
        token = re.search(TOKEN_RE, wait_mail(self.spool, address, "Your opentokend")).group(0)
        bearer = self.client("tls", account_id=account_id, bearer_token=token)
        self.assertEqual(bearer.whoami()["email"], address)
        self.assertEqual(len(bearer.list_access_tokens()), 1)
        c.request_access_token_deletion_code(address)
        mail = wait_mail(self.spool, address, "Revoke")
        deletion_code = re.search(r"\n([A-Za-z0-9_-]{32})\r?\n", mail).group(1)
        e = self.assertRefused(400, "error_access_tokens_invalid", c.delete_emailed_access_tokens,
                               address, "A" * 32)
        self.assertEqual((e.shape, e.message), ("v1", "Invalid or expired code"))
        c.delete_emailed_access_tokens(address, deletion_code)
        self.assertRefused(401, "Unauthorized", bearer.list_access_tokens)


if __name__ == "__main__":
    unittest.main()


class ReadmeTest(unittest.TestCase):
    """The README's first example runs as printed (only the socket path and the typed-in
    confirmation link are supplied)."""

    def test_first_tokenize_detokenize_example(self):
        JourneyTest.setUpClass()
        readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
        with open(readme, encoding="utf-8") as f:
            text = f.read()
        code = re.search(r"## First tokenize / detokenize.*?```python\n(.*?)```", text,
                         re.S).group(1)
        self.assertLessEqual(len(code.strip().splitlines()), 10)
        code = code.replace('"var/run/opentokend.sock"', repr(JourneyTest.socket))
        typed = []

        def fake_input(prompt):
            link = re.search(r"https?://\S+/confirm/[A-Za-z0-9_-]+",
                             wait_mail(JourneyTest.spool, "me@example.com", "onfirm")).group(0)
            typed.append(prompt)
            return link

        printed = []
        scope = {"input": fake_input, "print": lambda *a: printed.append(a)}
        with unittest.mock.patch("getpass.getpass", return_value="a README password"):
            exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
        self.assertEqual(len(typed), 1)
        token_id, data = printed[0]
        pair = scope["pair"]
        self.assertRegex(pair.secret, ID_RE)
        self.assertRegex(token_id, ID_RE)
        self.assertEqual(data, b"4111 1111 1111 1111")
