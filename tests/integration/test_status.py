"""Issue 18 part 3: `opentoken-admin status [--format json|text]` asks the running daemon over
its metrics socket (GET /status; no PIN) and exits 0 healthy, 1 unhealthy, 2 not running,
3 cannot tell; and the opentokend_build_info metric."""

import json
import os
import re
import socket
import time
import unittest

from harness import Daemon

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(opentokend VERSION (\S+)", f.read()).group(1)


def get(path, sock_path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock_path)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), body.decode()


def wait_for(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


class StatusTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(extra_config={"audit": {"node_id": "node-a"}})
        self.metrics = os.path.join(self.d.dir, "run", "opentokend-metrics.sock")

    def tearDown(self):
        self.d.cleanup()

    def status(self, *args):
        # No PIN: the PIN file is unreadable to the command (it must not need it).
        os.chmod(self.d.pin_file, 0)
        try:
            return self.d.admin("status", *args)
        finally:
            os.chmod(self.d.pin_file, 0o600)

    def test_running_daemon_is_healthy_in_json_and_text(self):
        self.d.start()
        r = self.status("--format", "json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        s = json.loads(r.stdout)
        self.assertEqual(s["status"], "healthy")
        self.assertEqual(s["version"], project_version())
        self.assertTrue(s["git"])
        self.assertEqual(s["node_id"], "node-a")
        self.assertEqual(s["storage_backend"], "lmdb")
        self.assertEqual(s["checks"], {"token": True, "store": True, "keys": True})
        self.assertEqual(s["key_versions"], {"kek": 1, "index": 1})
        self.assertGreaterEqual(s["uptime_seconds"], 0)
        self.assertLessEqual(abs(s["started"] + s["uptime_seconds"] - time.time()), 5)
        self.assertNotIn("detail", s)
        self.assertIn({"transport": "unix", "path": self.d.sock}, s["listeners"])
        self.assertIn({"transport": "tls", "address": "127.0.0.1", "port": self.d.port},
                      s["listeners"])
        self.assertIn({"transport": "unix", "path": self.metrics, "purpose": "metrics"},
                      s["listeners"])
        t = self.status("--format=text")
        self.assertEqual(t.returncode, 0, t.stderr)
        self.assertIn(f"opentokend {project_version()} (git ", t.stdout)
        self.assertIn("): healthy", t.stdout)
        self.assertIn("checks: token ok", t.stdout)
        self.assertEqual(self.status().stdout, t.stdout.replace(
            re.search(r"uptime: \d+ s", t.stdout).group(0),
            re.search(r"uptime: \d+ s", self.status().stdout).group(0)))

    def test_status_and_build_info_are_on_the_metrics_socket_only(self):
        self.d.start()
        code, head, body = get("/status", self.metrics)
        self.assertEqual(code, 200)
        self.assertIn("application/json", head)
        self.assertEqual(json.loads(body)["status"], "healthy")
        self.assertEqual(self.d.request("GET", "/status").status, 404)  # not on the public API
        code, _, metrics = get("/metrics", self.metrics)
        self.assertEqual(code, 200)
        line = [l for l in metrics.splitlines() if l.startswith("opentokend_build_info{")]
        self.assertEqual(len(line), 1, metrics[:2000])
        self.assertIn(f'version="{project_version()}"', line[0])
        self.assertRegex(line[0], r'git="[^"]+",compiler="[^"]+",build_type="[^"]+"\} 1$')
        self.assertIn("# TYPE opentokend_build_info gauge", metrics)

    def test_stopped_daemon_is_not_running(self):
        for phase in ("never started", "stopped"):
            with self.subTest(phase):
                r = self.status("--format", "json")
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                s = json.loads(r.stdout)
                self.assertEqual(s["status"], "not-running")
                self.assertIn(self.metrics, s["reason"])
                t = self.status()
                self.assertEqual(t.returncode, 2)
                self.assertTrue(t.stdout.startswith("not running: "), t.stdout)
                self.d.start()
                self.assertEqual(self.status().returncode, 0)
                self.assertEqual(self.d.stop(), 0)

    def test_token_gone_is_unhealthy_then_healthy_again(self):
        self.d.start()
        tokens = os.path.join(self.d.dir, "hsm", "tokens")
        os.rename(tokens, tokens + ".away")
        try:
            self.assertTrue(wait_for(lambda: self.status().returncode == 1, 20))
            r = self.status("--format", "json")
            self.assertEqual(r.returncode, 1, r.stdout)
            s = json.loads(r.stdout)
            self.assertEqual(s["status"], "unhealthy")
            self.assertFalse(s["checks"]["token"] and s["checks"]["keys"], s)
            self.assertTrue(s["detail"])
            self.assertIn("FAILED", self.status().stdout)
        finally:
            os.rename(tokens + ".away", tokens)
        self.assertTrue(wait_for(lambda: self.status().returncode == 0, 20),
                        self.status().stdout)

    def test_cannot_tell_and_usage(self):
        # Metrics disabled: there is nothing to ask.
        self.d.write_config(dict(self.d.config(), metrics={"enabled": False}))
        r = self.status("--format", "json")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertEqual(json.loads(r.stdout)["status"], "unknown")
        self.d.write_config()
        # Something listens that is not opentokend (no HTTP answer): cannot tell.
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(self.metrics)
        srv.listen(1)
        try:
            r = self.status("--format", "json")
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        finally:
            srv.close()
            os.unlink(self.metrics)
        self.assertEqual(self.status("--format", "yaml").returncode, 64)
        self.d.write_config(dict(self.d.config(), workers=-1))
        self.assertEqual(self.status().returncode, 78)


if __name__ == "__main__":
    unittest.main()
