#!/usr/bin/env bash
# Negative controls for the layering checks (issue 15): each must refuse a violation.
#  1. the per-module include roots: crypto/ (which links only common) cannot compile an include
#     of a store/ header; with crypto's own root it can include crypto/ headers;
#  2. scripts/check-includes.py: clean on the tree; on a copy where api/ includes an hsm/ header
#     (reachable through service's PUBLIC dependency), another module's internal/ header, or a
#     testing/ header outside a test, it fails naming each.
# Usage: layering_test.sh SOURCE_DIR BUILD_DIR CXX
set -euo pipefail
src="$1"; build="$2"; cxx="$3"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
roots=(-I"$build/include_roots/crypto" -I"$build/include_roots/common")

printf '#include "crypto/hash.h"\nint main() { return 0; }\n' >"$tmp/ok.cc"
"$cxx" -std=c++20 -fsyntax-only "${roots[@]}" "$tmp/ok.cc" ||
  { echo "FAIL: crypto's own headers do not compile with its include roots"; exit 1; }
printf '#include "store/store.h"\nint main() { return 0; }\n' >"$tmp/bad.cc"
if "$cxx" -std=c++20 -fsyntax-only "${roots[@]}" "$tmp/bad.cc" 2>"$tmp/err"; then
  echo "FAIL: crypto/ compiled an include of store/ (the include roots do not separate modules)"
  exit 1
fi
grep -q "store/store.h" "$tmp/err" || { echo "FAIL: unexpected compiler error"; cat "$tmp/err"; exit 1; }

python3 "$src/scripts/check-includes.py" "$src" >/dev/null ||
  { echo "FAIL: check-includes reports the tree itself"; exit 1; }
mkdir -p "$tmp/tree"
cp -r "$src/common" "$src/crypto" "$src/hsm" "$src/store" "$src/mail" "$src/service" "$src/api" \
  "$src/daemon" "$tmp/tree/"
sed -i '0,/#include "api\/auth.h"/s//#include "api\/auth.h"\n#include "hsm\/hsm.h"\n#include "store\/internal\/env.h"\n#include "store\/testing\/held_store.h"/' \
  "$tmp/tree/api/auth.cc"
if python3 "$src/scripts/check-includes.py" "$tmp/tree" >"$tmp/out"; then
  echo "FAIL: check-includes accepted api/ including hsm/, store/internal/ and store/testing/"
  exit 1
fi
for want in 'api/auth.cc.*hsm/hsm.h.*api/ may include only' "another module's internal header" \
            "a testing header outside a test"; do
  grep -q "$want" "$tmp/out" || { echo "FAIL: no finding like: $want"; cat "$tmp/out"; exit 1; }
done
echo "ok: include roots and check-includes refuse the violations"
