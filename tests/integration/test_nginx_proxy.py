"""Issue 8: opentokend behind a real nginx (Debian package) terminating TLS.

The daemon listens on its Unix socket only. nginx runs in the foreground with
docs/nginx-example.conf rendered into a temp dir (own pid, logs, temp paths, a self-signed
certificate), listening on 127.0.0.1 and proxying to the socket. Everything below goes through
nginx over TLS: registration with the mailed link (public_url = the nginx URL), login, access
codes, OT1-signed tokenize/detokenize/delete. A signature made for another Host fails with 401, and
the same config without `proxy_set_header Host $http_host;` breaks every signature (so the line is
what makes it work).

Issue 18 part 6 (TrustedProxyTest and the spoofing tests below): with listen.trusted_proxies =
["uid:<nginx's uid>"], two clients that nginx sees from 127.0.0.2 and 127.0.0.3 are limited
separately (accounts.registrations_per_peer) and the audit line names each one; without
trusted_proxies a client-supplied X-Forwarded-For changes nothing, and a direct TLS client (not a
trusted proxy) cannot pick its address with X-Forwarded-For or Forwarded.

nginx must be installed (`scripts/install-deps` does it): without it this test fails, it does not
skip.
"""

import glob
import grp
import http.client
import json
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

import audit_lines
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

    def conn(self, timeout=30, source=None):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls_context(),
                                           source_address=(source, 0) if source else None)


class ProxyEndpoint:
    """Looks like a harness.Daemon to Client and Signer, but every request goes through nginx over
    TLS (whatever transport they ask for). `port` is nginx's, so Signer signs the Host that nginx
    receives and forwards."""

    def __init__(self, nginx, source=None):
        self.nginx = nginx
        self.port = nginx.port
        self.source = source  # the client's own address (127.0.0.2, ...): what nginx sees

    def request(self, method, path, body=None, headers=None, transport="tls", conn=None):
        c = conn or self.nginx.conn(source=self.source)
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


# --- issue 18 part 6: the client behind the proxy -----------------------------------------------
PER_PEER = 3  # accounts.registrations_per_peer in the tests below


class LimitedDaemon(UnixOnlyDaemon):
    """registrations_per_peer = PER_PEER (and nothing else in the way); listen.trusted_proxies
    when `trusted` is given; the TLS listener too when `tls`."""

    def __init__(self, trusted=None, tls=False, header=None, **kw):
        self.trusted = trusted
        self.tls = tls
        self.header = header
        super().__init__(**kw)

    def config(self):
        c = Daemon.config(self) if self.tls else super().config()
        if self.trusted is not None:
            c["listen"]["trusted_proxies"] = self.trusted
        if self.header is not None:
            c["listen"]["forwarded_header"] = self.header
        c["accounts"] = {"registrations_per_peer": PER_PEER, "registrations_per_address": 1000,
                         "max_pending_registrations_per_peer": 1000}
        return c


_serial = [0]


def register(endpoint, headers=None, transport="tls"):
    """POST /registration for a fresh address; returns the status."""
    _serial[0] += 1
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    body = json.dumps({"email": f"proxied-{_serial[0]}@example.com"}).encode()
    return endpoint.request("POST", "/registration", body=body, headers=h, transport=transport).status


def audit_peers(daemon, event="registration_started", want=0, timeout=10):
    """The `detail` of every successful audit line of `event` (waits until there are `want`)."""
    path = os.path.join(daemon.dir, "data", "audit.log")
    deadline = time.time() + timeout
    while True:
        details = [e.get("detail", "") for e in audit_lines.read(path)
                   if e.get("event") == event and e.get("status") == 200]
        if len(details) >= want or time.time() > deadline:
            return details
        time.sleep(0.1)


class ProxyLimitsBase(unittest.TestCase):
    trusted = None
    header = None

    def setUp(self):
        self.nginx = None
        port = free_port()
        self.d = LimitedDaemon(trusted=self.trusted, header=self.header,
                               extra_config={"public_url": f"https://127.0.0.1:{port}"})
        try:
            self.d.start()
            self.nginx = Nginx(self.d.sock, MAX_BODY, port=port).start()
        except Exception:
            self.tearDown()
            raise

    def tearDown(self):
        if self.nginx:
            self.assertEqual(self.nginx.stop(), 0)
            self.nginx.cleanup()
        code = self.d.stop()
        log = self.d.read_log()
        self.d.cleanup()
        self.assertEqual(code, 0)
        # The daemon's own log never names a client address (only the audit line does).
        self.assertNotIn("127.0.0.2", log)
        self.assertNotIn("198.51.100.", log)


class TrustedProxyTest(ProxyLimitsBase):
    """nginx (same uid as this test) is trusted as "uid:<n>" on the Unix socket."""

    trusted = [f"uid:{os.geteuid()}"]

    def test_clients_behind_the_proxy_are_limited_separately_and_audited_by_address(self):
        a = ProxyEndpoint(self.nginx, source="127.0.0.2")
        b = ProxyEndpoint(self.nginx, source="127.0.0.3")
        # Client a uses its allowance, spoofing other addresses on the way: nginx appends the
        # address it sees, and the daemon takes the rightmost untrusted one.
        spoofs = [{}, {"X-Forwarded-For": "198.51.100.1"}, {"Forwarded": "for=198.51.100.2"},
                  {"X-Forwarded-For": "198.51.100.3, 127.0.0.3"}]
        self.assertEqual([register(a, h) for h in spoofs], [200] * PER_PEER + [429])
        # Client b (another address for nginx) still has its own allowance.
        self.assertEqual([register(b) for _ in range(PER_PEER + 1)], [200] * PER_PEER + [429])
        via = f"via=uid:{os.geteuid()}"
        details = audit_peers(self.d, want=2 * PER_PEER)
        self.assertEqual(len(details), 2 * PER_PEER, details)
        self.assertEqual(sorted(details),
                         sorted([f"peer=ip:127.0.0.2 transport=unix {via}"] * PER_PEER +
                                [f"peer=ip:127.0.0.3 transport=unix {via}"] * PER_PEER))
        # nginx's own access log shows the same clients.
        log = self.nginx.read("access.log")
        self.assertIn(b"127.0.0.2 ", log)
        self.assertIn(b"127.0.0.3 ", log)

    def test_a_trusted_unix_peer_names_the_client_and_every_header_line_counts(self):
        # This test runs as nginx's uid, so on the socket it is a trusted proxy itself: it sends
        # the list as three header lines (one list, in order) with a client-side prefix.
        conn = self.d.unix_conn()
        try:
            for i in range(PER_PEER + 1):
                conn.putrequest("POST", "/registration", skip_host=True, skip_accept_encoding=True)
                body = json.dumps({"email": f"lines-{i}@example.com"}).encode()
                conn.putheader("Host", "localhost")
                conn.putheader("Content-Type", "application/json")
                conn.putheader("Content-Length", str(len(body)))
                conn.putheader("X-Forwarded-For", f"203.0.113.{i}")  # left of the client: unused
                conn.putheader("X-Forwarded-For", "198.51.100.77")
                conn.putheader("x-forwarded-for", "not-an-address, 10.0.0.1")
                conn.endheaders(body)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200 if i < PER_PEER else 429, i)
        finally:
            conn.close()
        # 10.0.0.1 is not trusted: it is the client (the rightmost untrusted address). Had the
        # lines been read in another order, each request would have had its own address.
        details = audit_peers(self.d, want=PER_PEER)
        self.assertEqual(set(details), {f"peer=ip:10.0.0.1 transport=unix via=uid:{os.geteuid()}"})
        # The proxy's own identity still has its whole allowance.
        self.assertEqual(register(self.d, transport="unix"), 200)

    def test_ipv6_clients_are_limited_by_their_slash_64_and_audited_by_address(self):
        # Regression: per-request limits keyed the full IPv6 address, so one host rotating
        # through its /64 got a fresh allowance with every address. This test is a trusted peer
        # on the socket and names the client itself.
        def register_as(client, i):
            conn = self.d.unix_conn()
            try:
                body = json.dumps({"email": f"v6-{i}@example.com"}).encode()
                conn.request("POST", "/registration", body=body,
                             headers={"Content-Type": "application/json",
                                      "X-Forwarded-For": client})
                r = conn.getresponse()
                r.read()
                return r.status
            finally:
                conn.close()

        same_net = [f"2001:db8:1:2::{i + 1:x}" for i in range(PER_PEER + 1)]
        self.assertEqual([register_as(c, i) for i, c in enumerate(same_net)],
                         [200] * PER_PEER + [429])
        # Another /64 has its own allowance.
        self.assertEqual(register_as("2001:db8:1:3::1", 99), 200)
        details = audit_peers(self.d, want=PER_PEER + 1)
        for i in range(PER_PEER):
            self.assertIn(f"peer=ip:{same_net[i]} transport=unix via=uid:{os.geteuid()}", details)


class UntrustedProxyTest(ProxyLimitsBase):
    """The same nginx without listen.trusted_proxies: every client is the proxy (uid:<n>)."""

    trusted = None

    def test_without_trusted_proxies_forwarded_addresses_are_ignored(self):
        a = ProxyEndpoint(self.nginx, source="127.0.0.2")
        b = ProxyEndpoint(self.nginx, source="127.0.0.3")
        statuses = [register(a, {"X-Forwarded-For": "198.51.100.1"}),
                    register(b, {"X-Forwarded-For": "198.51.100.2"}),
                    register(a, {"Forwarded": "for=198.51.100.3"}),
                    register(b, {"X-Forwarded-For": "198.51.100.4"})]
        self.assertEqual(statuses, [200] * PER_PEER + [429])
        details = audit_peers(self.d, want=PER_PEER)
        self.assertEqual(set(details), {f"peer=uid:{os.geteuid()} transport=unix"})


class DirectTlsClientTest(unittest.TestCase):
    """A trusted proxy on the Unix socket does not make a direct TLS client trusted."""

    def test_a_direct_tls_client_cannot_pick_its_address(self):
        d = LimitedDaemon(trusted=[f"uid:{os.geteuid()}", "10.0.0.0/8", "2001:db8::/32"], tls=True)
        d.start()
        try:
            headers = [{"X-Forwarded-For": "198.51.100.1"},
                       {"X-Forwarded-For": "198.51.100.2, 10.0.0.1"},
                       {"Forwarded": "for=198.51.100.3"},
                       {"X-Forwarded-For": "198.51.100.4", "Forwarded": "for=\"[2001:db8::9]\""},
                       {"X-Forwarded-For": "198.51.100.5"}]
            self.assertEqual([register(d, h) for h in headers], [200] * PER_PEER + [429] * 2)
            details = audit_peers(d, want=PER_PEER)
            self.assertEqual(set(details), {"peer=ip:127.0.0.1 transport=tls"})
        finally:
            code = d.stop()
            d.cleanup()
        self.assertEqual(code, 0)


if __name__ == "__main__":
    unittest.main()
