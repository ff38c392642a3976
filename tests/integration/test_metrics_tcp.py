"""Issue 18 part 5: metrics that Prometheus can reach.

Against a real daemon:
  * the optional TCP listener (metrics.tcp): off by default; on, it serves the same exposition as
    the metrics Unix socket and nothing else; with metrics.tcp.bearer_token_file a scrape needs
    `Authorization: Bearer <token>` (401 without it, with a wrong one, with two); a token file
    that group or others may read stops start-up, naming the key;
  * the standard process_* metrics are there and plausible;
  * every metric name used by docs/monitoring/alerts.yml and docs/monitoring/grafana-dashboard.json
    exists in a live scrape (so that a renamed metric breaks this test, not the operator's alerts);
  * the rules (and the dashboard's queries, as rules) pass `promtool check rules` when promtool is
    installed (Debian: prometheus).
"""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import SOURCE, Daemon, UnixHTTPConnection, free_port
from opentoken_client import Client
from test_metrics import METRICS_CONTENT_TYPE, Scrape

MONITORING = os.path.join(SOURCE, "docs", "monitoring")
TOKEN = "s3cr3t-metrics-token-" + "x" * 16
# Made by Prometheus itself, not by the daemon.
PROMETHEUS_MADE = {"up"}
METRIC_NAME = re.compile(r"\b((?:opentokend|process)_[a-z0-9_]+|up)\b")


def tcp_get(port, path="/metrics", headers=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def family_of(sample, families):
    """The family a sample or series name belongs to (histograms: _bucket, _sum, _count)."""
    if sample in families:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix) and sample[: -len(suffix)] in families:
            return sample[: -len(suffix)]
    return None


def rule_exprs():
    text = open(os.path.join(MONITORING, "alerts.yml"), encoding="utf-8").read()
    try:
        import yaml  # python3-yaml when present; the names are checked either way
        doc = yaml.safe_load(text)
        return [r["expr"] for g in doc["groups"] for r in g["rules"]]
    except ImportError:
        return [text]


def dashboard_exprs():
    with open(os.path.join(MONITORING, "grafana-dashboard.json"), encoding="utf-8") as f:
        doc = json.load(f)
    exprs = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                exprs.append(t["expr"])
            walk(p.get("panels", []))

    walk(doc["panels"])
    for v in doc.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            exprs.append(v["query"])
    return exprs


def names_in(exprs):
    names = set()
    for e in exprs:
        names.update(METRIC_NAME.findall(e))
    return names


class MetricsTcpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="otd-it-token-")
        cls.token_file = os.path.join(cls.tmp, "metrics-token")
        with open(os.open(cls.token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(TOKEN + "\n")
        cls.tcp_port = free_port()
        cls.d = Daemon(extra_config={"metrics": {"tcp": {
            "port": cls.tcp_port, "bearer_token_file": cls.token_file}}})
        cls.d.start()
        cls.metrics_sock = os.path.join(cls.d.dir, "run", "opentokend-metrics.sock")

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, f"daemon exit code {code}"

    def scrape_tcp(self):
        status, headers, body = tcp_get(self.tcp_port,
                                        headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("Content-Type"), METRICS_CONTENT_TYPE)
        return Scrape(body.decode("utf-8"))

    def scrape_unix(self):
        conn = UnixHTTPConnection(self.metrics_sock)
        try:
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200, body)
            return Scrape(body.decode("utf-8"))
        finally:
            conn.close()

    def test_listener_is_logged_on_loopback(self):
        log = self.d.read_log()
        line = next(json.loads(l[l.index("{"):]) for l in log.splitlines()
                    if '"purpose":"metrics"' in l and '"transport":"tcp"' in l)
        self.assertEqual(line["address"], "127.0.0.1")
        self.assertEqual(line["port"], self.tcp_port)
        self.assertTrue(line["bearer_token"])

    def test_bearer_token_is_required(self):
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                        {"Authorization": "Bearer " + TOKEN[:-1]},
                        {"Authorization": "Bearer " + TOKEN + "x"},
                        {"Authorization": "Basic " + TOKEN},
                        {"Authorization": TOKEN}):
            status, hdrs, body = tcp_get(self.tcp_port, headers=headers)
            self.assertEqual(status, 401, headers)
            self.assertEqual(hdrs.get("WWW-Authenticate"), 'Bearer realm="opentokend-metrics"')
            self.assertNotIn(b"opentokend_", body)
            self.assertNotIn(b"process_", body)
        # Two Authorization fields, one of them right: refused.
        s = socket.create_connection(("127.0.0.1", self.tcp_port), timeout=5)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                      b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        finally:
            s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 401 "), data[:100])
        # The right token: the exposition.
        self.assertIn("process_cpu_seconds_total", self.scrape_tcp().families)

    def test_same_exposition_as_the_unix_socket_and_nothing_else(self):
        tcp = self.scrape_tcp()
        unix = self.scrape_unix()
        self.assertEqual(set(tcp.families), set(unix.families))
        # /status (issue 18 part 3) is served on the metrics Unix socket only.
        for path in ("/", "/healthCheck", "/metrics/x", "/tokens", "/status"):
            status, _, _ = tcp_get(self.tcp_port, path=path,
                                   headers={"Authorization": "Bearer " + TOKEN})
            self.assertEqual(status, 404, path)

    def test_process_metrics_are_plausible(self):
        first = self.scrape_tcp()
        types = {n: f["type"] for n, f in first.families.items()}
        self.assertEqual(types.get("process_cpu_seconds_total"), "counter")
        for g in ("process_resident_memory_bytes", "process_virtual_memory_bytes",
                  "process_open_fds", "process_max_fds", "process_start_time_seconds"):
            self.assertEqual(types.get(g), "gauge", g)
        pid = self.d.proc.pid
        with open(f"/proc/{pid}/statm") as f:
            pages_rss = int(f.read().split()[1])
        rss = first.get("process_resident_memory_bytes")
        self.assertGreater(rss, 4 * 1024 * 1024)
        self.assertLess(abs(rss - pages_rss * os.sysconf("SC_PAGE_SIZE")), 64 * 1024 * 1024)
        self.assertGreaterEqual(first.get("process_virtual_memory_bytes"), rss)
        open_fds = first.get("process_open_fds")
        self.assertGreater(open_fds, 5)
        self.assertLessEqual(open_fds, first.get("process_max_fds"))
        self.assertLess(abs(open_fds - len(os.listdir(f"/proc/{pid}/fd"))), 32)
        # Started by this test a few seconds ago (the kernel's start time, not a guess).
        started = first.get("process_start_time_seconds")
        self.assertLess(started, time.time() + 1)
        self.assertGreater(started, time.time() - 300)
        self.assertLess(abs(started - os.stat(f"/proc/{pid}").st_ctime), 5)
        # CPU time grows with work.
        cpu = first.get("process_cpu_seconds_total")
        self.assertGreater(cpu, 0)
        for _ in range(200):
            self.d.request("GET", "/healthCheck")
        self.assertGreater(self.scrape_tcp().get("process_cpu_seconds_total"), cpu)

    def test_audit_mail_and_log_event_metrics(self):
        s = self.scrape_tcp()
        for name, kind in (("opentokend_audit_lines_total", "counter"),
                           ("opentokend_audit_file_bytes", "gauge"),
                           ("opentokend_mail_outbox_messages", "gauge"),
                           ("opentokend_log_events_total", "counter")):
            self.assertEqual(s.families.get(name, {}).get("type"), kind, name)
        audit_file = os.path.join(self.d.dir, "data", "audit.log")
        self.assertEqual(s.get("opentokend_audit_file_bytes"), os.path.getsize(audit_file))
        # No shared outbox with the LMDB store and a spool directory.
        self.assertEqual(s.get("opentokend_mail_outbox_messages"), -1)
        # Start-up events were counted by level and event (whatever the log level).
        self.assertGreaterEqual(s.get("opentokend_log_events_total", level="info", event="ready"), 1)
        # An audited request moves the audit line count (registration start is audited).
        before = s.get("opentokend_audit_lines_total")
        Client(self.d, address="metrics-tcp@example.com").register()
        deadline = time.time() + 5
        while self.scrape_tcp().get("opentokend_audit_lines_total") <= before:
            self.assertLess(time.time(), deadline, "audit line count did not move")
            time.sleep(0.05)

    def test_every_metric_in_the_rules_and_the_dashboard_exists(self):
        # Traffic first, so that labelled families have series.
        for _ in range(3):
            self.d.request("GET", "/healthCheck")
        s = self.scrape_tcp()
        rules = names_in(rule_exprs())
        dashboard = names_in(dashboard_exprs())
        self.assertIn("opentokend_hsm_operations_total", rules)
        self.assertIn("process_cpu_seconds_total", dashboard)
        missing = sorted(n for n in (rules | dashboard) - PROMETHEUS_MADE
                         if family_of(n, s.families) is None)
        self.assertEqual(missing, [], "used by docs/monitoring but not exposed")

    @unittest.skipUnless(shutil.which("promtool"), "promtool not installed (Debian: prometheus)")
    def test_promtool_accepts_the_rules_and_the_dashboard_queries(self):
        r = subprocess.run(["promtool", "check", "rules", os.path.join(MONITORING, "alerts.yml")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Each dashboard query as a recording rule, Grafana's variables filled in.
        rules = []
        for i, e in enumerate(dashboard_exprs()):
            if e.startswith("label_values("):
                e = e[len("label_values("):e.rindex(",")]
            e = (e.replace("$__rate_interval", "5m").replace("$job", "opentokend")
                 .replace("$instance", ".*"))
            rules.append({"record": f"dashboard:query_{i}", "expr": e})
        path = os.path.join(self.tmp, "dashboard-rules.json")
        with open(path, "w") as f:
            json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)  # JSON is YAML
        r = subprocess.run(["promtool", "check", "rules", path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class MetricsTcpConfigTest(unittest.TestCase):
    def test_off_by_default(self):
        d = Daemon()
        try:
            d.start()
            self.assertNotIn('"transport":"tcp"', d.read_log())
            self.assertEqual(d.request("GET", "/healthCheck").status, 200)
        finally:
            d.stop()
            d.cleanup()

    def test_without_a_token_file_scrapes_need_no_token(self):
        port = free_port()
        d = Daemon(extra_config={"metrics": {"tcp": {"port": port}}})
        try:
            d.start()
            status, _, body = tcp_get(port)
            self.assertEqual(status, 200)
            self.assertIn(b"process_open_fds", body)
            # Not on the public TLS listener, not with other methods.
            self.assertEqual(tcp_get(port, method="POST")[0], 405)
        finally:
            d.stop()
            d.cleanup()

    def test_a_token_file_others_may_read_stops_start_up(self):
        tmp = tempfile.mkdtemp(prefix="otd-it-token-")
        token_file = os.path.join(tmp, "metrics-token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(token_file, 0o644)
        d = Daemon(extra_config={"metrics": {"tcp": {"port": free_port(),
                                                     "bearer_token_file": token_file}}})
        try:
            code, log = d.run_to_exit()
            self.assertNotEqual(code, 0)
            self.assertIn("metrics.tcp.bearer_token_file", log)
            self.assertIn("chmod 600", log)
            self.assertNotIn(TOKEN, log)
            # A short token too.
            os.chmod(token_file, 0o600)
            with open(token_file, "w") as f:
                f.write("short\n")
            code, log = d.run_to_exit()
            self.assertNotEqual(code, 0)
            self.assertIn("must be 16 to 4096 characters", log)
        finally:
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
