#!/usr/bin/env bash
# Installs what the project needs from Debian: libzmq (headers and pkg-config file) and Debian's pyzmq
# (for /usr/bin/python3, used by the interop tests). Does nothing when they are there already.
#   scripts/install-deps.sh [MODE]
# MODE is run_tests.sh's mode: `slow` and `all` also install Debian's chromium, for the test that opens an
# experiment's HTML report in a headless browser (the other modes do not run it). `ci`, `all`, `governor`
# and `integration` (the modes that run the governor's integration tests) also get Debian's systemd (for
# `systemd-analyze verify` of exported units) and python3-venv, and a cached venv .build/k8s-validate-venv
# with PyPI's kubernetes-validate (the offline Kubernetes object schemas the export tests check manifests
# against); either test skips, saying why, when its tool cannot be had (docs/DISTRIBUTED.md).
# `network`, `ci` and `all`
# also install iproute2 and iptables when run as root (the network tests and scripts/testbed.sh need them;
# without root those tests skip themselves, so nothing is installed for them).
set -euo pipefail
mode="${1:-}"
need=()
pkg-config --exists libzmq 2>/dev/null || need+=(libzmq3-dev)
/usr/bin/python3 -c 'import zmq' 2>/dev/null || need+=(python3-zmq)
case "$mode" in
  slow|all) command -v chromium >/dev/null 2>&1 || need+=(chromium) ;;
esac
case "$mode" in
  ci|all|governor|integration) command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
     /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
     want_venv=1 ;;
  *) ;;
esac
case "$mode" in
  network|ci|all)
    if [ "$(id -u)" = 0 ]; then
      PATH="$PATH:/usr/sbin:/sbin"
      command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || need+=(iproute2)
      command -v iptables >/dev/null 2>&1 || need+=(iptables)
    fi ;;
esac
make_venv() {
  [ "${want_venv:-0}" = 1 ] || return 0
  local venv
  venv="$(cd "$(dirname "$0")/.." && pwd)/.build/k8s-validate-venv"
  [ -x "$venv/bin/kubernetes-validate" ] && return 0
  echo "==> making $venv (pip install kubernetes-validate)"
  { /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install -q --timeout 20 --retries 1 kubernetes-validate; } \
    || { echo "==> no kubernetes-validate (the Kubernetes export test will skip)"; rm -rf "$venv"; }
}
[ ${#need[@]} -eq 0 ] && { make_venv; exit 0; }
echo "==> installing ${need[*]}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi
make_venv
