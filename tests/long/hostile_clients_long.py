#!/usr/bin/env python3
"""Long hostile-clients run (issue 7 item 6): the scenario of
tests/integration/test_hostile_clients.py, repeated for many cycles against one daemon with the
connection limit raised to 128, more attackers, and random mutations of the catalogue.

Each cycle: phase A (slowloris, slow bodies, slow readers and pipelining go on the whole run; the
full malformed-request catalogue, every 2nd entry over TLS too, plus --mutations random mutations
of it) for at least --phase-a seconds, then a connection flood of 3 x max_connections for --flood
seconds. The good clients (signed tokenize, byte-exact detokenize, delete) run throughout.

Asserted, as in the fast variant: good-client success >= --min-success (default 99.5 %), no
catalogue entry answered with anything but a 4xx (501 for unknown methods; for mutations: no 5xx),
no hang, slow clients cut by the deadlines, no 5xx or handler exception in the daemon log, RSS
within the bound of the fast test, the daemon alive and stopping cleanly. Also: RSS does not keep
growing: the highest RSS of the last cycle may exceed that of the first cycle by at most --leak-mib
(default 64 MiB; allocator arenas fill up over the first cycles, a leak keeps going).

Usage (after scripts/build):
    python3 tests/long/hostile_clients_long.py [--cycles 20] [--phase-a 25] [--flood 10]
        [--mutations 1000] [--max-connections 128] [--seed N]
Default: 20 cycles, about 35 minutes on 2 shared cores (3 cycles took 5.3 min). Environment as for
the integration tests: OTD_BIN_DIR (default build/bin), OTD_PKCS11_MODULE.
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

from test_hostile_clients import Settings, run_hostile  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--phase-a", type=float, default=25.0, help="minimum seconds of phase A per cycle")
    ap.add_argument("--flood", type=float, default=10.0, help="seconds of connection flood per cycle")
    ap.add_argument("--mutations", type=int, default=1000, help="random mutations per cycle")
    ap.add_argument("--max-connections", type=int, default=128)
    ap.add_argument("--min-success", type=float, default=0.995)
    ap.add_argument("--leak-mib", type=float, default=64.0)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = ap.parse_args()

    class Long(Settings):
        limits = dict(Settings.limits, max_connections=args.max_connections)
        phase_a_min_s = args.phase_a
        flood_s = args.flood
        cycles = args.cycles
        mutations_per_cycle = args.mutations
        catalogue_tls_every = 2
        catalogue_timeout_s = 600.0
        good_unix = 6
        good_tls = 3
        slowloris = 24
        slow_body = 12
        slow_read = 10
        recovery_s = 10.0
        min_success = args.min_success
        seed = args.seed

    class LongTest(unittest.TestCase):
        def runTest(self):
            print(f"hostile clients long: seed={args.seed} cycles={args.cycles}", flush=True)
            t0 = time.time()
            report = run_hostile(self, Long)
            print(f"hostile clients long: {time.time() - t0:.0f} s", flush=True)
            cycles = report["rss_per_cycle_mib"]
            print(f"RSS max per cycle (MiB): {cycles}", flush=True)
            self.assertLessEqual(cycles[-1] - cycles[0], args.leak_mib, "RSS keeps growing: a leak?")

    result = unittest.TextTestRunner(verbosity=2).run(LongTest())
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
