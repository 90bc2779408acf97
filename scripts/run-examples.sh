#!/usr/bin/env bash
# `./run_tests.sh examples`: builds each package under Examples/ (a package of its own that depends on this one
# by path, so the first build compiles the harness again in Examples/NAME/.build: minutes) and runs its tests,
# with the same leftover checks as the other modes (scripts/leftovers.sh).
#   scripts/run-examples.sh [XUNIT_FILE] [-- swift test options...]
# XUNIT_FILE (may be empty): JUnit XML goes to XUNIT_FILE-without-.xml-NAME.xml per package.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/leftovers.sh
xunit="${1:-}"
[ $# -gt 0 ] && shift
ex_fail=0
for manifest in Examples/*/Package.swift; do
  dir=$(dirname "$manifest")
  name=$(basename "$dir")
  echo "==> $dir: swift build --build-tests (builds the harness again in $dir/.build: minutes the first time)"
  if ! swift build --build-tests --package-path "$dir" 2>&1 | grep -vE '^warning: prohibited flag'; then :; fi
  if [ "${PIPESTATUS[0]}" != 0 ]; then echo "run_tests: FAILED: $dir: build failed" >&2; ex_fail=1; continue; fi
  xunit_flags=()
  if [ -n "$xunit" ]; then mkdir -p "$(dirname "$xunit")"; xunit_flags=(--xunit-output "${xunit%.xml}-$name.xml"); fi
  SZ_TEST_TMPDIR=$(mktemp -d /tmp/szr.XXXXXX)
  # As run_tests.sh: at most 8 tests per core at once (see there).
  export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="${SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH:-$(( $(nproc 2>/dev/null || echo 2) * 8 ))}"
  chmod 0711 "$SZ_TEST_TMPDIR"
  export SZ_TEST_TMPDIR
  log=$(mktemp "${TMPDIR:-/tmp}/sz-example.XXXXXX")
  echo "==> $dir: swift test"
  timeout --signal=TERM --kill-after=15 "${SZ_RUN_LIMIT:-600}" \
    swift test --skip-build --disable-xctest --package-path "$dir" "${xunit_flags[@]}" "$@" < /dev/null 2>&1 \
    | grep --line-buffered -vE '^warning: prohibited flag' | tee "$log"
  rc=${PIPESTATUS[0]}
  ran=$(grep -Eo 'Test run with [0-9]+ tests?' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  failed=$(grep -Ec '^✘ Test [^ ]+\(.*\) .*failed' "$log" || true)
  rm -f "$log"
  check_leftovers || { echo "run_tests: FAILED: $dir: processes or files of the run were left behind" >&2; rc=1; }
  [ "${ran:-0}" = 0 ] && { echo "run_tests: FAILED: $dir: it ran no test" >&2; rc=1; }
  [ "$rc" != 0 ] && [ "$failed" = 0 ] && failed=1
  echo "run_tests: examples ($name): $(( ${ran:-0} - failed )) passed, $failed failed"
  [ "$rc" = 0 ] || ex_fail=1
done
exit $ex_fail
