#!/usr/bin/env python3
"""Bulk load to 10 million tokens (issue 20): runs bench/bulk_load.py into a state dir that
survives (run it again with the same --state to resume), then checks the issue-20 targets on its
first and last checkpoints: RssAnon <= 64 MiB, data.mdb <= 320 B/token, tokenize and detokenize
rates at N >= 90 % of those at 0. Exit 1 if a target is missed (--no-check: report only).

  python3 tests/long/bulk_load_long.py [--count 10000000] [--state /var/tmp/otd-bulk-10m]
                                       [--no-check] [-- extra bench/bulk_load.py arguments]

Needs the bench build (bench/bulk_load.py builds build-bench/ unless --no-build is passed after
--) and about 8 GB of disk for 10 M tokens (store ~3 GB, audit trail ~3.7 GB; the daemon log is
truncated after every chunk). See tests/long/README.md for how long it takes.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bulk_load  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10_000_000)
    ap.add_argument("--state", default=None, help="default /var/tmp/otd-bulk-<count>")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("rest", nargs="*", help="passed to bench/bulk_load.py (after --)")
    a = ap.parse_args()
    state = a.state or f"/var/tmp/otd-bulk-{a.count}"
    bulk_load.main(["--state", state, "--count", str(a.count), *a.rest])
    with open(os.path.join(state, "bulk-results.jsonl")) as f:
        recs = [json.loads(x) for x in f if x.strip()]
    v = bulk_load.verdicts(recs)
    if not v:
        print("bulk_load_long: no checkpoint, nothing to check", file=sys.stderr)
        return 1
    missed = [text for ok, text in v.values() if not ok]
    for text in missed:
        print(f"bulk_load_long: MISSED {text}", file=sys.stderr)
    return 1 if missed and not a.no_check else 0


if __name__ == "__main__":
    sys.exit(main())
