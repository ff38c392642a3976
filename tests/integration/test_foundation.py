"""Issue 2: discovery, health, schema serving, framing guard, limits, restart, key checks."""

import json
import os
import re
import signal
import socket
import time
import unittest

from harness import Daemon, SOURCE, count_responses, status_of

TRANSPORTS = ("unix", "tls")


class FoundationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Short deadlines so slow-client tests are quick, but not so short that a TLS handshake on
        # a loaded 2-core CI machine misses them.
        cls.d = Daemon(limits={"request_timeout_ms": 3000, "idle_timeout_ms": 5000,
                               "max_body_bytes": 65536})
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, f"daemon exit code {code}"

    def test_discovery_lists_service_links_on_both_transports(self):
        for t in TRANSPORTS:
            r = self.d.request("GET", "/", transport=t)
            self.assertEqual(r.status, 204, t)
            links = r.links()
            self.assertIn('</>; rel="up"; title="self-discovery"', links)
            self.assertIn('</>; rel="self"', links)
            self.assertIn('</healthCheck>; rel="service"; title="health-check"', links)
            self.assertIn('</registration>; rel="service"; profile="/schema/registration/register-request.json"; '
                          'title="registration-register"', links)
            self.assertIn('</account/{accountId}/login>; rel="service"; profile="/schema/account/login-request.json"; '
                          'templated="true"; title="account-login"', links)
            self.assertEqual(r.body, b"")
            self.assertEqual(r.header("Cache-Control"), "no-store")
            self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")

    def test_health_check_is_healthy(self):
        for t in TRANSPORTS:
            r = self.d.request("GET", "/healthCheck", transport=t)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json(), {"status": "healthy"})
            self.assertEqual(r.header("Content-Type"), "application/json")
            self.assertIn('</healthCheck>; rel="self"', r.links())
            self.assertIn('</>; rel="up"; title="self-discovery"', r.links())

    def test_every_schema_file_is_served_byte_for_byte(self):
        root = os.path.join(SOURCE, "schema")
        count = 0
        for dirpath, _, files in os.walk(root):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                with open(os.path.join(root, rel), "rb") as f:
                    expected = f.read()
                if rel == "openapi.json":  # the API description, not a schema: /openapi.json
                    r = self.d.request("GET", "/openapi.json")
                    self.assertEqual((r.status, r.body), (200, expected))
                    self.assertEqual(self.d.request("GET", "/schema/" + rel).status, 404)
                    continue
                if rel == "config.json":  # the daemon's config schema, not part of the API
                    self.assertEqual(self.d.request("GET", "/schema/" + rel).status, 404)
                    continue
                r = self.d.request("GET", "/schema/" + rel)
                self.assertEqual(r.status, 200, rel)
                self.assertEqual(r.body, expected, rel)
                self.assertEqual(r.header("Content-Type"), "application/json; charset=utf-8")
                self.assertIn(f'</schema/{rel}>; rel="self"', r.links())
                self.assertIn('</>; rel="up"; title="self-discovery"', r.links())
                json.loads(r.body)
                count += 1
        self.assertGreaterEqual(count, 15)

    def test_unknown_paths_and_methods_get_the_error_shape(self):
        r = self.d.request("GET", "/schema/nope.json")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
        body = r.json()
        self.assertEqual(set(body), {"code", "logref", "message"})
        self.assertEqual(body["logref"], r.header("X-Request-Id"))
        r = self.d.request("DELETE", "/healthCheck")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("Allow"), "GET")
        r = self.d.request("GET", "/nothing/here", transport="tls")
        self.assertEqual(r.status, 404)

    def test_request_ids_are_unique(self):
        ids = {self.d.request("GET", "/").header("X-Request-Id") for _ in range(20)}
        self.assertEqual(len(ids), 20)

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        for t in TRANSPORTS:
            conn = self.d.unix_conn() if t == "unix" else self.d.tls_conn()
            for _ in range(5):
                conn.request("GET", "/healthCheck")
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
            conn.close()

    # --- framing guard ------------------------------------------------------------------------
    BAD_FRAMING = [
        # (name, raw request, allowed statuses)
        ("te-gzip-with-cl", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", {400}),
        ("te-gzip-alone-then-smuggled-get", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nGET /healthCheck HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
        ("te-identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nx", {400}),
        ("te-chunked-and-cl", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", {400}),
        ("cl-and-te-chunked", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
        ("te-xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400}),
        ("te-chunked-twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
        ("te-chunked-http10", b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
        ("te-space-before-colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", {400}),
        ("te-obs-fold", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", {400}),
        ("te-vtab", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", {400}),
        ("duplicate-cl-different", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", {400}),
        ("duplicate-cl-same", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", {400}),
        ("cl-list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", {400}),
        ("cl-negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", {400}),
        ("cl-hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc", {400}),
        ("cl-plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", {400}),
        ("cl-space-inside", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\nabc", {400}),
        ("cl-overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", {400, 413}),
        ("cl-huge-no-body", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999\r\n\r\n", {413}),
        ("chunk-size-hex-prefix", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", {400}),
        ("chunk-size-negative", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n", {400}),
        ("chunk-ext-64k", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;" + b"a" * 70000 + b"\r\nabc\r\n0\r\n\r\n", {400, 413}),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\r\n b\r\n\r\n", {400}),
        ("duplicate-host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
        ("host-list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", {400}),
        ("header-too-large", b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", {431}),
        ("many-headers", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n", {431}),
        ("nul-in-header", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", {400}),
        ("nul-in-target", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
        ("percent-nul-in-target", b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
        ("percent-crlf-in-target", b"GET /a%0d%0aSet-Cookie:x HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
        ("dot-dot-target", b"GET /schema/../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
        ("absolute-form-target", b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
        ("non-ascii-header-name", b"GET / HTTP/1.1\r\nHost: a\r\nX-\xc3\xa9: b\r\n\r\n", {400}),
        ("binary-garbage", bytes(range(256)) * 4, {400}),
        ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400}),
        ("http-10", b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", {400}),
        ("http-09-ish", b"GET /\r\n\r\n", {400}),
        ("lowercase-method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", {400, 501}),
        ("unknown-method", b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", {400, 501}),
        ("connect-method", b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", {400, 501}),
        ("trace-method", b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", {400, 501}),
        ("chunk-ext-small", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n", {400}),
        ("trailer-content-length", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n", {400}),
        ("expect-unknown", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\nx", {417}),
        ("long-target", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", {414, 431}),
    ]

    def test_bad_framing_is_rejected_and_the_connection_closed(self):
        self.assertGreaterEqual(len(self.BAD_FRAMING), 20)
        for t in TRANSPORTS:
            for name, raw, allowed in self.BAD_FRAMING:
                with self.subTest(case=name, transport=t):
                    data, closed = self.d.raw(raw, transport=t)
                    self.assertIn(status_of(data), allowed, data[:200])
                    self.assertTrue(closed, "connection left open")
                    # Exactly one response: a smuggled second request is never answered.
                    self.assertEqual(count_responses(data), 1, data[:400])
        # The daemon is still healthy after the catalogue.
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)

    def test_tls_requires_host(self):
        data, closed = self.d.raw(b"GET / HTTP/1.1\r\n\r\n", transport="tls")
        self.assertEqual(status_of(data), 400)
        self.assertTrue(closed)

    def test_pipelined_good_requests_are_answered_in_order(self):
        data, _ = self.d.raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /healthCheck HTTP/1.1\r\nHost: a\r\n"
                             b"Connection: close\r\n\r\n", timeout=5)
        self.assertEqual(count_responses(data), 2)
        self.assertTrue(data.startswith(b"HTTP/1.1 204"))
        self.assertIn(b"HTTP/1.1 200", data)

    def test_oversized_body_is_refused_before_it_is_read(self):
        s = self.d.raw_socket()
        s.sendall(b"POST /healthCheck HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n")
        data = s.recv(4096)
        self.assertEqual(status_of(data), 413)
        s.close()
        # A too-large chunked body is cut off by the body limit.
        raw = (b"POST /healthCheck HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"8000\r\n" + b"a" * 0x8000 + b"\r\n") * 3 + b"0\r\n\r\n")
        data, closed = self.d.raw(raw)
        self.assertEqual(status_of(data), 413)
        self.assertTrue(closed)

    def test_slow_headers_are_cut_off_and_others_are_still_served(self):
        slow = [self.d.raw_socket(t) for t in TRANSPORTS for _ in range(3)]
        for s in slow:
            s.sendall(b"GET / HTTP/1.1\r\nHo")
        start = time.time()
        time.sleep(0.5)
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)
        for s in slow:
            data, closed = (b"", False)
            s.settimeout(5)
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        closed = True
                        break
                    data += b
            except (ConnectionResetError, OSError):
                closed = True
            self.assertTrue(closed)
            s.close()
        # request_timeout_ms is 3000: they were closed by the deadline, not much later.
        self.assertLess(time.time() - start, 8)

    def test_slow_body_is_cut_off(self):
        s = self.d.raw_socket()
        s.sendall(b"POST /healthCheck HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
        start = time.time()
        s.settimeout(10)
        closed = False
        try:
            while s.recv(4096):
                pass
            closed = True
        except OSError:
            closed = True
        self.assertTrue(closed)
        self.assertLess(time.time() - start, 8)
        s.close()


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.d = None

    def tearDown(self):
        if self.d:
            self.d.cleanup()

    def test_refuses_to_serve_before_keys_exist(self):
        self.d = Daemon(init_keys=False)
        code, log = self.d.run_to_exit()
        self.assertEqual(code, 69)
        self.assertIn("opentoken-admin init", log)
        self.assertFalse(os.path.exists(self.d.sock))

    def test_bad_config_exits_78_naming_the_key(self):
        self.d = Daemon()
        c = self.d.config()
        c["storage"]["nosync"] = True
        self.d.write_config(c)
        code, log = self.d.run_to_exit()
        self.assertEqual(code, 78)
        self.assertIn("storage.nosync", log)
        c = self.d.config()
        c["listen"]["tls"]["port"] = 70000
        self.d.write_config(c)
        code, log = self.d.run_to_exit()
        self.assertEqual(code, 78)
        self.assertIn("listen.tls.port", log)

    def test_wrong_pin_exits_69(self):
        self.d = Daemon()
        with open(self.d.pin_file, "w") as f:
            f.write("wrong-pin")
        code, log = self.d.run_to_exit()
        self.assertEqual(code, 69)
        self.assertNotIn("wrong-pin", log)
        self.assertNotIn(self.d.pin, log)

    def test_init_is_idempotent_and_status_shows_protected_keys(self):
        self.d = Daemon()
        r = self.d.admin("init", check=True)
        self.assertIn("already present", r.stdout)
        self.assertNotIn("created", r.stdout)
        r = self.d.admin("inspect", check=True)
        for label in ("otd-kek-v1", "otd-index-v1"):
            self.assertRegex(r.stdout, label + r": sensitive=1 extractable=0 always_sensitive=1 never_extractable=1")
        self.assertIn("health: healthy", r.stdout)

    def test_sigterm_drains_and_restart_keeps_state(self):
        self.d = Daemon()
        self.d.start()
        idle = self.d.unix_conn()
        idle.request("GET", "/")
        idle.getresponse().read()
        code = self.d.stop()
        idle.close()
        self.assertEqual(code, 0)
        self.assertIn('"event":"stopped"', self.d.read_log())
        self.assertFalse(os.path.exists(self.d.sock))
        # Restart on the same token and store: keys and versions are still there.
        self.d.start()
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)
        self.assertEqual(self.d.request("GET", "/healthCheck", transport="tls").status, 200)
        self.assertEqual(self.d.stop(), 0)

    def test_health_reports_unhealthy_when_the_token_is_gone(self):
        self.d = Daemon()
        self.d.start()
        self.assertEqual(self.d.request("GET", "/healthCheck").status, 200)
        tokens = os.path.join(self.d.dir, "hsm", "tokens")
        os.rename(tokens, tokens + ".moved")
        r = self.d.request("GET", "/healthCheck")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
        os.rename(tokens + ".moved", tokens)

    def test_log_lines_are_json_without_secrets(self):
        self.d = Daemon()
        self.d.start()
        self.d.request("GET", "/schema/meta/email.json")
        self.d.stop()
        log = self.d.read_log()
        for line in log.splitlines():
            json.loads(line)
        self.assertNotIn(self.d.pin, log)


if __name__ == "__main__":
    unittest.main()
