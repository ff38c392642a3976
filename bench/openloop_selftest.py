#!/usr/bin/env python3
"""Self-check of otd-loadgen's open loop (--rate) against a fake HTTP server on a Unix socket
whose answers take a known time (issue 20). Stdlib only; ctest runs it as bench_openloop_selftest.

  bench/openloop_selftest.py [--loadgen build-bench/bin/otd-loadgen]

Checks:
 1. fixed delay D: every latency (so p50 and the minimum of what is reported) >= D; the number of
    scheduled arrivals is Poisson(rate x duration) (within 5 sigma); nothing dropped, no errors.
 2. a stall: the server answers nothing for S seconds in the middle of the run, 4 connections:
    latency is measured from the scheduled time, so the ~rate x S arrivals during the stall wait
    and are recorded with that wait: max >= 0.9 S, p99 >= 0.5 S, many requests late. A generator
    with coordinated omission (latency from the actual send, --coordinated-omission) records
    only the 4 in-flight requests as slow: p99 stays small. The self-check runs that variant too
    and requires check 2 to FAIL on it, so check 2 is shown to be able to fail.
 3. a bounded queue: the same stall with --max-queue 50: arrivals beyond it are dropped and
    counted.
Exit 0 when all hold; 1 with the reason otherwise.
"""

import argparse
import json
import math
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class FakeServer:
    """Answers every request with 201 after `delay` s; no answer is sent inside the stall window
    [first request + stall_at, + stall_len) (an answer due in it waits for its end)."""

    def __init__(self, path, delay, stall_at=None, stall_len=0.0):
        self.delay, self.stall_at, self.stall_len = delay, stall_at, stall_len
        self.first = None
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = self.request.recv(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v.strip())
                    while len(buf) < length:
                        data = self.request.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = buf[length:]
                    outer.wait_turn()
                    self.request.sendall(b"HTTP/1.1 201 Created\r\nLocation: /account/a/token/"
                                         b"t0\r\nContent-Length: 0\r\n\r\n")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_turn(self):
        now = time.monotonic()
        with self.lock:
            if self.first is None:
                self.first = now
        time.sleep(self.delay)
        if self.stall_at is not None:
            start = self.first + self.stall_at
            end = start + self.stall_len
            now = time.monotonic()
            if start <= now < end:
                time.sleep(end - now)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def run(loadgen, path, rate, connections, warmup, duration, extra=()):
    args = [loadgen, "--unix", path, "--account", "a", "--code", "c", "--secret", "s",
            "--mode", "tokenize64", "--rate", str(rate), "--connections", str(connections),
            "--warmup", str(warmup), "--duration", str(duration), "--seed", "7", *extra]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"otd-loadgen failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_fixed(res, delay, rate, duration):
    why = []
    if res["p50_ms"] < delay * 1000:
        why.append(f"p50 {res['p50_ms']} ms < the server's delay {delay * 1000} ms")
    lam = rate * duration
    if abs(res["scheduled"] - lam) > 5 * math.sqrt(lam):
        why.append(f"{res['scheduled']} arrivals scheduled, Poisson mean {lam:.0f}")
    if res["dropped"] or res["errors"] or res["incomplete"]:
        why.append(f"dropped {res['dropped']} errors {res['errors']} incomplete "
                   f"{res['incomplete']}")
    if res["requests"] != res["scheduled"]:
        why.append(f"{res['requests']} recorded != {res['scheduled']} scheduled")
    return why


def check_stall(res, stall):
    why = []
    if res["max_ms"] < 0.9 * stall * 1000:
        why.append(f"max {res['max_ms']} ms < 0.9 x the stall {stall * 1000:.0f} ms")
    if res["p99_ms"] < 0.5 * stall * 1000:
        why.append(f"p99 {res['p99_ms']} ms < 0.5 x the stall {stall * 1000:.0f} ms "
                   "(coordinated omission?)")
    if res["late"] < 20:
        why.append(f"only {res['late']} requests late during a {stall} s stall")
    return why


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loadgen", default=os.path.join(os.path.dirname(HERE), "build-bench", "bin",
                                                      "otd-loadgen"))
    a = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory(prefix="otd-openloop-") as tmp:
        def case(name, delay, stall_at, stall_len, rate, conns, warmup, duration, extra, check):
            path = os.path.join(tmp, name + ".sock")
            srv = FakeServer(path, delay, stall_at, stall_len)
            try:
                res = run(a.loadgen, path, rate, conns, warmup, duration, extra)
            finally:
                srv.close()
            why = check(res)
            print(f"{name}: p50 {res['p50_ms']} p99 {res['p99_ms']} p99.9 {res['p999_ms']} max "
                  f"{res['max_ms']} ms; scheduled {res['scheduled']} recorded {res['requests']} "
                  f"late {res['late']} dropped {res['dropped']} incomplete {res['incomplete']}: "
                  f"{'ok' if not why else '; '.join(why)}", flush=True)
            return why

        # 1. fixed delay
        d, rate, dur = 0.004, 300, 2.0
        failures += case("fixed-delay", d, None, 0, rate, 8, 0.5, dur, (),
                         lambda r: check_fixed(r, d, rate, dur))
        # 2. stall, open loop (must pass) and with coordinated omission (must fail)
        stall = 1.0
        failures += case("stall", 0.001, 1.0, stall, 200, 4, 0.5, 3.0, (),
                         lambda r: check_stall(r, stall))
        co = case("stall-coordinated-omission", 0.001, 1.0, stall, 200, 4, 0.5, 3.0,
                  ("--coordinated-omission",), lambda r: check_stall(r, stall))
        if not co:
            failures.append("the stall check passed on a generator with coordinated omission: "
                            "it cannot tell the two apart")
        # 3. bounded queue: drops are counted
        def check_drops(r):
            return [] if r["dropped"] >= 50 else [f"only {r['dropped']} dropped behind a 1 s "
                                                  "stall with --max-queue 50"]
        failures += case("bounded-queue", 0.001, 1.0, stall, 200, 4, 0.5, 3.0,
                         ("--max-queue", "50"), check_drops)
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("open-loop self-check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
