#!/usr/bin/env python3
"""bench/bulk_load.py: loads N tokens into one opentokend vault through the real API (OT1-signed
64 B tokenize over the Unix socket, by otd-loadgen --count) and measures the vault as it grows
(issue 20, "10 million tokens").

  bench/bulk_load.py --state DIR --count N [--chunk 100000] [--checkpoint 1000000]
                     [--connections 32] [--rate-secs 3] [--map-size-mb 16384]
                     [--build-dir DIR] [--no-build] [--keep-log]
  (also: bench/run --bulk-load N --state DIR ...)

State: DIR holds the whole vault (SoftHSM2 token and PIN, TLS pair, config, LMDB, audit trail)
plus bulk-state.json (the account and the access code the loader uses; mode 0600),
bulk-ids.txt (a sample of the ids created: one in --save-every, used to detokenize across the
whole store) and bulk-results.jsonl (every line this tool prints). DIR survives: run the
command again with the same DIR (and the same or a larger N) to resume after an interruption,
or to measure the same vault again; the count of tokens stored is read from the store itself
(mdb_stat), so an interrupted chunk is never counted twice.

Output (stdout, JSON lines; a human summary at the end on stderr and stdout):
  {"event":"progress", "tokens":..., "target":..., "chunk_rps":..., "errors":..., "eta_s":...}
  {"event":"checkpoint", "tokens":..., "memory":{VmRSS, RssAnon, RssFile, VmHWM},
   "data_mdb":{file_bytes, allocated_bytes, rss_bytes, ...}, "bytes_per_token":...,
   "rates":{"tokenize64":..., "detok-private":...}, "audit_bytes_per_request":...,
   "log_bytes_per_request":...}
A checkpoint is taken at the start, every --checkpoint tokens and at the end. Its rates are a
short closed-loop run (--rate-secs, 32 connections) of tokenize 64 B and of detokenize private
(on the sample of ids spread over the whole load, so that reads touch the whole store).
At the end (--compare-fresh ROUNDS, default 4) the loaded vault and a fresh vault are measured
alternately (A B, B A, ...), {"event":"compare-fresh", "loaded":{rates}, "fresh":{rates}}: on a shared machine
the load changes over an hour-long run, so "the rate at N >= 90 % of the rate at 0" is judged on
these same-time pairs (the checkpoint at 0 is kept for the record).

The daemon's stderr (the access log) goes to DIR/daemon.log; it is measured and then truncated
after every chunk (--keep-log keeps it: about 300 B per request). The audit trail is the vault's
and is kept: count on about 0.4 KB per token of disk besides the store.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MIB = 1024 * 1024


def log(msg):
    print(f"[bulk] {msg}", file=sys.stderr, flush=True)


def emit(state_dir, rec):
    """One JSON line on stdout and in DIR/bulk-results.jsonl."""
    line = json.dumps(rec, sort_keys=True)
    print(line, flush=True)
    with open(os.path.join(state_dir, "bulk-results.jsonl"), "a") as f:
        f.write(line + "\n")


def build(build_dir):
    log(f"building (Release) in {build_dir}")
    subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-G", "Ninja",
                    "-DCMAKE_BUILD_TYPE=Release", "-DOTD_BUILD_BENCH=ON"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build_dir, "-j2", "--target", "opentokend",
                    "opentoken-admin", "otd-loadgen"], check=True)


def persistent_daemon_class(harness):
    class PersistentDaemon(harness.Daemon):
        """harness.Daemon on a given state dir that survives: fresh=True makes the state (token,
        PIN, TLS pair, config, keys), fresh=False re-opens the one made before."""

        # Not super().__init__: that makes a temp dir.
        def __init__(self, state_dir, fresh, map_size_mb):  # noqa
            self.dir = state_dir
            self.hsm_from = None
            self.limits = {}
            self.extra_config = {}
            self.proc = None
            self.log_path = os.path.join(self.dir, "daemon.log")
            self.port = harness.free_port()
            self.map_size_mb = map_size_mb
            if fresh:
                self._make_state()
                self.admin("init", check=True)
            else:
                self.conf = os.path.join(self.dir, "hsm", "softhsm2.conf")
                self.pin_file = os.path.join(self.dir, "hsm", "pin")
                self.cert = os.path.join(self.dir, "tls", "cert.pem")
                self.key = os.path.join(self.dir, "tls", "key.pem")
                self.sock = os.path.join(self.dir, "run", "opentokend.sock")
                self.config_path = os.path.join(self.dir, "opentokend.json")
                self.write_config()  # a fresh TLS port

        def config(self):
            c = super().config()
            c["storage"] = {"path": os.path.join(self.dir, "data"),
                            "map_size_mb": self.map_size_mb}
            return c
    return PersistentDaemon


def register(harness_mod, d):
    from opentoken_client import Client, find_link  # noqa: E402
    c = Client(d, address="bulk@example.com")
    c.full_registration(os.path.join(d.dir, "mail"))
    r = c.login()
    assert r.status == 200, r.body
    account = c.req("GET", find_link(r, rel="up", title="account")["href"])
    pair = c.req("POST", find_link(account, title="account-accessCode")["href"],
                 {"description": "bulk load"})
    assert pair.status == 201, pair.body
    p = pair.json()
    return {"account": c.account_id, "code": p["code"], "secret": p["secret"]}


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def mapping_rss(pid, path_suffix):
    """Sums the smaps fields of the mappings of one file (e.g. data.mdb): how much of RssFile it
    is, and how much of that is clean (the kernel can drop clean file pages under pressure and
    read them back; dirty ones it must write first)."""
    out = {}
    cur = False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if head and re.match(r"^[0-9a-f]+-[0-9a-f]+$", head[0]):
                    cur = len(head) >= 6 and head[5].endswith(path_suffix)
                    continue
                if cur and line.endswith("kB\n"):
                    k, _, v = line.partition(":")
                    if k in ("Rss", "Pss", "Shared_Clean", "Private_Clean", "Shared_Dirty",
                             "Private_Dirty", "Referenced", "Anonymous", "Swap", "Locked"):
                        out[k] = out.get(k, 0) + int(v.split()[0]) * 1024
    except OSError:
        return None
    return out


def store_tokens(data_dir):
    """(entries, pages*4096) of the tokens table via mdb_stat (read-only, safe while the daemon
    runs); (None, None) if mdb_stat fails."""
    r = subprocess.run(["mdb_stat", "-s", "tokens", data_dir], capture_output=True, text=True)
    if r.returncode != 0:
        return None, None
    m = re.search(r"Entries:\s*(\d+)", r.stdout)
    pages = 0
    for kind in ("Branch", "Leaf", "Overflow"):
        mm = re.search(kind + r" pages:\s*(\d+)", r.stdout)
        pages += int(mm.group(1)) if mm else 0
    return (int(m.group(1)) if m else 0), pages * 4096


def audit_bytes(cfg):
    """Bytes of the audit trail on disk: the single file (audit.path, default
    <storage.path>/audit.log) or every file of audit.directory. Counts bytes only: the format is
    not parsed (it changes under issue 20)."""
    audit = cfg.get("audit") or {}
    total = 0
    paths = []
    if audit.get("directory"):
        for dp, _, files in os.walk(audit["directory"]):
            paths += [os.path.join(dp, f) for f in files]
    else:
        paths.append(audit.get("path") or os.path.join(cfg["storage"]["path"], "audit.log"))
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            pass
    return total


def file_size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class Loader:
    def __init__(self, a, d, creds):
        self.a, self.d, self.creds = a, d, creds
        self.exe = os.path.join(a.build_dir, "bin", "otd-loadgen")
        self.ids = os.path.join(d.dir, "bulk-ids.txt")
        self.data = os.path.join(d.dir, "data")
        with open(d.config_path) as f:
            self.cfg = json.load(f)
        self.log_bytes = 0  # daemon log bytes measured so far (the log is truncated)
        self.requests = 0

    def loadgen(self, mode, extra):
        args = [self.exe, "--mode", mode, "--unix", self.d.sock, "--account", self.creds["account"],
                "--code", self.creds["code"], "--secret", self.creds["secret"],
                "--connections", str(self.a.connections), *extra]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"otd-loadgen {mode} failed ({r.returncode}): {r.stderr[-500:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        if r.stderr.strip():
            res["stderr"] = r.stderr.strip()[-300:]
        return res

    def take_log(self):
        """Bytes the daemon wrote to its log since the last call; truncates the log unless
        --keep-log (the file is opened O_APPEND by the harness, so truncating is safe)."""
        n = file_size(self.d.log_path)
        if self.a.keep_log:
            grown, self.log_bytes = n - self.log_bytes, n
            return grown
        os.truncate(self.d.log_path, 0)
        return n

    def tokens(self):
        n, _ = store_tokens(self.data)
        return n

    def chunk(self, n):
        a0, l0 = audit_bytes(self.cfg), self.take_log()  # noqa: l0 drops what came before
        del l0
        t0 = time.time()
        res = self.loadgen("tokenize64", ["--count", str(n), "--save-ids", self.ids,
                                          "--save-every", str(self.a.save_every)])
        res["wall_s"] = time.time() - t0
        res["audit_bytes"] = audit_bytes(self.cfg) - a0
        res["log_bytes"] = self.take_log()
        return res

    def checkpoint(self, started):
        pid = self.d.proc.pid
        # The rates first: the memory and the map of data.mdb are read after the daemon has
        # served them (after a restart it has touched nothing yet).
        rates = {}
        secs = str(self.a.rate_secs)
        r = self.loadgen("tokenize64", ["--warmup", "1", "--duration", secs])
        rates["tokenize64"] = {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors")}
        extra = ["--warmup", "1", "--duration", secs]
        if file_size(self.ids) > 0:
            extra += ["--ids-file", self.ids]
        r = self.loadgen("detok-private", extra)
        rates["detok-private"] = {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors")}
        rates["detok_ids"] = "sample over the whole load" if "--ids-file" in extra else \
            "256 fresh tokens"
        n, table_bytes = store_tokens(self.data)
        mdb = os.path.join(self.data, "data.mdb")
        st = os.stat(mdb)
        rec = {"event": "checkpoint", "tokens": n, "time": time.time(),
               "elapsed_s": time.time() - started, "memory": proc_status(pid),
               "data_mdb": {"file_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512,
                            "tokens_table_bytes": table_bytes,
                            "mapped": mapping_rss(pid, "data.mdb")},
               "data_dir_allocated_bytes": int(subprocess.run(
                   ["du", "-sB1", self.data], capture_output=True, text=True).stdout.split()[0]),
               "audit_total_bytes": audit_bytes(self.cfg),
               "loadavg": os.getloadavg()}
        rec["bytes_per_token"] = st.st_blocks * 512 / n if n else None
        rec["tokens_table_bytes_per_token"] = table_bytes / n if n else None
        rec["rates"] = rates
        self.take_log()
        return rec


def verdicts(recs):
    """{target: (met, text)} of the issue-20 targets. Rates: from the last --compare-fresh rounds
    if any (the loaded vault and a fresh one measured alternately, so that the machine's load is
    the same for both: median of the per-round ratios), else the first and last checkpoint."""
    cps = [r for r in recs if r.get("event") == "checkpoint"]
    out = {}
    if not cps:
        return out
    first, last = cps[0], cps[-1]
    cmp = [r for r in recs if r.get("event") == "compare-fresh"]
    if cmp:
        last_id = cmp[-1]["run"]
        cmp = [r for r in cmp if r["run"] == last_id]
    for mode in ("tokenize64", "detok-private"):
        if cmp:
            ratios = sorted(r["loaded"][mode]["rps"] / max(r["fresh"][mode]["rps"], 1e-9)
                            for r in cmp)
            q = ratios[len(ratios) // 2] if len(ratios) % 2 else \
                (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2
            ok = q >= 0.9
            out[f"rate {mode}"] = (ok, f"{mode}: at {cmp[-1]['tokens']:,} tokens "
                                       f"{100 * q:.0f} % of a fresh vault's rate (median of "
                                       f"{len(cmp)} alternating rounds: "
                                       + ", ".join(f"{100 * x:.0f} %" for x in ratios)
                                       + f"; target >= 90 %: {'met' if ok else 'missed'})")
            continue
        if len(cps) < 2:
            continue
        r0, r1 = first["rates"][mode]["rps"], last["rates"][mode]["rps"]
        ok = bool(r0) and r1 / r0 >= 0.9
        out[f"rate {mode}"] = (ok, f"{mode}: {r1:,.0f} req/s at {last['tokens']:,} tokens = "
                                   f"{100 * r1 / max(r0, 1e-9):.0f} % of {r0:,.0f} at "
                                   f"{first['tokens']:,} (target >= 90 %: "
                                   f"{'met' if ok else 'missed'})")
    ra = last["memory"].get("RssAnon", 0)
    ok = ra <= 64 * MIB
    out["RssAnon"] = (ok, f"RssAnon {ra / MIB:.1f} MiB at {last['tokens']:,} tokens "
                          f"(target <= 64 MiB: {'met' if ok else 'missed'})")
    bpt = last.get("bytes_per_token") or 1e9
    out["bytes per token"] = (bpt <= 320, f"data.mdb {bpt:.0f} B/token (target <= 320: "
                                          f"{'met' if bpt <= 320 else 'missed'})")
    return out


def summary(recs, target):
    cps = [r for r in recs if r.get("event") == "checkpoint"]
    prog = [r for r in recs if r.get("event") == "progress"]
    lines = [f"bulk load summary ({len(cps)} checkpoints, target {target:,} tokens)",
             "| tokens | tokenize req/s | detokenize req/s | RssAnon MiB | RssFile MiB | "
             "data.mdb RSS MiB (clean) | VmRSS MiB | data.mdb B/token | tokens table B/token | "
             "load avg |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cps:
        m, mp = c["memory"], c["data_mdb"].get("mapped") or {}
        clean = mp.get("Shared_Clean", 0) + mp.get("Private_Clean", 0)
        bpt = c.get("bytes_per_token")
        tbt = c.get("tokens_table_bytes_per_token")
        lines.append(
            f"| {c['tokens']:,} | {c['rates']['tokenize64']['rps']:,.0f} | "
            f"{c['rates']['detok-private']['rps']:,.0f} | {m.get('RssAnon', 0) / MIB:.1f} | "
            f"{m.get('RssFile', 0) / MIB:.1f} | {mp.get('Rss', 0) / MIB:.1f} ({clean / MIB:.1f}) | "
            f"{m.get('VmRSS', 0) / MIB:.1f} | {'—' if bpt is None else f'{bpt:.0f}'} | "
            f"{'—' if tbt is None else f'{tbt:.0f}'} | {c['loadavg'][0]:.2f} |")
    lines += [text for _, text in verdicts(recs).values()]
    if cps:
        mp = cps[-1]["data_mdb"].get("mapped") or {}
        lines.append("RssFile: the read-only map of data.mdb is "
                     f"{mp.get('Rss', 0) / MIB:.1f} MiB resident, of which "
                     f"{(mp.get('Private_Dirty', 0) + mp.get('Shared_Dirty', 0)) / MIB:.1f} MiB "
                     "dirty: clean page-cache pages the kernel reclaims under memory pressure "
                     "(and reads back on a miss); the rest of RssFile is the binary and its "
                     "libraries.")
    if prog:
        reqs = sum(p["requests"] for p in prog)
        secs = sum(p["chunk_s"] for p in prog)
        ab = sum(p["audit_bytes"] for p in prog)
        lb = sum(p["log_bytes"] for p in prog)
        if reqs and secs:
            lines.append(f"loading: {reqs:,} requests in {secs:,.0f} s = {reqs / secs:,.0f} "
                         f"tokens/s (every invocation on this state); audit {ab / reqs:.0f} "
                         "B/request, daemon log "
                         f"{lb / reqs:.0f} B/request")
    return "\n".join(lines)


def compare_fresh(a, ld, state, started, harness):
    """Rates of the loaded vault and of a fresh vault (a temp dir, removed after), alternately."""
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="otd-bulk-fresh-")
    fresh = persistent_daemon_class(harness)(tmp, True, a.map_size_mb)
    fresh.start()
    try:
        fl = Loader(a, fresh, register(harness, fresh))
        run = time.time()
        for i in range(a.compare_fresh):
            if i % 2 == 0:  # A B, B A, ...: a drift of the machine's load cancels out
                loaded = ld.checkpoint(started)
                f = fl.checkpoint(started)
            else:
                f = fl.checkpoint(started)
                loaded = ld.checkpoint(started)
            rec = {"event": "compare-fresh", "run": run, "round": i, "tokens": loaded["tokens"],
                   "loaded": loaded["rates"], "fresh": f["rates"], "fresh_tokens": f["tokens"],
                   "loadavg": os.getloadavg()}
            emit(state, rec)
            log(f"compare-fresh round {i}: tokenize {loaded['rates']['tokenize64']['rps']:,.0f} "
                f"vs fresh {f['rates']['tokenize64']['rps']:,.0f}; detokenize "
                f"{loaded['rates']['detok-private']['rps']:,.0f} vs fresh "
                f"{f['rates']['detok-private']['rps']:,.0f}")
    finally:
        fresh.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", required=True, help="state dir (created if missing; kept)")
    ap.add_argument("--count", type=int, required=True, help="load until the store holds N tokens")
    ap.add_argument("--chunk", type=int, default=100000, help="tokens per otd-loadgen run")
    ap.add_argument("--checkpoint", type=int, default=1000000, help="checkpoint every N tokens")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate-secs", type=float, default=3.0)
    ap.add_argument("--save-every", type=int, default=1000,
                    help="keep one id in N in bulk-ids.txt (the detokenize sample)")
    ap.add_argument("--map-size-mb", type=int, default=16384, help="storage.map_size_mb")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--keep-log", action="store_true", help="do not truncate DIR/daemon.log")
    ap.add_argument("--compare-fresh", type=int, default=4, metavar="ROUNDS",
                    help="at the end, measure the rates of the loaded vault and of a fresh one "
                         "alternately ROUNDS times (same machine load for both; 0: skip)")
    a = ap.parse_args(argv)
    a.build_dir = os.path.abspath(a.build_dir)
    state = os.path.abspath(a.state)
    if not a.no_build:
        build(a.build_dir)
    os.environ["OTD_BIN_DIR"] = os.path.join(a.build_dir, "bin")
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    import harness  # noqa: E402

    state_file = os.path.join(state, "bulk-state.json")
    fresh = not os.path.exists(state_file)
    if fresh:
        os.makedirs(state, mode=0o700, exist_ok=True)
        if os.listdir(state):
            sys.exit(f"bulk_load: {state} is not empty and holds no bulk-state.json")
    d = persistent_daemon_class(harness)(state, fresh, a.map_size_mb)
    d.start()
    started = time.time()
    try:
        if fresh:
            creds = register(harness, d)
            fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(creds, f)
            log(f"new vault in {state}")
        else:
            with open(state_file) as f:
                creds = json.load(f)
        ld = Loader(a, d, creds)
        recs = []
        have = ld.tokens() or 0
        log(f"daemon pid {d.proc.pid}; the store holds {have:,} tokens; target {a.count:,}")
        emit(state, {"event": "start", "tokens": have, "target": a.count, "resumed": not fresh,
                     "connections": a.connections, "time": started})
        cp = ld.checkpoint(started)
        emit(state, cp)
        recs.append(cp)
        have = cp["tokens"]
        next_cp = (have // a.checkpoint + 1) * a.checkpoint
        load_s = 0.0
        loaded = 0
        while have < a.count:
            n = min(a.chunk, a.count - have, next_cp - have)
            res = ld.chunk(n)
            now_have = ld.tokens()
            load_s += res["wall_s"]
            loaded += res["requests"]
            rate = loaded / load_s if load_s else 0
            rec = {"event": "progress", "tokens": now_have, "target": a.count,
                   "requests": res["requests"], "chunk_s": res["duration_s"],
                   "chunk_rps": res["rps"], "p99_ms": res["p99_ms"], "errors": res["errors"],
                   "audit_bytes": res["audit_bytes"], "log_bytes": res["log_bytes"],
                   "eta_s": (a.count - now_have) / rate if rate else None,
                   "elapsed_s": time.time() - started}
            emit(state, rec)
            recs.append(rec)
            log(f"{now_have:,}/{a.count:,} tokens, {res['rps']:,.0f}/s, errors {res['errors']}, "
                f"ETA {rec['eta_s'] or 0:,.0f} s")
            if res["errors"] and res["errors"] == res["requests"]:
                raise RuntimeError(f"every request failed: {res.get('stderr')}")
            have = now_have
            if have >= next_cp or have >= a.count:
                cp = ld.checkpoint(started)
                emit(state, cp)
                recs.append(cp)
                have = cp["tokens"]
                next_cp = (have // a.checkpoint + 1) * a.checkpoint
        if a.compare_fresh > 0:
            compare_fresh(a, ld, state, started, harness)
        # The whole history (also earlier invocations) for the summary.
        with open(os.path.join(state, "bulk-results.jsonl")) as f:
            allrecs = [json.loads(x) for x in f if x.strip()]
        text = summary(allrecs, a.count)
        print(text, flush=True)
        with open(os.path.join(state, "bulk-summary.txt"), "w") as f:
            f.write(text + "\n")
    finally:
        code = d.stop()
        if code not in (0, None):
            log(f"daemon exited with {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
