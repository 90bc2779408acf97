#!/usr/bin/env bash
# Builds the benchmarks in release mode and runs them. Each prints its figures with ratios against a
# baseline measured in the same run (raw libzmq from C, bare posix_spawn), and the goal next to each.
#   scripts/bench.sh [zmq|mock|governor|interposer|all] [-- extra options for szbench]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
what="${1:-all}"; shift || true
swift build -c release --product szmock 2>&1 | grep -vE "^warning: prohibited flag" | tail -1
swift build -c release --product szbench 2>&1 | grep -vE '^warning: prohibited flag' | tail -1
bin="$(swift build -c release --show-bin-path)/szbench"
case "$what" in
  all) for b in zmq mock governor interposer; do
         if "$bin" "$b" --help >/dev/null 2>&1; then "$bin" "$b" "$@"; echo; fi
       done ;;
  *) "$bin" "$what" "$@" ;;
esac
