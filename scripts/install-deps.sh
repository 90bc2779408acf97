#!/usr/bin/env bash
# Installs what the project needs from Debian: libzmq (headers and pkg-config file) and Debian's pyzmq
# (for /usr/bin/python3, used by the interop tests). Does nothing when both are there already.
set -euo pipefail
need=()
pkg-config --exists libzmq 2>/dev/null || need+=(libzmq3-dev)
/usr/bin/python3 -c 'import zmq' 2>/dev/null || need+=(python3-zmq)
[ ${#need[@]} -eq 0 ] && exit 0
echo "==> installing ${need[*]}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}"
fi
