#!/usr/bin/env bash
# Long fuzzing: every target for $1 seconds (default 1800 = 30 min each) via tests/fuzz/run-all.sh.
# Keep build-fuzz/fuzz/work/ between runs: it is the grown corpus. To fold new interesting inputs
# back into the committed seeds (keep them small):
#   build-fuzz/fuzz/<target> -merge=1 tests/fuzz/corpus/<target> build-fuzz/fuzz/work/<target>
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "$here/tests/fuzz/run-all.sh" "${1:-1800}"
