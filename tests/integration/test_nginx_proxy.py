"""Issue 8: opentokend behind a real nginx (Debian package) terminating TLS.

The daemon listens on its Unix socket only. nginx runs in the foreground with
docs/nginx-example.conf rendered into a temp dir (own pid, logs, temp paths, a self-signed
certificate), listening on 127.0.0.1 and proxying to the socket. Everything below goes through
nginx over TLS: registration with the mailed link (public_url = the nginx URL), login, access
codes, OT1-signed tokenize/detokenize/delete. A signature made for another Host fails with 401, and
the same config without `proxy_set_header Host $http_host;` breaks every signature (so the line is
what makes it work).

nginx must be installed (`scripts/install-deps` does it): without it this test fails, it does not
skip.
"""

import glob
import grp
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import Daemon, Reply, SOURCE, free_port
from opentoken_client import Client, Signer, expand, find_link, ot1_date, ot1_sign, wait_for_mail

EXAMPLE = os.path.join(SOURCE, "docs", "nginx-example.conf")
HOST_LINE = "proxy_set_header Host $http_host;"


def nginx_binary():
    for path in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if path and os.access(path, os.X_OK):
            return path
    raise AssertionError("nginx is not installed (Debian package nginx; scripts/install-deps installs it)")


class UnixOnlyDaemon(Daemon):
    """The harness daemon without its TLS listener: TLS is nginx's job here."""

    def config(self):
        c = super().config()
        del c["listen"]["tls"]
        return c


class Nginx:
    """A foreground nginx running the rendered example config from its own temp dir."""

    def __init__(self, socket_path, max_body, port=None, keep_host_line=True):
        self.binary = nginx_binary()
        self.dir = tempfile.mkdtemp(prefix="otd-nginx-")
        self.port = port or free_port()
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(EXAMPLE) as f:
            text = f.read()
        if not keep_host_line:
            assert HOST_LINE in text
            text = text.replace(HOST_LINE, "# (Host line removed by the negative test)")
        values = {
            "USER": _user_name(), "GROUP": _group_name(), "PREFIX": self.dir,
            "LISTEN": f"127.0.0.1:{self.port}", "SERVER_NAME": "localhost",
            "CERTIFICATE": self.cert, "PRIVATE_KEY": self.key, "SOCKET": socket_path,
            "MAX_BODY": str(max_body),
        }
        for k, v in values.items():
            text = text.replace(f"@{k}@", v)
        # Every placeholder is documented and replaced.
        left = re.findall(r"@[A-Z_]+@", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
        assert not left, f"unreplaced placeholders in {EXAMPLE}: {left}"
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(text)
        self.proc = None

    def argv(self, *extra):
        return [self.binary, "-p", self.dir, "-c", self.conf, "-g", "daemon off;", *extra]

    def start(self, timeout=15):
        check = subprocess.run(self.argv("-t"), capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise AssertionError(f"nginx -t refused the rendered example ({check.returncode}): {check.stderr}")
        self.out = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(self.argv(), stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited {self.proc.returncode}: {self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not listen: " + self.logs())

    def logs(self):
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    out.append(f"--- {name}\n" + f.read().decode("utf-8", "replace"))
            except FileNotFoundError:
                pass
        return "\n".join(out)

    def read(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "out", None):
            self.out.close()
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- clients -----------------------------------------------------------------------------
    def tls_context(self):
        return ssl.create_default_context(cafile=self.cert)

    def conn(self, timeout=30):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls_context())


class ProxyEndpoint:
    """Looks like a harness.Daemon to Client and Signer, but every request goes through nginx over
    TLS (whatever transport they ask for). `port` is nginx's, so Signer signs the Host that nginx
    receives and forwards."""

    def __init__(self, nginx):
        self.nginx = nginx
        self.port = nginx.port

    def request(self, method, path, body=None, headers=None, transport="tls", conn=None):
        c = conn or self.nginx.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return Reply(r.status, r.getheaders(), r.read())
        finally:
            if conn is None:
                c.close()


def _user_name():
    return pwd.getpwuid(os.geteuid()).pw_name


def _group_name():
    return grp.getgrgid(os.getegid()).gr_name


MAX_BODY = 1024 * 1024  # the daemon's default limits.max_body_bytes


class NginxProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nginx = None
        cls.d = None
        try:
            # public_url is the proxy's URL: the mailed confirmation link must work through it.
            port = free_port()
            cls.d = UnixOnlyDaemon(extra_config={"public_url": f"https://127.0.0.1:{port}"})
            cls.d.start()
            cls.nginx = Nginx(cls.d.sock, MAX_BODY, port=port).start()
        except Exception:
            cls._cleanup()
            raise
        cls.p = ProxyEndpoint(cls.nginx)
        cls.spool = os.path.join(cls.d.dir, "mail")

    @classmethod
    def _cleanup(cls):
        if cls.nginx:
            cls.nginx.cleanup()
        if cls.d:
            cls.d.cleanup()

    @classmethod
    def tearDownClass(cls):
        nginx_code = cls.nginx.stop()
        code = cls.d.stop()
        cls._cleanup()
        assert code == 0, f"daemon exit code {code}"
        assert nginx_code == 0, f"nginx exit code {nginx_code}"

    # --- helpers -------------------------------------------------------------------------------
    def new_user(self, address):
        for f in glob.glob(os.path.join(self.spool, "*.eml")):
            os.unlink(f)
        c = Client(self.p, transport="tls", address=address)
        c.register()
        r = c.secure()
        self.assertEqual(r.status, 204, r.body)
        mails = wait_for_mail(self.spool)
        # The mailed link is the public URL (the proxy), and it works through the proxy.
        m = re.search(r"https?://\S+/registration/[A-Za-z0-9_-]+/confirm/[A-Za-z0-9_-]+", mails[-1][2])
        self.assertIsNotNone(m, mails[-1][2])
        link = m.group(0)
        self.assertTrue(link.startswith(f"https://127.0.0.1:{self.nginx.port}/registration/"), link)
        r = c.req("GET", link[len(f"https://127.0.0.1:{self.nginx.port}"):])
        self.assertEqual(r.status, 201, r.body)
        c.account_id = r.json()["accountId"]
        c.login_href = find_link(r, rel="login", title="account-login")["href"]
        r = c.login()
        self.assertEqual(r.status, 200, r.body)
        c.account = c.req("GET", find_link(c.login_reply, rel="up", title="account")["href"])
        self.assertEqual(c.account.status, 200, c.account.body)
        pair = c.req("POST", find_link(c.account, title="account-accessCode")["href"],
                     {"description": "through nginx"})
        self.assertEqual(pair.status, 201, pair.body)
        c.pair = pair.json()
        c.token_url = expand(find_link(c.account, title="account-token-create")["href"], accountId=c.account_id)
        return c

    def signer(self, user):
        s = Signer(self.p, user.pair["code"], user.pair["secret"], transport="tls")
        self.assertEqual(s.host(), f"127.0.0.1:{self.nginx.port}")
        return s

    # --- tests ---------------------------------------------------------------------------------
    def test_discovery_and_health_through_the_proxy(self):
        r = self.p.request("GET", "/")
        self.assertEqual(r.status, 204)
        # Links are paths: they are right behind any proxy without rewriting.
        self.assertIn('</>; rel="self"', r.links())
        self.assertIn('</healthCheck>; rel="service"; title="health-check"', r.links())
        for link in r.links():
            self.assertRegex(link, r"^</")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertIsNotNone(r.header("X-Request-Id"))
        self.assertEqual(r.header("Strict-Transport-Security"), "max-age=63072000")
        self.assertEqual(r.header("Server"), "nginx")  # server_tokens off: no version
        h = self.p.request("GET", "/healthCheck")
        self.assertEqual(h.status, 200)
        self.assertEqual(h.json(), {"status": "healthy"})

    def test_registration_login_and_signed_round_trip(self):
        u = self.new_user("proxied@example.com")
        # The cookie came through the proxy, marked Secure by proxy_cookie_flags (the daemon sees
        # a Unix socket and does not set it).
        cookie = u.login_reply.header("Set-Cookie")
        self.assertRegex(cookie, r"^login=[^;]+;")
        self.assertIn("HttpOnly", cookie)
        self.assertIn("Secure", cookie)
        s = self.signer(u)
        payloads = [
            (b"This is a test.\n", "text/plain"),
            (b"", "text/plain"),
            (bytes(range(256)) * 7, "application/octet-stream"),
            ("caf\u00e9 \u2603".encode(), "text/plain; charset=utf-8"),
            (os.urandom(MAX_BODY), "application/octet-stream"),  # exactly the daemon's limit
        ]
        conn = self.nginx.conn()  # keep-alive to nginx for part of it
        try:
            for body, ctype in payloads:
                r = s.request("POST", u.token_url, body, ctype)
                self.assertEqual(r.status, 201, r.body[:300])
                loc = r.header("Location")
                self.assertRegex(loc, rf"^/account/{u.account_id}/token/[A-Za-z0-9_-]{{32}}$")
                self.assertIn(f'<{loc}>; rel="self"', r.links())
                headers = {"Host": s.host(), "Content-Type": ctype, "X-OpenToken-Date": ot1_date()}
                h = ot1_sign("GET", loc, headers, b"", s.code, s.secret)
                g = self.p.request("GET", loc, headers=h, conn=conn)
                self.assertEqual(g.status, 200, g.body[:300])
                self.assertEqual(g.body, body)  # byte-exact through TLS, nginx and the socket
                self.assertEqual(g.header("Content-Type"), ctype)
                self.assertEqual(g.header("Cache-Control"), "no-store")
                self.assertIsNotNone(g.header("ETag"))
        finally:
            conn.close()
        # Public token with a query string (signed): readable without a signature.
        r = s.request("POST", u.token_url + "?public=true", b"public through nginx")
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(self.p.request("GET", r.header("Location")).body, b"public through nginx")
        # Delete, then gone.
        r = s.request("POST", u.token_url, b"short-lived")
        loc = r.header("Location")
        self.assertEqual(s.request("DELETE", loc).status, 204)
        self.assertEqual(s.request("GET", loc).status, 404)
        # Neither the payloads nor the ids reach nginx's access log (the example's log format).
        log = self.nginx.read("access.log")
        self.assertIn(b" POST 201 ", log)
        self.assertNotIn(u.account_id.encode(), log)
        self.assertNotIn(loc.rsplit("/", 1)[1].encode(), log)
        # No payload went through nginx's temp files (nginx unlinks them at once, but warns).
        self.assertNotIn(b"buffered to a temporary file", self.nginx.read("error.log"))

    def test_signature_for_another_host_fails_through_the_proxy(self):
        u = self.new_user("host-check@example.com")
        s = self.signer(u)
        self.assertEqual(s.request("POST", u.token_url, b"x").status, 201)  # control: the right Host works

        def other_host(name):
            def tamper(h, body):
                # Signed for `name`, sent (and forwarded by nginx) with the real Host.
                headers = {"Host": name, "Content-Type": "text/plain", "X-OpenToken-Date": h["X-OpenToken-Date"]}
                signed = ot1_sign("POST", u.token_url, headers, body, s.code, s.secret)
                h = dict(h)
                h["Authorization"] = signed["Authorization"]
                return h, body
            return tamper

        for name in ("localhost", "opentokend", f"127.0.0.1:{self.nginx.port + 1}", "127.0.0.1",
                     "vault.example.com"):
            with self.subTest(host=name):
                r = s.request("POST", u.token_url, b"x", tamper=other_host(name))
                self.assertEqual(r.status, 401, r.body)
                self.assertEqual(r.header("WWW-Authenticate"), "OT1-HMAC-SHA256-HEX")

    def test_body_over_the_daemon_limit_is_refused_by_nginx(self):
        u = self.new_user("big@example.com")
        r = self.signer(u).request("POST", u.token_url, os.urandom(MAX_BODY + 1), "application/octet-stream")
        self.assertEqual(r.status, 413)
        # nginx refused it (text/html, no request id): the body never reached the daemon.
        self.assertIsNone(r.header("X-Request-Id"), r.headers)
        self.assertIn("text/html", r.header("Content-Type"))
        self.assertEqual(self.p.request("GET", "/healthCheck").status, 200)

    def test_without_the_host_line_signatures_fail(self):
        # Negative control: the same example minus `proxy_set_header Host $http_host;`. nginx then
        # sends the upstream's name as Host, and no signature made by a client can verify.
        u = self.new_user("no-host-line@example.com")
        self.assertEqual(self.signer(u).request("POST", u.token_url, b"x").status, 201)
        other = Nginx(self.d.sock, MAX_BODY, keep_host_line=False).start()
        try:
            s = Signer(ProxyEndpoint(other), u.pair["code"], u.pair["secret"], transport="tls")
            r = s.request("POST", u.token_url, b"x")
            self.assertEqual(r.status, 401, r.body)
            # Unsigned requests still pass: only the signature depends on the Host.
            self.assertEqual(ProxyEndpoint(other).request("GET", "/healthCheck").status, 200)
        finally:
            self.assertEqual(other.stop(), 0)
            other.cleanup()


if __name__ == "__main__":
    unittest.main()
