"""Issue 7 item 6: hostile clients under load (fast variant; tests/long/hostile_clients_long.py is
the long one).

While well-behaved clients keep doing OT1-signed tokenize, detokenize (byte-exact) and delete on
keep-alive connections over the Unix socket and TLS, attacker processes run:

* phase A: slowloris (headers that never end), slow bodies, slow readers (big detokenize answers
  pipelined and never read, or read 8 KiB/s), pipelining (deep batches, and a batch with a
  smuggling shape in the middle), and the catalogue of malformed requests from
  hostile_catalogue.py (> 1,000 entries, each on a fresh connection, some over TLS as well);
* phase B: the slow attackers go on and a connection flood holds several times
  `limits.max_connections` connections (from the same uid as everyone else here: it fills that
  peer's share, `limits.max_connections_per_peer`, half of the table);
* then the attack stops and the good clients go on for a while (recovery).

Measured and printed: the good clients' success rate and p50/p99 latency per phase, fresh
connections accepted per phase, what every attacker achieved, the daemon's RSS (VmRSS from
/proc/<pid>/status) before, during and after. Asserted: success >= 99 % (the good clients'
connections are established before the attack, as any real client's keep-alive connection is;
during the flood new connections from the flood's own peer (uid) are refused, or take the place
of its connections that have waited a second: other peers still get in, see
test_connection_fairness.py), every catalogue entry refused with a 4xx
(501 for unknown methods) and exactly one answer, no hang, slow clients cut by the deadlines,
pipelined answers in order and nothing after a smuggling shape, no 5xx and no handler exception in
the daemon log, RSS bounded, the daemon alive and stopping cleanly.
"""

import collections
import json
import multiprocessing
import os
import queue
import random
import ssl
import threading
import time
import unittest
import http.client

import hostile_catalogue as hc
from harness import Daemon, UnixHTTPConnection
from opentoken_client import Signer, expand, find_link, logged_in_user, ot1_date, ot1_sign

MIB = 1024 * 1024


class Settings:
    """Knobs of one run; the long variant overrides them."""

    limits = {"request_timeout_ms": 3000, "idle_timeout_ms": 5000, "write_timeout_ms": 3000,
              "max_connections": 64}
    baseline_s = 3.0
    phase_a_min_s = 10.0      # at least this long, and until the catalogue is through
    catalogue_timeout_s = 150.0
    flood_s = 8.0
    after_flood_s = 2.0       # slow attackers still on, flood over: fresh connections work again
    recovery_s = 3.0
    cycles = 1
    mutations_per_cycle = 0
    catalogue_workers = 6
    catalogue_tls_every = 10
    good_unix = 4
    good_tls = 2
    slowloris = 12
    slow_body = 6
    slow_read = 6
    flood_factor = 3          # flood connections = factor x max_connections
    min_success = 0.99
    seed = 1


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


class GoodClient(threading.Thread):
    """Signed tokenize, detokenize (byte-exact) and delete of random payloads on one keep-alive
    connection; every operation is recorded (start, latency, ok)."""

    CONTENT_TYPES = ("text/plain", "application/json", "application/octet-stream", "image/png; x=1")

    def __init__(self, d, user, transport, stop, samples, seed):
        super().__init__(daemon=True)
        self.d, self.user, self.transport, self.stop_event = d, user, transport, stop
        self.samples = samples
        self.rnd = random.Random(seed)
        self.host = "localhost" if transport == "unix" else f"127.0.0.1:{d.port}"

    def connect(self):
        if self.transport == "unix":
            c = UnixHTTPConnection(self.d.sock, timeout=15)
        else:
            c = http.client.HTTPSConnection("127.0.0.1", self.d.port, timeout=15, context=self.d.tls_context())
        c.connect()
        return c

    def signed(self, conn, method, target, body, ctype):
        headers = {"Host": self.host, "Content-Type": ctype, "X-OpenToken-Date": ot1_date()}
        h = ot1_sign(method, target, headers, body, self.user.pair["code"], self.user.pair["secret"])
        conn.request(method, target, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.getheader("Location"), r.read()

    def record(self, kind, t0, ok, detail=None):
        self.samples.append((kind, self.transport, t0, time.monotonic() - t0, ok, detail))

    def run(self):
        conn = None
        while not self.stop_event.is_set():
            if conn is None:
                t0 = time.monotonic()
                try:
                    conn = self.connect()
                except (OSError, ssl.SSLError) as e:
                    self.record("connect", t0, False, repr(e))
                    time.sleep(0.1)
                    continue
            size = self.rnd.choice((0, 1, 37, 512, 4096, 16384))
            payload = self.rnd.randbytes(size)
            ctype = self.rnd.choice(self.CONTENT_TYPES)
            kind = "tokenize"
            t0 = time.monotonic()
            try:
                status, loc, _ = self.signed(conn, "POST", self.user.token_url, payload, ctype)
                ok = status == 201 and bool(loc)
                self.record(kind, t0, ok, None if ok else status)
                if not ok:
                    continue
                kind = "detokenize"
                t0 = time.monotonic()
                status, _, data = self.signed(conn, "GET", loc, b"", ctype)
                ok = status == 200 and data == payload
                self.record(kind, t0, ok, None if ok else (status, len(data)))
                # Delete it again: the store stays the same size however long the run is.
                kind = "delete"
                t0 = time.monotonic()
                status, _, _ = self.signed(conn, "DELETE", loc, b"", ctype)
                self.record(kind, t0, status == 204, None if status == 204 else status)
            except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                self.record(kind, t0, False, repr(e))
                conn.close()
                conn = None
        if conn:
            conn.close()


class FreshProber(threading.Thread):
    """A new connection + GET /healthCheck every 0.25 s (alternating Unix and TLS): can a new client
    get in? Reported per phase; asserted outside the flood."""

    def __init__(self, d, stop, samples):
        super().__init__(daemon=True)
        self.d, self.stop_event, self.samples = d, stop, samples

    def run(self):
        k = 0
        while not self.stop_event.is_set():
            k += 1
            transport = "unix" if k % 2 else "tls"
            t0 = time.monotonic()
            try:
                r = self.d.request("GET", "/healthCheck", transport=transport)
                ok = r.status == 200
            except (OSError, ssl.SSLError, http.client.HTTPException):
                ok = False
            self.samples.append((transport, t0, time.monotonic() - t0, ok))
            time.sleep(0.25)


class RssSampler(threading.Thread):
    def __init__(self, pid, stop, samples, interval=0.25):
        super().__init__(daemon=True)
        self.pid, self.stop_event, self.samples, self.interval = pid, stop, samples, interval

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.samples.append((time.monotonic(), rss_kib(self.pid)))
            except (OSError, AssertionError):
                return
            time.sleep(self.interval)


class RoomyDaemon(Daemon):
    """The harness daemon with a 512 MiB store map (the harness's 64 MiB fills up in a long run:
    the catalogue's registrations, the attackers' big tokens; full answers 503 by design)."""

    def config(self):
        c = super().config()
        c["storage"]["map_size_mb"] = 512
        return c


def make_daemon(settings):
    d = RoomyDaemon(limits=settings.limits)
    d.start()
    spool = os.path.join(d.dir, "mail")
    good = logged_in_user(d, spool, "good@example.com")
    account = good.req("GET", find_link(good.login_reply, rel="up", title="account")["href"])
    good.token_url = expand(find_link(account, title="account-token-create")["href"], accountId=good.account_id)
    pairs = []
    for _ in range(2):
        r = good.req("POST", f"/account/{good.account_id}/accessCode", {"description": "hostile test"})
        assert r.status == 201, r.body
        pairs.append(r.json())
    good.pair = pairs[0]
    # The slow reader is an authenticated but hostile client: its own pair, big tokens to read.
    s = Signer(d, pairs[1]["code"], pairs[1]["secret"])
    big = os.urandom(MIB)
    r = s.request("POST", good.token_url + "?public=true", big, "application/octet-stream")
    assert r.status == 201, r.body
    public_path = r.header("Location")
    r = s.request("POST", good.token_url, big, "application/octet-stream")
    assert r.status == 201, r.body
    private_path = r.header("Location")
    reads = hc.BigReads(public_path, private_path, pairs[1]["code"], pairs[1]["secret"])
    return d, good, reads


def run_hostile(test, settings, log=print):
    """Runs the whole scenario against a fresh daemon; asserts and returns the measured numbers."""
    d, good, reads = make_daemon(settings)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    stop_slow = ctx.Event()
    procs = []
    threads = []
    stop_good = threading.Event()
    stop_samplers = threading.Event()
    good_samples, fresh_samples, rss_samples = [], [], []
    target = hc.Target(d.sock, d.port, d.cert)
    max_conn = settings.limits["max_connections"]
    try:
        for _ in range(3):  # warm up (keys cached, allocator settled), then the baseline RSS
            s = Signer(d, good.pair["code"], good.pair["secret"])
            loc = s.request("POST", good.token_url, b"warm-up").header("Location")
            assert s.request("GET", loc).status == 200
        rss_before = rss_kib(d.proc.pid)
        sampler = RssSampler(d.proc.pid, stop_samplers, rss_samples)
        prober = FreshProber(d, stop_samplers, fresh_samples)
        threads += [sampler, prober]
        for i in range(settings.good_unix + settings.good_tls):
            transport = "unix" if i < settings.good_unix else "tls"
            threads.append(GoodClient(d, good, transport, stop_good, good_samples, settings.seed * 100 + i))
        for t in threads:
            t.start()
        t_start = time.monotonic()
        time.sleep(settings.baseline_s)

        # --- phase A: slow attackers (they stay on until the end) -----------------------------
        t_attack = time.monotonic()
        token_path = good.token_url.encode()
        slow_roles = [
            (hc.role_slowloris, (target, stop_slow, results, settings.slowloris)),
            (hc.role_slow_body, (target, stop_slow, results, token_path, settings.slow_body)),
            (hc.role_slow_read, (target, stop_slow, results, reads, 3 * MIB, settings.slow_read,
                                 settings.limits["write_timeout_ms"] / 1000.0 + 3.0)),
            (hc.role_pipeline, (target, stop_slow, results)),
        ]
        for fn, args in slow_roles:
            p = ctx.Process(target=fn, args=args, daemon=True)
            p.start()
            procs.append(p)
        got = collections.defaultdict(list)
        phases = []  # (name, start, end)
        cycle_bounds = []
        cases = hc.catalogue(good.account_id, good.pair["code"])
        rnd = random.Random(settings.seed)
        for cycle in range(settings.cycles):
            t_a = time.monotonic()
            batch = cases + hc.mutations(cases, rnd, settings.mutations_per_cycle)
            stop_cat = ctx.Event()
            cat = ctx.Process(target=hc.role_catalogue,
                              args=(target, batch, settings.catalogue_workers, settings.catalogue_tls_every,
                                    settings.limits["request_timeout_ms"] / 1000.0
                                    + settings.limits["idle_timeout_ms"] / 1000.0 + 5.0, stop_cat, results),
                              daemon=True)
            cat.start()
            procs.append(cat)
            deadline = time.monotonic() + settings.catalogue_timeout_s
            while "catalogue" not in got or len(got["catalogue"]) <= cycle:
                left = deadline - time.monotonic()
                if left <= 0:
                    stop_cat.set()
                    raise AssertionError(f"catalogue not through in {settings.catalogue_timeout_s} s (a hang?)")
                try:
                    name, stats = results.get(timeout=min(left, 1.0))
                    got[name].append(stats)
                except queue.Empty:
                    if not cat.is_alive() and cat.exitcode not in (0, None):
                        raise AssertionError(f"catalogue process died ({cat.exitcode})")
            cat.join(10)
            while time.monotonic() - t_a < settings.phase_a_min_s:
                time.sleep(0.1)
            phases.append(("attack", t_a, time.monotonic()))

            # --- phase B: connection flood on top -------------------------------------------
            t_b = time.monotonic()
            stop_flood = ctx.Event()
            flood = ctx.Process(target=hc.role_flood,
                                args=(target, stop_flood, results, settings.flood_factor * max_conn),
                                daemon=True)
            flood.start()
            procs.append(flood)
            time.sleep(settings.flood_s)
            stop_flood.set()
            flood.join(30)
            phases.append(("flood", t_b, time.monotonic()))
            t_c = time.monotonic()
            time.sleep(settings.after_flood_s)
            phases.append(("after-flood", t_c, time.monotonic()))
            cycle_bounds.append((t_a, time.monotonic()))

        stop_slow.set()
        t_attack_end = time.monotonic()
        deadline = time.monotonic() + 60
        want = {"slowloris", "slow_body", "slow_read", "pipeline"}
        while not want <= set(got) and time.monotonic() < deadline:
            try:
                name, stats = results.get(timeout=1.0)
                got[name].append(stats)
            except queue.Empty:
                pass
        test.assertTrue(want <= set(got), f"attackers did not report: {want - set(got)}")
        while True:  # the flood's own reports
            try:
                name, stats = results.get(timeout=0.5)
                got[name].append(stats)
            except queue.Empty:
                break
        for p in procs:
            p.join(10)
            test.assertFalse(p.is_alive(), "an attacker process did not finish")

        # --- recovery ----------------------------------------------------------------------
        t_rec = time.monotonic()
        time.sleep(settings.recovery_s)
        phases.append(("recovery", t_rec, time.monotonic()))
        stop_good.set()
        for t in threads:
            if isinstance(t, GoodClient):
                t.join(30)
                test.assertFalse(t.is_alive(), "a good client is stuck")
        time.sleep(1.0)
        stop_samplers.set()
        for t in threads:
            t.join(10)
        test.assertIsNone(d.proc.poll(), f"daemon died: {d.read_log()[-2000:]}")
        test.assertEqual(d.request("GET", "/healthCheck").status, 200)
        test.assertEqual(d.request("GET", "/healthCheck", transport="tls").status, 200)
        rss_after = rss_kib(d.proc.pid)
        rss_hwm = hwm_kib(d.proc.pid)
    finally:
        stop_slow.set()
        stop_good.set()
        stop_samplers.set()
        for p in procs:
            if p.is_alive():
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    code = d.stop(timeout=60)
    daemon_log = d.read_log()
    d.cleanup()
    test.assertEqual(code, 0, "daemon did not stop cleanly")

    # --- numbers ------------------------------------------------------------------------------
    def phase_of(t):
        if t < t_attack:
            return "baseline"
        for name, a, b in phases:
            if a <= t < b:
                return name
        return "recovery" if t >= t_attack_end else "attack"

    by_phase = collections.defaultdict(list)
    for kind, transport, t0, lat, ok, detail in good_samples:
        by_phase[phase_of(t0)].append((lat, ok, detail, kind, transport))
    report = {"good": {}, "fresh_connections": {}}
    for name in ("baseline", "attack", "flood", "after-flood", "recovery"):
        rows = by_phase.get(name, [])
        lats = [r[0] for r in rows if r[1]]
        report["good"][name] = {
            "ops": len(rows), "ok": sum(1 for r in rows if r[1]),
            "success": round(sum(1 for r in rows if r[1]) / len(rows), 4) if rows else None,
            "p50_ms": round(percentile(lats, 50) * 1000, 1) if lats else None,
            "p99_ms": round(percentile(lats, 99) * 1000, 1) if lats else None,
            "max_ms": round(max(lats) * 1000, 1) if lats else None}
        fresh = [s for s in fresh_samples if phase_of(s[1]) == name]
        report["fresh_connections"][name] = f"{sum(1 for s in fresh if s[3])}/{len(fresh)}"
    under_attack = [r for p, rows in by_phase.items() if p != "baseline" for r in rows]
    all_rows = [r for rows in by_phase.values() for r in rows]
    failures = [r for r in all_rows if not r[1]]
    report["good_total"] = {"ops": len(all_rows), "failures": len(failures),
                            "success": round(1 - len(failures) / max(1, len(all_rows)), 4),
                            "under_attack_success": round(sum(1 for r in under_attack if r[1]) / max(1, len(under_attack)), 4),
                            "failure_examples": [(r[3], r[4], r[2]) for r in failures[:8]],
                            "seconds": round(time.monotonic() - t_start, 1)}
    report["attackers"] = {k: v if len(v) > 1 else v[0] for k, v in got.items()}
    during = [kib for t, kib in rss_samples if t_attack <= t < t_attack_end]
    report["rss_mib"] = {"before": round(rss_before / 1024, 1), "max_during": round(max(during) / 1024, 1) if during else None,
                         "after": round(rss_after / 1024, 1), "peak_hwm": round(rss_hwm / 1024, 1)}
    report["rss_per_cycle_mib"] = [round(max((kib for t, kib in rss_samples if a <= t < b), default=0) / 1024, 1)
                                   for a, b in cycle_bounds]
    lines = []
    for line in daemon_log.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    events = collections.Counter(l.get("event") for l in lines)
    server_errors = [l for l in lines if l.get("event") in ("http_request", "http_rejected")
                     and isinstance(l.get("status"), int) and l["status"] >= 500 and l["status"] != 501]
    report["daemon_log"] = {"http_request": events["http_request"], "http_rejected": events["http_rejected"],
                            "connection_refused_lines": events["connection_refused"],
                            "connection_evicted_lines": events["connection_evicted"],
                            "connections_refused": sum(l.get("count", 1) for l in lines
                                                       if l.get("event") == "connection_refused"),
                            "handler_exception": events["handler_exception"], "5xx_other_than_501": len(server_errors),
                            "501": sum(1 for l in lines if l.get("status") == 501)}
    log(json.dumps(report, indent=1, default=str))

    # --- assertions --------------------------------------------------------------------------
    lim = settings.limits
    test.assertGreaterEqual(report["good_total"]["ops"], 100, "the good clients barely ran")
    test.assertGreaterEqual(report["good_total"]["success"], settings.min_success, report["good_total"])
    test.assertGreaterEqual(report["good_total"]["under_attack_success"], settings.min_success, report["good_total"])
    for name in ("attack", "flood"):
        test.assertGreater(report["good"][name]["ops"], 0, f"no good traffic during {name}")
    # New clients get in while slow attackers hold connections (outside the flood).
    for name in ("baseline", "attack", "recovery"):
        ok, total = map(int, report["fresh_connections"][name].split("/"))
        test.assertGreaterEqual(ok, total * 0.95, f"fresh connections refused during {name}")
    for cat in got["catalogue"]:
        test.assertEqual(cat["unfinished"], 0)
        test.assertEqual(cat["violation_count"], 0, json.dumps(cat["violations"][:20], indent=1))
        test.assertGreaterEqual(cat["unix"], 1000)
        test.assertGreater(cat["tls"], 0)
    deadline_s = lim["request_timeout_ms"] / 1000.0
    for name in ("slowloris", "slow_body"):
        st = got[name][0]
        test.assertGreater(st["cut"], 0, f"{name}: no connection was cut")
        # Cut by the request deadline; the slack covers the attacker's polling interval and load.
        test.assertLessEqual(st["held_max_s"], deadline_s + 3.0, f"{name} held a connection too long: {st}")
    sr = got["slow_read"][0]
    test.assertGreater(sr.get("cut", 0), 0, f"slow readers were never cut: {sr}")
    test.assertEqual(sr.get("not_closed", 0), 0, f"a slow reader's connection stayed open: {sr}")
    test.assertEqual(sr.get("served_completely", 0), 0, f"a slow reader outlasted the write timeout: {sr}")
    pl = got["pipeline"][0]
    test.assertGreater(pl.get("batches", 0), 0)
    test.assertEqual(pl.get("mismatches", 0), 0, pl.get("problems"))
    for fl in got["flood"]:
        test.assertGreater(fl["refused_at_accept"], 0, f"the flood never hit max_connections: {fl}")
    test.assertGreater(report["daemon_log"]["connection_refused_lines"], 0)
    # A flood must not become a flood of log lines (it did: one line per refused connection,
    # ~100,000 lines in 8 s here): at most about one line per second.
    flood_seconds = sum(b - a for name, a, b in phases if name == "flood")
    test.assertLessEqual(report["daemon_log"]["connection_refused_lines"], 2 * flood_seconds + 5 * settings.cycles,
                         report["daemon_log"])
    # Evictions (connection_evicted) are throttled the same way: a line a second per transport.
    test.assertLessEqual(report["daemon_log"]["connection_evicted_lines"],
                         2 * report["good_total"]["seconds"] + 5, report["daemon_log"])
    test.assertEqual(report["daemon_log"]["handler_exception"], 0)
    test.assertEqual(report["daemon_log"]["5xx_other_than_501"], 0, server_errors[:5])
    # Memory: live per-connection state is bounded by the limits: the read buffer
    # (max_header_bytes + 8 KiB), a request body (<= max_body_bytes, 1 MiB) and a response
    # (a detokenized payload <= 1 MiB, plus a plaintext copy while it is built): about 3 MiB per
    # connection at worst, times max_connections, plus 64 MiB for allocator arenas of the worker
    # threads and fragmentation.
    bound_kib = rss_before + max_conn * 3 * 1024 + 64 * 1024
    report["rss_mib"]["bound"] = round(bound_kib / 1024, 1)
    test.assertLessEqual(max(during), bound_kib, report["rss_mib"])
    test.assertLessEqual(rss_after, bound_kib, report["rss_mib"])
    return report


class FoundByHostileClientsTest(unittest.TestCase):
    """Regression tests for what the hostile-client run found (focused, so a failure names it)."""

    @classmethod
    def setUpClass(cls):
        cls.d, cls.good, cls.reads = make_daemon(Settings())

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0

    def test_json_with_a_nul_byte_is_refused(self):
        # nlohmann's lexer ends the input at a NUL byte: `{...}\0<anything>` was accepted
        # (POST /registration answered 200 and created a registration).
        for target, body in (
                ("/registration", b'{"email": "nul@example.com"}\x00{"x": [[[[[[[[[[1]]]]]]]]]]}'),
                ("/registration", b'{"email": "nul@example.com"}\x00'),
                ("/v1/access_tokens",
                 b'{"data": {"type": "access_tokens", "attributes": {"email_address": "nul@example.com"}}}\x00x')):
            with self.subTest(target=target, body=body[-12:]):
                r = self.d.request("POST", target, body=body, headers={"Content-Type": "application/json"})
                self.assertEqual(r.status, 400, r.body[:200])

    def test_pipelined_requests_after_a_failed_write_are_not_executed(self):
        # A client pipelines a big GET and a signed DELETE and does not read. The write of the
        # first answer times out and the connection is closed, so no answer can reach the client:
        # the DELETE behind it must not run (it used to: the token was gone, 204 in the log).
        s = Signer(self.d, self.good.pair["code"], self.good.pair["secret"])
        victim = s.request("POST", self.good.token_url, b"victim").header("Location")
        h = ot1_sign("DELETE", victim, {"Host": "a", "Content-Type": "text/plain", "X-OpenToken-Date": ot1_date()},
                     b"", s.code, s.secret)
        delete = ("DELETE " + victim + " HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                  + "\r\n").encode()
        c = hc.Target(self.d.sock, self.d.port, self.d.cert).connect("unix", 5)
        try:
            c.sendall(self.reads()[0] + delete)  # 1 MiB answer first, never read
            time.sleep(Settings.limits["write_timeout_ms"] / 1000.0 + 2.0)
            data, closed, _ = hc.read_until_close(c, 5)
        finally:
            c.close()
        self.assertTrue(closed)
        self.assertLess(len(data), MIB, "the big answer was written completely: no write timeout")
        self.assertEqual(s.request("GET", victim).status, 200, "the pipelined DELETE ran after the failed write")


class HostileClientsTest(unittest.TestCase):
    def test_good_clients_are_served_while_hostile_clients_attack(self):
        t0 = time.time()
        report = run_hostile(self, Settings())
        print(f"hostile clients: {time.time() - t0:.1f} s; good success {report['good_total']['success']}, "
              f"attack p99 {report['good']['attack']['p99_ms']} ms, RSS {report['rss_mib']}", flush=True)


if __name__ == "__main__":
    unittest.main()
