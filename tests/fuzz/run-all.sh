#!/usr/bin/env bash
# tests/fuzz/run-all.sh [seconds] [target...]
# Builds the libFuzzer targets with the `fuzz` preset into build-fuzz/ (clang 14) and runs each
# for `seconds` (default 60) on its committed corpus in tests/fuzz/corpus/<target>/. New inputs go
# to build-fuzz/fuzz/work/<target>/ (the committed corpus is only read); crash, leak and timeout
# reproducers to build-fuzz/fuzz/<kind>-<sha1>. Logs: build-fuzz/fuzz/<target>.log.
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
if ! command -v clang++ >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed"; then
  SUDO=(); [[ $(id -u) -ne 0 ]] && SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
fi
if [[ ! -f build-fuzz/build.ninja ]]; then
  cmake --preset fuzz >/dev/null
fi
cmake --build build-fuzz --target "${targets[@]}" --parallel "$(nproc)"

out=build-fuzz/fuzz
status=0
for t in "${targets[@]}"; do
  mkdir -p "$out/work/$t"
  echo "== $t: ${seconds}s" >&2
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$out/$t" -max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/" \
    "$out/work/$t" "tests/fuzz/corpus/$t" >"$out/$t.log" 2>&1
  rc=$?
  set -e
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$out/$t.log" | grep -Eo '[0-9]+$' || echo '?')
  cov=$(grep -Eo 'cov: [0-9]+' "$out/$t.log" | tail -1 || true)
  if ((rc != 0)); then
    status=1
    echo "$t: FAILED (exit $rc) after $execs executions; see $out/$t.log" >&2
    grep -E 'ERROR|SUMMARY|property violated|Test unit written' "$out/$t.log" >&2 || true
  else
    echo "$t: ok, $execs executions, $cov, corpus $(ls "$out/work/$t" | wc -l) inputs" >&2
  fi
done
exit $status
