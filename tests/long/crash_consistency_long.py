#!/usr/bin/env python3
"""Long crash-consistency run (issue 7 item 3): the code of
tests/integration/test_crash_consistency.py with many more kill -9s and longer uptimes between
them, so that kills also land during larger writes, LMDB page splits and map growth.

Usage (after scripts/build):
    python3 tests/long/crash_consistency_long.py [--kills 200] [--seed N] [--max-uptime 2.0]
Environment as for the integration tests: OTD_BIN_DIR (default build/bin), OTD_PKCS11_MODULE.
Prints the seed first: rerun with --seed to repeat the same kill schedule (the daemon's own timing
still varies).
"""

import argparse
import os
import random
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("OTD_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))
os.environ.setdefault("OTD_SOURCE_DIR", os.path.join(HERE, "..", ".."))

from test_crash_consistency import run_crash_consistency  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    ap.add_argument("--min-uptime", type=float, default=0.05)
    ap.add_argument("--max-uptime", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1, help="fresh daemon per round")
    args = ap.parse_args()

    class Long(unittest.TestCase):
        def runTest(self):
            for r in range(args.rounds):
                seed = args.seed + r
                print(f"round {r}: seed={seed} kills={args.kills}", flush=True)
                t0 = time.time()
                stats = run_crash_consistency(self, kills=args.kills, seed=seed,
                                              min_uptime=args.min_uptime,
                                              max_uptime=args.max_uptime,
                                              max_pairs=40, max_registrations=60, pace=0.5)
                stats["seconds"] = round(time.time() - t0, 1)
                print(f"round {r}: {stats}", flush=True)

    result = unittest.TextTestRunner(verbosity=2).run(Long())
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
