#!/usr/bin/env bash
# tests/fuzz/run-all.sh [seconds] [target...]
# Builds the libFuzzer targets with the `fuzz` preset into build-fuzz/ (clang 14) and runs each
# for `seconds` (default 60) on its committed corpus in tests/fuzz/corpus/<target>/. New inputs go
# to $OTD_FUZZ_WORK/<target>/ (default build-fuzz/fuzz/work/, kept between runs as the grown
# corpus; scripts/test-fuzz uses a temp dir); the committed corpus is only read, and the run fails
# if it changed. Crash, leak and timeout reproducers go to build-fuzz/fuzz/<kind>-<sha1> and are
# printed in base64. Logs: build-fuzz/fuzz/<target>.log.
# Exit status: non-zero when any target found something.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(fuzz_http_request fuzz_ot1 fuzz_json fuzz_record fuzz_config)
fi
declare -A max_len=([fuzz_http_request]=12288 [fuzz_json]=8192)

cd "$here"
"$here/scripts/install-deps"
# clang 14 and its libFuzzer runtime are only needed here, not by scripts/test.
if ! command -v clang++-14 >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed"; then
  SUDO=(); [[ $(id -u) -ne 0 ]] && SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
fi
if [[ ! -f build-fuzz/build.ninja ]]; then
  cmake --preset fuzz >/dev/null
fi
cmake --build build-fuzz --target "${targets[@]}" --parallel "$(nproc)"

out=build-fuzz/fuzz
work="${OTD_FUZZ_WORK:-$out/work}"
# The committed corpus must come out of the run as it went in (libFuzzer writes only to the
# first corpus directory, the work dir; this checks that).
corpus_digest() { (cd tests/fuzz/corpus && find . -type f -print0 | sort -z | xargs -0 sha1sum | sha1sum); }
corpus_before="$(corpus_digest)"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  before=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | sort)
  echo "== $t: ${seconds}s" >&2
  t0=$SECONDS
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$out/$t" -max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/" \
    "$work/$t" "tests/fuzz/corpus/$t" >"$out/$t.log" 2>&1
  rc=$?
  set -e
  took=$((SECONDS - t0))
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$out/$t.log" | grep -Eo '[0-9]+$' || echo '?')
  cov=$(grep -Eo 'cov: [0-9]+' "$out/$t.log" | tail -1 || true)
  if ((rc != 0)); then
    status=1
    echo "$t: FAILED (exit $rc) after $execs executions, ${took} s; see $out/$t.log" >&2
    grep -E 'ERROR|SUMMARY|property violated|Test unit written' "$out/$t.log" >&2 || true
    after=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | sort)
    for f in $(comm -13 <(echo "$before") <(echo "$after")); do
      echo "$t: reproducer $f (base64): $(head -c 16384 "$f" | base64 -w0)" >&2
    done
  else
    echo "$t: ok, $execs executions, $cov, ${took} s, new inputs $(find "$work/$t" -type f | wc -l)" >&2
  fi
done
if [[ "$(corpus_digest)" != "$corpus_before" ]]; then
  echo "run-all.sh: the committed corpus tests/fuzz/corpus/ changed during the run" >&2
  status=1
fi
exit $status
