#!/usr/bin/env bash
# Measures how long each run_tests.sh mode takes after a build, against the goals of the suite
# (quick < 10 s, ci < 90 s, all < 4 min on 2 cores). Timing lives here, never in test assertions.
#   scripts/suite-times.sh [MODE...]      (default: quick ci all)
set -uo pipefail
cd "$(dirname "$0")/.."
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(quick ci all)
swift build --build-tests 2>&1 | grep -vE '^warning: prohibited flag' | tail -1
declare -A goal=([quick]=10 [ci]=90 [all]=240)
status=0
for m in "${modes[@]}"; do
  start=$(date +%s.%N)
  ./run_tests.sh "$m" > "/tmp/suite-times-$m.log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  counts=$(tail -1 "/tmp/suite-times-$m.log")
  g=${goal[$m]:-}
  verdict=""
  if [ -n "$g" ]; then
    verdict=$(awk -v s="$secs" -v g="$g" 'BEGIN { print (s < g) ? "goal < " g " s: met" : "goal < " g " s: NOT met" }')
  fi
  printf '%-12s %7s s  %-28s %s%s\n' "$m" "$secs" "$counts" "$verdict" "$([ $rc = 0 ] || echo '  (FAILED, see /tmp/suite-times-'$m'.log)')"
  [ $rc = 0 ] || status=1
done
exit $status
