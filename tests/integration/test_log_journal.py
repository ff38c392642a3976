"""Issue 18 part 7: logs that journald understands, and a configurable access line.

Against a real daemon whose stdout is a file (the harness's daemon.log):
  * with JOURNAL_STREAM naming that file's device and inode (what systemd sets when stdout is
    journald's stream), every line starts with its sd-daemon(3) priority (<3> error, <4> warn,
    <6> info, <7> debug) followed by the unchanged JSON object, so `journalctl -p err` works;
  * with JOURNAL_STREAM naming another file (inherited from a parent), no prefix;
  * log.priority_prefix "on" / "off" override the detection;
  * log.access "on" writes one http_request line per request, "off" none, "sampled" one in
    log.access_sample_rate (the bytes per request of the access line are printed).
"""

import json
import os
import re
import time
import unittest

from harness import Daemon

PRIORITY = {"debug": "<7>", "info": "<6>", "warn": "<4>", "error": "<3>"}
REQUESTS = 40


def lines_of(text):
    return [l for l in text.splitlines() if l.strip()]


class JournalDaemon(Daemon):
    """The harness daemon with JOURNAL_STREAM set (None: unset) at start."""

    journal_stream = None

    def env(self):
        e = super().env()
        e.pop("JOURNAL_STREAM", None)
        if self.journal_stream is not None:
            e["JOURNAL_STREAM"] = self.journal_stream
        return e


def stream_of(path):
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


class PriorityPrefixTest(unittest.TestCase):
    def run_daemon(self, journal, extra_config=None, requests=3):
        d = JournalDaemon(extra_config=extra_config or {})
        try:
            open(d.log_path, "ab").close()  # the stream exists before the daemon starts
            if journal == "self":
                d.journal_stream = stream_of(d.log_path)
            elif journal == "other":
                d.journal_stream = stream_of(d.config_path)
            d.start()
            for _ in range(requests):
                self.assertEqual(d.request("GET", "/healthCheck").status, 200)
            self.assertEqual(d.stop(), 0)
            return lines_of(d.read_log())
        finally:
            d.cleanup()

    def assert_prefixed(self, lines):
        levels = set()
        for line in lines:
            m = re.match(r"<([0-7])>(\{.*\})$", line)
            self.assertIsNotNone(m, line)
            doc = json.loads(m.group(2))
            self.assertEqual("<" + m.group(1) + ">", PRIORITY[doc["level"]], line)
            levels.add(doc["level"])
        return levels

    def assert_plain(self, lines):
        for line in lines:
            self.assertTrue(line.startswith("{"), line)
            json.loads(line)

    def test_journal_stream_on_stdout_gets_priorities(self):
        # As root (--allow-root) the daemon warns: running_as_root.
        lines = self.run_daemon("self")
        levels = self.assert_prefixed(lines)
        self.assertIn("info", levels)
        if os.geteuid() == 0:
            self.assertIn("warn", levels)
            self.assertTrue(any(l.startswith("<4>") and "running_as_root" in l for l in lines))

    def test_errors_carry_priority_3(self):
        # A daemon that cannot start (the HSM PIN file is missing) logs startup_failed as an error.
        d = JournalDaemon()
        try:
            open(d.log_path, "ab").close()
            d.journal_stream = stream_of(d.log_path)
            os.unlink(d.pin_file)
            code, log = d.run_to_exit()
            self.assertNotEqual(code, 0)
            # The harness merges stderr, where main also writes the reason for a terminal
            # ("opentokend: ..."); the JSON lines are stdout's.
            lines = [l for l in lines_of(log) if not l.startswith("opentokend: ")]
            self.assert_prefixed(lines)
            self.assertTrue(any(l.startswith("<3>") and '"level":"error"' in l for l in lines),
                            log)
        finally:
            d.cleanup()

    def test_inherited_journal_stream_of_another_file_is_ignored(self):
        self.assert_plain(self.run_daemon("other"))

    def test_no_journal_stream_no_prefix(self):
        self.assert_plain(self.run_daemon(None))

    def test_config_overrides_the_detection(self):
        self.assert_prefixed(self.run_daemon(None, {"log": {"priority_prefix": "on"}}))
        self.assert_plain(self.run_daemon("self", {"log": {"priority_prefix": "off"}}))


class AccessLogTest(unittest.TestCase):
    def access_lines(self, log_config):
        d = Daemon(extra_config={"log": log_config} if log_config else None)
        try:
            d.start()
            before = len(d.read_log())
            for _ in range(REQUESTS):
                self.assertEqual(d.request("GET", "/healthCheck").status, 200)
            # The access line is written after the response: wait for the stop to flush.
            self.assertEqual(d.stop(), 0)
            lines = [l for l in lines_of(d.read_log()[before:]) if '"event":"http_request"' in l]
            return lines
        finally:
            d.cleanup()

    def test_on_is_one_line_per_request(self):
        lines = self.access_lines(None)
        self.assertEqual(len(lines), REQUESTS)
        per_request = sum(len(l) + 1 for l in lines) / REQUESTS
        print(f"\naccess log on: {per_request:.0f} bytes per request (the JSON line)")
        explicit = self.access_lines({"access": "on"})
        self.assertEqual(len(explicit), REQUESTS)

    def test_off_writes_none(self):
        self.assertEqual(self.access_lines({"access": "off"}), [])
        print(f"\naccess log off: 0 bytes per request")

    def test_sampled_writes_one_in_n(self):
        lines = self.access_lines({"access": "sampled", "access_sample_rate": 10})
        self.assertEqual(len(lines), REQUESTS // 10)
        for l in lines:
            self.assertEqual(json.loads(l)["sample_rate"], 10)
        per_request = sum(len(l) + 1 for l in lines) / REQUESTS
        print(f"\naccess log sampled 1/10: {per_request:.0f} bytes per request")

    def test_slow_requests_are_logged_even_when_off(self):
        # The latency runs from the request's first byte: a body sent 300 ms after its header
        # makes a slow request.
        d = Daemon(extra_config={"log": {"access": "off", "access_slow_ms": 100}})
        try:
            d.start()
            before = len(d.read_log())
            for _ in range(5):
                self.assertEqual(d.request("GET", "/healthCheck").status, 200)
            s = d.raw_socket("unix")
            s.sendall(b"POST /healthCheck HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                      b"Content-Type: application/json\r\nConnection: close\r\n\r\n")
            time.sleep(0.3)
            s.sendall(b"{}")
            reply = s.recv(4096)
            s.close()
            self.assertTrue(reply.startswith(b"HTTP/1.1 "), reply)
            self.assertEqual(d.stop(), 0)
            lines = [json.loads(l) for l in lines_of(d.read_log()[before:])
                     if '"event":"http_request"' in l]
            self.assertEqual(len(lines), 1, lines)
            self.assertEqual(lines[0]["method"], "POST")
            self.assertGreaterEqual(lines[0]["latency_us"], 300_000)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
