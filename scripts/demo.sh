#!/usr/bin/env bash
# The main job on the built-in demo deployment, from a fresh machine: installs libzmq, builds, then runs
# the smoke chaos experiment, which starts the demo deployment (a szmock server and three szmock handlers)
# under the governor, kills a handler, drops replies, forces an EFSM, checks that everything recovers with
# no request lost, and stops the deployment again. Results: chaos-results/smoke/ (summary, journal, JUnit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
echo "==> building (swift build; the first build takes a few minutes)"
swift build 2>&1 | grep -vE '^warning: prohibited flag' | tail -1
exec "$(swift build --show-bin-path)/szchaos" run Fixtures/experiments/smoke.yaml "$@"
