"""Issue 8 item 4: the admin-only metrics listener (GET /metrics, Prometheus text format 0.0.4).

Scrapes go to the metrics Unix socket and are parsed by a strict parser written here (every line a
HELP, TYPE or sample line; TYPE before the samples of its family; histogram buckets cumulative and
ending in +Inf == _count); the tests then check that the counters moved by exactly what the test
sent, that nothing secret or identifying is in the text, and that /metrics exists nowhere else.
"""

import math
import os
import re
import stat
import time
import unittest

from harness import Daemon, UnixHTTPConnection, status_of
from opentoken_client import Signer, expand, find_link, logged_in_user

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
FLOAT = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ExpositionError(AssertionError):
    pass


def parse_labels(line, pos):
    """Parses `{a="x",b="y"}` at line[pos]; returns (labels, position after '}')."""
    labels = {}
    assert line[pos] == "{"
    pos += 1
    if line[pos:pos + 1] == "}":
        raise ExpositionError(f"empty label set: {line!r}")
    while True:
        m = re.compile(LABEL).match(line, pos)
        if not m:
            raise ExpositionError(f"bad label name at {pos}: {line!r}")
        name = m.group(0)
        pos = m.end()
        if line[pos:pos + 2] != '="':
            raise ExpositionError(f"expected =\" after {name}: {line!r}")
        pos += 2
        value = []
        while True:
            if pos >= len(line):
                raise ExpositionError(f"unterminated label value: {line!r}")
            ch = line[pos]
            if ch == "\\":
                esc = line[pos + 1:pos + 2]
                if esc not in ("\\", '"', "n"):
                    raise ExpositionError(f"bad escape \\{esc} in label value: {line!r}")
                value.append("\n" if esc == "n" else esc)
                pos += 2
            elif ch == '"':
                pos += 1
                break
            elif ch == "\n":
                raise ExpositionError(f"raw newline in label value: {line!r}")
            else:
                value.append(ch)
                pos += 1
        if name in labels:
            raise ExpositionError(f"label {name} twice: {line!r}")
        labels[name] = "".join(value)
        if line[pos:pos + 1] == ",":
            pos += 1
            continue
        if line[pos:pos + 1] == "}":
            return labels, pos + 1
        raise ExpositionError(f"expected , or }} at {pos}: {line!r}")


def parse_exposition(text):
    """Strict parser for what the daemon must emit. Returns {family: {"type", "help", "samples"}}
    with samples as (sample name, labels dict, float value)."""
    if not text.endswith("\n"):
        raise ExpositionError("exposition does not end with a newline")
    families = {}
    current = None  # the family whose samples may follow
    seen_series = set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            m = re.fullmatch(rf"# HELP ({NAME}) (.*)", line)
            if not m:
                raise ExpositionError(f"bad HELP line: {line!r}")
            name, doc = m.groups()
            if re.search(r"\\(?![\\n])", doc):
                raise ExpositionError(f"bad escape in HELP: {line!r}")
            if name in families:
                raise ExpositionError(f"second HELP (or HELP after samples) for {name}")
            families[name] = {"help": doc, "type": None, "samples": []}
            current = None
            continue
        if line.startswith("# TYPE "):
            m = re.fullmatch(rf"# TYPE ({NAME}) (\w+)", line)
            if not m or m.group(2) not in TYPES:
                raise ExpositionError(f"bad TYPE line: {line!r}")
            name, typ = m.groups()
            fam = families.get(name)
            if fam is None or fam["type"] is not None or fam["samples"]:
                raise ExpositionError(f"TYPE for {name} not right after its HELP")
            fam["type"] = typ
            current = name
            continue
        if line.startswith("#") or not line:
            raise ExpositionError(f"unexpected line: {line!r}")
        m = re.compile(NAME).match(line)
        if not m:
            raise ExpositionError(f"bad sample line: {line!r}")
        sample = m.group(0)
        pos = m.end()
        labels = {}
        if line[pos:pos + 1] == "{":
            labels, pos = parse_labels(line, pos)
        v = re.fullmatch(rf" ({FLOAT})", line[pos:])
        if not v:
            raise ExpositionError(f"bad value (or a timestamp) in: {line!r}")
        value = float(v.group(1).replace("Inf", "inf"))
        if current is None:
            raise ExpositionError(f"sample before any TYPE: {line!r}")
        fam = families[current]
        allowed = {current} if fam["type"] != "histogram" else {
            current + "_bucket", current + "_sum", current + "_count"}
        if sample not in allowed:
            raise ExpositionError(f"sample {sample} outside its family block ({current}): {line!r}")
        if ("le" in labels) != (sample.endswith("_bucket") and fam["type"] == "histogram"):
            raise ExpositionError(f"le label misplaced: {line!r}")
        key = (sample, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ExpositionError(f"series twice: {line!r}")
        seen_series.add(key)
        if fam["type"] == "counter" and not (value >= 0 and math.isfinite(value)):
            raise ExpositionError(f"counter not a finite non-negative number: {line!r}")
        fam["samples"].append((sample, labels, value))
    for name, fam in families.items():
        if fam["type"] is None:
            raise ExpositionError(f"HELP without TYPE for {name}")
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    groups = {}
    for sample, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sample.endswith("_bucket"):
            if g["sum"] is not None or g["count"] is not None:
                raise ExpositionError(f"{name}{rest}: bucket after _sum/_count")
            g["buckets"].append((labels["le"], value))
        elif sample.endswith("_sum"):
            g["sum"] = value
        else:
            g["count"] = value
    for rest, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != "+Inf":
            raise ExpositionError(f"{name}{rest}: buckets do not end with le=\"+Inf\"")
        bounds = [float(le.replace("Inf", "inf")) for le, _ in b]
        if any(x >= y for x, y in zip(bounds, bounds[1:])):
            raise ExpositionError(f"{name}{rest}: le bounds not increasing: {bounds}")
        counts = [c for _, c in b]
        if any(x > y for x, y in zip(counts, counts[1:])):
            raise ExpositionError(f"{name}{rest}: buckets not cumulative: {counts}")
        if g["count"] is None or g["sum"] is None:
            raise ExpositionError(f"{name}{rest}: _sum or _count missing")
        if counts[-1] != g["count"]:
            raise ExpositionError(f"{name}{rest}: +Inf bucket {counts[-1]} != _count {g['count']}")


class Scrape:
    def __init__(self, text):
        self.text = text
        self.families = parse_exposition(text)
        self.index = {}
        for fam in self.families.values():
            for sample, labels, value in fam["samples"]:
                self.index[(sample, tuple(sorted(labels.items())))] = value

    def get(self, sample, **labels):
        """The value of one series; 0 when the series does not exist (yet)."""
        return self.index.get((sample, tuple(sorted(labels.items()))), 0.0)

    def has(self, sample, **labels):
        return (sample, tuple(sorted(labels.items()))) in self.index

    def series(self, sample):
        return [(dict(k[1]), v) for k, v in self.index.items() if k[0] == sample]


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        cls.d.start()
        cls.metrics_sock = os.path.join(cls.d.dir, "run", "opentokend-metrics.sock")
        cls.spool = os.path.join(cls.d.dir, "mail")
        cls.address = "metrics-alice@example.com"
        cls.user = logged_in_user(cls.d, cls.spool, cls.address)
        account = cls.user.req("GET", find_link(cls.user.login_reply, rel="up", title="account")["href"])
        pair = cls.user.req("POST", find_link(account, title="account-accessCode")["href"],
                            {"description": "metrics test"})
        assert pair.status == 201, pair.body
        cls.pair = pair.json()
        cls.token_url = expand(find_link(account, title="account-token-create")["href"],
                               accountId=cls.user.account_id)
        cls.signer = Signer(cls.d, cls.pair["code"], cls.pair["secret"])
        cls.created = []   # Location of every token created
        cls.deleted = []
        cls.payloads = []

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, f"daemon exit code {code}"

    # --- helpers -----------------------------------------------------------------------------
    def metrics_request(self, method="GET", path="/metrics", body=None):
        conn = UnixHTTPConnection(self.metrics_sock)
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def scrape(self):
        status, headers, body = self.metrics_request()
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("Content-Type"), METRICS_CONTENT_TYPE)
        return Scrape(body.decode("utf-8"))

    def wait_for(self, predicate, what, timeout=5.0):
        """Requests are counted right after their response is written: poll briefly."""
        deadline = time.time() + timeout
        while True:
            s = self.scrape()
            if predicate(s):
                return s
            if time.time() > deadline:
                self.fail(f"{what} not reached; last scrape:\n{s.text}")
            time.sleep(0.05)

    def tokenize(self, body):
        r = self.signer.request("POST", self.token_url, body)
        self.assertEqual(r.status, 201, r.body)
        self.created.append(r.header("Location"))
        self.payloads.append(body)
        return r.header("Location")

    # --- tests -------------------------------------------------------------------------------
    def test_exposition_parses_and_has_every_family(self):
        s = self.scrape()
        expected = {
            "opentokend_http_requests_total": "counter",
            "opentokend_http_request_duration_seconds": "histogram",
            "opentokend_http_connections_open": "gauge",
            "opentokend_http_connections_accepted_total": "counter",
            "opentokend_http_connections_rejected_total": "counter",
            "opentokend_http_connections_evicted_total": "counter",
            "opentokend_hsm_operations_total": "counter",
            "opentokend_hsm_operation_duration_seconds": "histogram",
            "opentokend_hsm_unwrap_cache_hits_total": "counter",
            "opentokend_hsm_unwrap_cache_misses_total": "counter",
            "opentokend_hsm_sessions_open": "gauge",
            "opentokend_hsm_sessions_in_use": "gauge",
            "opentokend_hsm_sessions_max": "gauge",
            "opentokend_store_commit_duration_seconds": "histogram",
            "opentokend_store_batch_mutations": "histogram",
            "opentokend_store_commits_total": "counter",
            "opentokend_store_records": "gauge",
            "opentokend_store_map_size_bytes": "gauge",
            "opentokend_store_used_bytes": "gauge",
            "opentokend_key_version": "gauge",
            "process_resident_memory_bytes": "gauge",
            "process_open_fds": "gauge",
            "process_start_time_seconds": "gauge",
        }
        for name, typ in expected.items():
            self.assertIn(name, s.families)
            self.assertEqual(s.families[name]["type"], typ, name)
            self.assertTrue(s.families[name]["help"], name)
        self.assertGreater(s.get("process_resident_memory_bytes"), 1024 * 1024)
        self.assertGreater(s.get("process_open_fds"), 3)
        self.assertLess(abs(s.get("process_start_time_seconds") - time.time()), 600)
        self.assertEqual(s.get("opentokend_hsm_sessions_max"), 8)
        self.assertGreaterEqual(s.get("opentokend_hsm_sessions_open"), 1)
        self.assertEqual(s.get("opentokend_store_map_size_bytes"), 64 * 1024 * 1024)
        self.assertGreater(s.get("opentokend_store_used_bytes"), 0)

    def test_the_strict_parser_refuses_broken_expositions(self):
        good = ('# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
                'h_sum 3\nh_count 2\n')
        parse_exposition(good)
        broken = [
            good.replace('h_count 2', 'h_count 3'),                       # +Inf != count
            good.replace('le="1"} 1', 'le="1"} 5'),                       # not cumulative
            good.replace('h_bucket{le="+Inf"} 2\n', ''),                  # no +Inf
            good.replace('# TYPE h histogram\n', ''),                     # no TYPE
            'c_total 1\n# HELP c_total C.\n# TYPE c_total counter\n',     # sample before TYPE
            '# HELP c C.\n# TYPE c counter\nc{a="x\\q"} 1\n',             # bad escape
            '# HELP c C.\n# TYPE c counter\nc{a="x"} 1 1700000000\n',     # timestamp
            '# HELP c C.\n# TYPE c counter\nc -1\n',                      # negative counter
            '# HELP c C.\n# TYPE c counter\nc 1\nc 2\n',                  # series twice
            '# HELP c C.\n# TYPE c counter\nd 1\n',                       # outside its family
            '# HELP c C.\n# TYPE c counter\nc 1',                         # no final newline
        ]
        for text in broken:
            with self.assertRaises(ExpositionError, msg=text):
                parse_exposition(text)

    def test_request_counts_move_by_exactly_what_was_sent(self):
        before = self.scrape()
        post = dict(route="/account/{id}/token", method="POST")
        get = dict(route="/account/{id}/token/{tokenId}", method="GET")
        delete = dict(route="/account/{id}/token/{tokenId}", method="DELETE")
        locations = [self.tokenize(f"metrics-payload-{i}".encode()) for i in range(3)]
        for loc in locations:
            g = self.signer.request("GET", loc)
            self.assertEqual(g.status, 200)
        self.assertEqual(self.signer.request("DELETE", locations[0]).status, 204)
        self.deleted.append(locations[0])

        def bad_signature(h, body):
            h = dict(h)
            h["Authorization"] = h["Authorization"][:-4] + ("0000" if not h["Authorization"].endswith("0000") else "1111")
            return h, body
        self.assertEqual(self.signer.request("POST", self.token_url, b"x", tamper=bad_signature).status, 401)
        self.assertEqual(self.d.request("GET", "/no-such-route").status, 404)
        self.assertEqual(self.d.request("GET", f"/account/{self.user.account_id}/nope").status, 404)
        self.assertEqual(self.d.request("PATCH", "/", body=b"").status, 405)
        raw, _ = self.d.raw(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        self.assertEqual(status_of(raw), 400)
        connections = 3 + 3 + 1 + 1 + 2 + 1 + 1  # one connection per request above

        expected = {
            ("opentokend_http_requests_total", tuple(sorted(dict(post, status="201").items()))): 3,
            ("opentokend_http_requests_total", tuple(sorted(dict(post, status="401").items()))): 1,
            ("opentokend_http_requests_total", tuple(sorted(dict(get, status="200").items()))): 3,
            ("opentokend_http_requests_total", tuple(sorted(dict(delete, status="204").items()))): 1,
            ("opentokend_http_requests_total",
             tuple(sorted(dict(route="(not-found)", method="GET", status="404").items()))): 2,
            ("opentokend_http_requests_total",
             tuple(sorted(dict(route="(method-not-allowed)", method="PATCH", status="405").items()))): 1,
            ("opentokend_http_requests_total",
             tuple(sorted(dict(route="(rejected)", method="GET", status="400").items()))): 1,
            ("opentokend_http_request_duration_seconds_count", tuple(sorted(post.items()))): 4,
            ("opentokend_http_request_duration_seconds_count", tuple(sorted(get.items()))): 3,
            ("opentokend_http_request_duration_seconds_count", tuple(sorted(delete.items()))): 1,
            ("opentokend_http_connections_accepted_total", (("transport", "unix"),)): connections,
        }

        def delta(s, key):
            return s.index.get(key, 0.0) - before.index.get(key, 0.0)

        after = self.wait_for(lambda s: all(delta(s, k) >= v for k, v in expected.items()),
                              "expected request counts")
        for key, want in expected.items():
            self.assertEqual(delta(after, key), want, key)
        # Nothing else moved: the total of all request series grew by exactly the requests sent.
        total = lambda s: sum(v for (n, _), v in s.index.items() if n == "opentokend_http_requests_total")
        self.assertEqual(total(after) - total(before), connections)
        # Every route label is a pattern or one of the collapsed values, never a raw path.
        routes = {l["route"] for l, _ in after.series("opentokend_http_requests_total")}
        for r in routes:
            self.assertTrue(r in ("(not-found)", "(method-not-allowed)", "(rejected)")
                            or re.fullmatch(r"(/([A-Za-z0-9_.-]+|\{[A-Za-z]+\}|\*\*))+|/", r), r)
        self.assertNotIn("/no-such-route", after.text)
        self.assertNotIn("nope", after.text)
        # The connections above were all closed by the client: the gauge comes back to zero; a
        # connection held open is counted while it lasts.
        self.wait_for(lambda s: s.get("opentokend_http_connections_open", transport="unix") == 0,
                      "open unix connections back to 0")
        held = self.d.raw_socket("unix")
        try:
            self.wait_for(lambda s: s.get("opentokend_http_connections_open", transport="unix") == 1,
                          "one open unix connection")
        finally:
            held.close()
        self.wait_for(lambda s: s.get("opentokend_http_connections_open", transport="unix") == 0,
                      "open unix connections back to 0 after the held one")

    def test_hsm_store_and_key_version_metrics(self):
        before = self.scrape()
        loc = self.tokenize(b"metrics-hsm-payload")
        self.assertEqual(self.signer.request("GET", loc).status, 200)
        after = self.scrape()
        ops = "opentokend_hsm_operations_total"
        for op in ("encrypt", "decrypt", "sign", "verify"):
            self.assertGreater(after.get(ops, op=op, result="ok") - before.get(ops, op=op, result="ok"), 0, op)
        for op in ("login", "open_session", "unwrap", "generate_wrapped", "import_wrapped"):
            self.assertGreater(after.get(ops, op=op, result="ok"), 0, op)
        # Each operation's latency histogram saw exactly the operations counted.
        for labels, _ in after.series("opentokend_hsm_operation_duration_seconds_count"):
            op = labels["op"]
            self.assertEqual(after.get("opentokend_hsm_operation_duration_seconds_count", op=op),
                             after.get(ops, op=op, result="ok") + after.get(ops, op=op, result="error"), op)
        cache = after.get("opentokend_hsm_unwrap_cache_hits_total") + after.get("opentokend_hsm_unwrap_cache_misses_total")
        self.assertGreater(cache, 0)
        self.assertGreater(after.get("opentokend_hsm_unwrap_cache_hits_total"), 0)  # same account, warm
        # Store: at least the tokenize committed; every commit observed once in both histograms.
        commits = after.get("opentokend_store_commits_total")
        self.assertGreater(commits - before.get("opentokend_store_commits_total"), 0)
        self.assertEqual(after.get("opentokend_store_commit_duration_seconds_count"), commits)
        self.assertEqual(after.get("opentokend_store_batch_mutations_count"), commits)
        self.assertGreaterEqual(after.get("opentokend_store_batch_mutations_sum"), 1)
        self.assertEqual(after.get("opentokend_key_version", key="kek"), 1)
        self.assertEqual(after.get("opentokend_key_version", key="index"), 1)

    def test_records_per_table_match_what_was_created(self):
        for i in range(2):
            self.tokenize(f"metrics-records-{i}".encode())
        loc = self.tokenize(b"metrics-records-deleted")
        self.assertEqual(self.signer.request("DELETE", loc).status, 204)
        self.deleted.append(loc)
        s = self.scrape()
        tables = {l["table"]: v for l, v in s.series("opentokend_store_records")}
        self.assertEqual(tables["tokens"], len(self.created) - len(self.deleted), tables)
        self.assertEqual(tables["accounts"], 1, tables)
        self.assertEqual(tables["access_codes"], 1, tables)
        for name in ("meta", "registrations", "sessions", "access_tokens"):
            self.assertIn(name, tables)

    def test_metrics_socket_is_private_and_serves_nothing_else(self):
        st = os.stat(self.metrics_sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, os.geteuid())
        for path in ("/", "/healthCheck", "/metrics/", "/metrics/x", "/schema/common.json"):
            status, headers, body = self.metrics_request("GET", path)
            self.assertEqual(status, 404, path)
            self.assertEqual(headers.get("Content-Type"), "application/vnd.error+json")
            self.assertNotIn(b"opentokend_", body)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, body = self.metrics_request(method, "/metrics", body=b"")
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get("Allow"), "GET")
            self.assertNotIn(b"opentokend_", body)
        status, headers, body = self.metrics_request("HEAD", "/metrics")
        self.assertEqual((status, body), (200, b""))

    def test_metrics_are_not_served_on_the_public_listeners(self):
        for transport in ("unix", "tls"):
            for method in ("GET", "HEAD"):
                r = self.d.request(method, "/metrics", transport=transport)
                self.assertEqual(r.status, 404, (transport, method))
                self.assertNotIn(b"opentokend_", r.body)
        r = self.d.request("GET", "/metrics", transport="tls")
        self.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
        # And they were counted like any unknown route.
        s = self.wait_for(lambda s: s.get("opentokend_http_connections_accepted_total", transport="tls") >= 3,
                          "TLS connections counted")
        self.assertGreaterEqual(s.get("opentokend_http_requests_total", route="(not-found)", method="GET",
                                      status="404"), 3)

    def test_no_secret_or_identifier_appears_in_the_scrape(self):
        self.tokenize(b"metrics-secret-payload-4111111111111111")
        text = self.scrape().text
        forbidden = [self.address, self.user.account_id, self.pair["code"], self.pair["secret"],
                     self.user.cookie, self.user.seed.hex(), self.d.pin]
        forbidden += [loc.rsplit("/", 1)[1] for loc in self.created]
        forbidden += [p.decode() for p in self.payloads]
        for value in forbidden:
            self.assertTrue(value)
            self.assertNotIn(value, text)
            self.assertNotIn(value.lower(), text.lower())
        self.assertNotIn("@", text)
        self.assertNotIn("4111111111111111", text)


class MetricsDisabledTest(unittest.TestCase):
    def test_disabled_metrics_open_no_socket(self):
        d = Daemon(extra_config={"metrics": {"enabled": False}})
        try:
            d.start()
            self.assertEqual(d.request("GET", "/healthCheck").status, 200)
            self.assertFalse(os.path.exists(os.path.join(d.dir, "run", "opentokend-metrics.sock")))
            self.assertEqual(d.request("GET", "/metrics").status, 404)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()

    def test_explicit_path_and_mode_are_used_and_the_socket_removed_on_stop(self):
        d = Daemon()
        sock = os.path.join(d.dir, "admin.sock")
        c = d.config()
        c["metrics"] = {"unix": {"path": sock, "mode": "0640"}}
        d.write_config(c)
        try:
            d.start()
            self.assertEqual(stat.S_IMODE(os.stat(sock).st_mode), 0o640)
            self.assertFalse(os.path.exists(os.path.join(d.dir, "run", "opentokend-metrics.sock")))
            conn = UnixHTTPConnection(sock)
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            body = r.read().decode()
            conn.close()
            self.assertEqual(r.status, 200)
            parse_exposition(body)
            self.assertEqual(d.stop(), 0)
            self.assertFalse(os.path.exists(sock))
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
