"""Issue 14 item 5: one client must not lock everyone out by filling the connection table.

Before: 530 idle Unix connections (or 520 TCP connections that never start TLS) filled the one
global table of limits.max_connections (512) and both listeners closed every new client at once,
until the request timeout cut the flood, which could simply re-open; and a keep-alive connection
could hold its place for the whole idle timeout (30 s) while sending the next request's header.

Now each listener has its own table with a per-peer share (limits.max_connections_per_peer: the uid
on the Unix socket, the IP on TLS); a newcomer takes the place of a connection that waits (its
peer's own when the peer is at its share and that one has waited a second, else the largest
peer's), TLS handshakes have a short deadline, and a keep-alive request has the request deadline
from its first byte.

Another peer: on TLS a client bound to 127.0.0.2 (the floods come from 127.0.0.1); on the Unix
socket a child process running as uid 65534 with gid 0 (the socket is root:root 0660, its
directories are opened to group 0 for it). Skipped where that is impossible (not root).
"""

import http.client
import os
import re
import resource
import selectors
import socket
import ssl
import sys
import threading
import time
import unittest

from harness import Daemon, UnixHTTPConnection

NOBODY = 65534

def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_to_group_root(d):
    """Lets a process with gid 0 (not root) reach the 0660 root:root API socket."""
    for p in (d.dir, os.path.join(d.dir, "run")):
        os.chmod(p, 0o710)


def unix_from_other_peer(d):
    """(status, seconds) of GET /healthCheck by uid 65534 (gid 0) on the API socket: a forked
    child drops to that uid before it connects (the daemon reads the peer's uid at connect)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # only system calls and sockets here: other threads' locks are not ours
        try:
            os.close(r)
            os.setgroups([0])
            os.setgid(0)
            os.setuid(NOBODY)
            t0 = time.monotonic()
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(5)
                s.connect(d.sock)
                s.sendall(b"GET /healthCheck HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    data += b
                status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/1.1 ") else b"no-answer"
            except OSError as e:
                status = type(e).__name__.encode()
            os.write(w, status + b" %.4f" % (time.monotonic() - t0))
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        out += b
    os.close(r)
    os.waitpid(pid, 0)
    parts = out.decode().split()
    if len(parts) != 2:
        raise AssertionError(f"the uid {NOBODY} client failed: {out!r}")
    return parts[0], float(parts[1])


def tls_from_other_peer(d, source="127.0.0.2"):
    """(status, seconds) of GET /healthCheck over TLS from `source`."""
    t0 = time.monotonic()
    c = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=5, context=d.tls_context(),
                                    source_address=(source, 0))
    try:
        c.request("GET", "/healthCheck")
        r = c.getresponse()
        r.read()
        status = str(r.status)
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        status = type(e).__name__
    finally:
        c.close()
    return status, round(time.monotonic() - t0, 4)


def metric(d, name, **labels):
    """One sample from the metrics socket (0 when absent)."""
    conn = UnixHTTPConnection(os.path.join(d.dir, "run", "opentokend-metrics.sock"))
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and (m.group(2) or "") == want:
            return float(m.group(3))
    return 0.0


class Flood(threading.Thread):
    """Holds `n` connections open from this process (uid 0, 127.0.0.1), sending nothing, and
    re-opens every one the daemon closes (each round after `pause` seconds)."""

    def __init__(self, connect, n, pause=0.2):
        super().__init__(daemon=True)
        self.connect, self.n, self.pause = connect, n, pause
        self.stop_event = threading.Event()
        self.sel = selectors.DefaultSelector()  # epoll: the descriptors go beyond FD_SETSIZE
        self.lock = threading.Lock()
        self.held = 0
        self.opened = self.closed_by_server = self.connect_failed = 0
        self.filled = threading.Event()

    def run(self):
        conns = set()
        while not self.stop_event.is_set():
            while len(conns) < self.n and not self.stop_event.is_set():
                try:
                    s = self.connect()
                except OSError:
                    self.connect_failed += 1
                    break
                s.setblocking(False)
                self.sel.register(s, selectors.EVENT_READ)
                conns.add(s)
                self.opened += 1
            with self.lock:
                self.held = len(conns)
            if self.opened >= self.n:
                self.filled.set()
            for key, _ in self.sel.select(timeout=self.pause):
                s = key.fileobj
                try:
                    gone = s.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    self.sel.unregister(s)
                    s.close()
                    conns.discard(s)
                    self.closed_by_server += 1
            time.sleep(self.pause)
        for s in conns:
            self.sel.unregister(s)
            s.close()

    def stop(self):
        self.stop_event.set()
        self.join(30)


def unix_socket_to(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def tcp_to(port, source="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def closed_within(s, seconds):
    """True when the daemon closes `s` within `seconds` (EOF or reset)."""
    s.settimeout(seconds)
    try:
        while True:
            if s.recv(4096) == b"":
                return True
    except socket.timeout:
        return False
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True


def require_root(test):
    if os.geteuid() != 0:
        test.skipTest("needs root: the other Unix peer is a child running as uid 65534")


class FloodFromOnePeerTest(unittest.TestCase):
    """The issue's scenario with the default limits (512 per listener, 256 per peer)."""

    UNIX_FLOOD = 600
    TLS_FLOOD = 520

    def setUp(self):
        require_root(self)
        if raise_nofile(self.UNIX_FLOOD + self.TLS_FLOOD + 256) < self.UNIX_FLOOD + self.TLS_FLOOD + 64:
            self.skipTest("RLIMIT_NOFILE too small for the flood")
        self.d = Daemon()
        self.d.start()
        open_to_group_root(self.d)
        self.floods = []

    def tearDown(self):
        for f in self.floods:
            f.stop()
        code = self.d.stop()
        log = self.d.read_log()
        self.d.cleanup()
        self.assertEqual(code, 0, log[-3000:])
        self.assertNotIn('"event":"handler_exception"', log)

    def test_another_peer_is_served_within_a_second_on_both_listeners(self):
        unix = Flood(lambda: unix_socket_to(self.d.sock), self.UNIX_FLOOD)
        tls = Flood(lambda: tcp_to(self.d.port), self.TLS_FLOOD)  # never sends a ClientHello
        self.floods += [unix, tls]
        for f in self.floods:
            f.start()
        for f in self.floods:
            self.assertTrue(f.filled.wait(30), "the flood could not open its connections")
        time.sleep(0.5)  # the daemon has accepted (or refused) them
        results = []
        for _ in range(3):
            results.append(("unix",) + unix_from_other_peer(self.d))
            results.append(("tls",) + tls_from_other_peer(self.d))
        # Once the flood's first connections have waited a second, its newcomers take their
        # places (before, they are refused): the other peer is still served.
        time.sleep(1.5)
        for _ in range(2):
            results.append(("unix",) + unix_from_other_peer(self.d))
            results.append(("tls",) + tls_from_other_peer(self.d))
        detail = (f"{results}; unix flood: opened {unix.opened}, held {unix.held}, cut "
                  f"{unix.closed_by_server}; tls flood: opened {tls.opened}, held {tls.held}, cut "
                  f"{tls.closed_by_server}")
        print(detail, file=sys.stderr)
        for transport, status, seconds in results:
            self.assertEqual(status, "200", detail)
            self.assertLess(seconds, 1.0, detail)
        # The floods did hit their peer's share: refused at first, then the daemon made room
        # among the flood's own connections.
        for transport in ("unix", "tls"):
            self.assertGreater(metric(self.d, "opentokend_http_connections_rejected_total",
                                      transport=transport), 0, detail)
            self.assertGreater(metric(self.d, "opentokend_http_connections_evicted_total",
                                      transport=transport, reason="max_connections_per_peer"),
                               0, detail)
        self.assertLessEqual(metric(self.d, "opentokend_http_connections_open", transport="unix"),
                             512)
        self.assertGreaterEqual(unix.held, self.UNIX_FLOOD // 2, detail)


class LowDescriptorLimitDaemon(Daemon):
    """The daemon under a hard RLIMIT_NOFILE of 256 (far below 2 x 512 connections)."""

    NOFILE = 256

    def argv(self):
        wrapper = ("import os, resource, sys; n = int(sys.argv[1]); "
                   "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])")
        return [sys.executable, "-c", wrapper, str(self.NOFILE)] + super().argv()


class LowDescriptorLimitTest(unittest.TestCase):
    """Too few descriptors for the budgets: the daemon lowers them to fit and says so. Before, a
    flood took every descriptor and every newcomer waited in the backlog (EMFILE) until the
    request deadline freed some."""

    def setUp(self):
        require_root(self)
        self.d = LowDescriptorLimitDaemon()
        self.d.start()
        open_to_group_root(self.d)
        self.floods = []

    def tearDown(self):
        for f in self.floods:
            f.stop()
        code = self.d.stop()
        log = self.d.read_log()
        self.d.cleanup()
        self.assertEqual(code, 0, log[-3000:])

    def test_the_budgets_are_lowered_to_fit_and_another_peer_still_gets_in(self):
        log = self.d.read_log()
        self.assertIn('"event":"open_file_limit_low"', log)
        self.assertIn('"max_connections":56', log)  # (256 - 144 reserved) / 2 listeners
        unix = Flood(lambda: unix_socket_to(self.d.sock), 400)
        tls = Flood(lambda: tcp_to(self.d.port), 300)
        self.floods += [unix, tls]
        for f in self.floods:
            f.start()
        for f in self.floods:
            self.assertTrue(f.filled.wait(30), "the flood could not open its connections")
        time.sleep(0.5)
        results = []
        for _ in range(2):
            results.append(("unix",) + unix_from_other_peer(self.d))
            results.append(("tls",) + tls_from_other_peer(self.d))
        for transport, status, seconds in results:
            self.assertEqual(status, "200", results)
            self.assertLess(seconds, 1.0, results)
        self.assertNotIn('"event":"accept_failed"', self.d.read_log())


class SmallTableTest(unittest.TestCase):
    """One daemon with a small table and short deadlines for the finer points."""

    LIMITS = {"max_connections": 16, "max_connections_per_peer": 16, "request_timeout_ms": 2000,
              "idle_timeout_ms": 10000, "handshake_timeout_ms": 1000}

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(limits=cls.LIMITS)
        cls.d.start()
        open_to_group_root(cls.d)

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        log = cls.d.read_log()
        cls.d.cleanup()
        assert code == 0, log[-3000:]

    def tls_socket(self, source="127.0.0.1"):
        return self.d.tls_context().wrap_socket(tcp_to(self.d.port, source), server_hostname="127.0.0.1")

    def wait_open(self, transport, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while metric(self.d, "opentokend_http_connections_open", transport=transport) != n:
            if time.monotonic() > deadline:
                self.fail(f"{transport}: not {n} connections open")
            time.sleep(0.01)

    def get(self, s):
        """GET /healthCheck on a keep-alive socket; the status."""
        s.sendall(b"GET /healthCheck HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            b = s.recv(65536)
            self.assertTrue(b, "closed before the answer")
            data += b
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(body) < length:
            body += s.recv(65536)
        return int(head.split(b" ", 2)[1])

    def test_a_full_table_makes_room_for_another_peer_by_evicting_the_longest_waiting(self):
        require_root(self)
        self.wait_open("unix", 0)
        held = []
        for i in range(16):  # this peer fills the whole table (its share is the table)
            held.append(unix_socket_to(self.d.sock))
            self.wait_open("unix", i + 1)
        before = metric(self.d, "opentokend_http_connections_evicted_total", transport="unix",
                        reason="max_connections")
        status, seconds = unix_from_other_peer(self.d)
        self.assertEqual(status, "200")
        self.assertLess(seconds, 1.0)
        self.assertTrue(closed_within(held[0], 1.0), "the longest waiting connection stayed")
        self.assertFalse(closed_within(held[1], 0.05), "more than one connection was cut")
        self.assertEqual(metric(self.d, "opentokend_http_connections_evicted_total",
                                transport="unix", reason="max_connections"), before + 1)
        for s in held:
            s.close()

    def test_a_full_tls_table_makes_room_for_another_peer(self):
        self.wait_open("tls", 0)
        held = []
        for i in range(16):
            held.append(self.tls_socket())
            self.wait_open("tls", i + 1)
        status, seconds = tls_from_other_peer(self.d)
        self.assertEqual(status, "200")
        self.assertLess(seconds, 1.0)
        self.assertTrue(closed_within(held[0], 1.0), "the longest waiting connection stayed")
        for s in held:
            s.close()

    def test_a_tls_connection_that_never_says_hello_is_cut_at_the_handshake_deadline(self):
        s = tcp_to(self.d.port)
        t0 = time.monotonic()
        self.assertTrue(closed_within(s, 5.0))
        held = time.monotonic() - t0
        s.close()
        self.assertGreater(held, 0.8)
        self.assertLess(held, 1.8)  # handshake_timeout_ms 1000, not request_timeout_ms 2000

    def check_keep_alive_deadline(self, s, send_partial):
        """Idle longer than the request deadline is fine; the first byte of a request that then
        stalls starts the request deadline (2 s), not the idle one (10 s)."""
        self.assertEqual(self.get(s), 200)
        time.sleep(2.5)
        self.assertEqual(self.get(s), 200)
        send_partial()
        t0 = time.monotonic()
        self.assertTrue(closed_within(s, 8.0), "not cut")
        held = time.monotonic() - t0
        s.close()
        self.assertGreater(held, 1.7)
        self.assertLess(held, 3.5, "cut by the idle deadline, not the request deadline")

    def test_a_stalled_keep_alive_request_is_cut_at_the_request_deadline_unix(self):
        s = unix_socket_to(self.d.sock)
        self.check_keep_alive_deadline(s, lambda: s.sendall(b"GET /heal"))

    def test_a_stalled_keep_alive_request_is_cut_at_the_request_deadline_tls(self):
        s = self.tls_socket()
        self.check_keep_alive_deadline(s, lambda: s.sendall(b"GET /heal"))

    def test_a_partial_tls_record_starts_the_request_deadline(self):
        """The first byte counts on the wire, not once a whole record has been decrypted."""
        raw = tcp_to(self.d.port)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.d.tls_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")

        def flush():
            data = outgoing.read()
            if data:
                raw.sendall(data)

        def pump():
            b = raw.recv(65536)
            self.assertTrue(b, "closed")
            incoming.write(b)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                pump()
        flush()
        tls.write(b"GET /healthCheck HTTP/1.1\r\nHost: localhost\r\n\r\n")
        flush()
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                pump()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:100])
        time.sleep(0.2)  # the rest of the answer and any session tickets, unread
        tls.write(b"GET /healthCheck HTTP/1.1\r\nHost: localhost\r\n\r\n")
        record = outgoing.read()
        raw.sendall(record[:3])  # part of the record header, then nothing
        t0 = time.monotonic()
        self.assertTrue(closed_within(raw, 8.0), "not cut")
        held = time.monotonic() - t0
        raw.close()
        self.assertGreater(held, 1.7)
        self.assertLess(held, 3.5, "cut by the idle deadline, not the request deadline")

    def test_a_keep_alive_request_has_one_deadline_for_header_and_body(self):
        s = unix_socket_to(self.d.sock)
        self.assertEqual(self.get(s), 200)
        s.sendall(b"P")
        t0 = time.monotonic()
        time.sleep(1.2)
        s.sendall(b"OST /healthCheck HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        cut = False
        while time.monotonic() - t0 < 8.0 and not cut:
            try:
                s.sendall(b"x")
            except OSError:
                cut = True
                break
            cut = closed_within(s, 0.2)
        held = time.monotonic() - t0
        s.close()
        self.assertTrue(cut, "not cut")
        self.assertGreater(held, 1.7)
        # Before, the body had a fresh request deadline of its own (cut at about 3.2 s).
        self.assertLess(held, 2.9)


if __name__ == "__main__":
    unittest.main()
