#!/usr/bin/env bash
# Builds the benchmarks in release mode and runs them. Each prints its figures with ratios against a
# baseline measured in the same run (raw libzmq from C, bare posix_spawn), and the goal next to each.
#   scripts/bench.sh [zmq|mock|governor|interposer|managers|all] [-- extra options for szbench]
# `managers` (not part of `all`: minutes, and it needs PyPI once): szgovernor beside supervisord and circusd
# with the same 20 szmock handlers, scale figures at 20/100/300, floors; `--idle 30s` (default), quick try:
#   scripts/bench.sh managers --idle 5s --wake 5s --scale 20,50
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
what="${1:-all}"; shift || true
swift build -c release --product szmock 2>&1 | grep -vE "^warning: prohibited flag" | tail -1
swift build -c release --product szbench 2>&1 | grep -vE '^warning: prohibited flag' | tail -1
if [ "$what" = managers ]; then
  # supervisor and circus come from PyPI into .build/bench-venv; python3 -m venv needs Debian's python3-venv.
  /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || apt-get install -y -qq python3-venv >/dev/null 2>&1 \
    || echo "==> python3-venv missing and not installable: supervisord and circusd will be skipped"
  swift build -c release --product szgovernor 2>&1 | grep -vE '^warning: prohibited flag' | tail -1
fi
bin="$(swift build -c release --show-bin-path)/szbench"
case "$what" in
  all) for b in zmq mock governor interposer; do
         if "$bin" "$b" --help >/dev/null 2>&1; then "$bin" "$b" "$@"; echo; fi
       done ;;
  *) "$bin" "$what" "$@" ;;
esac
