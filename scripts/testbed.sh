#!/usr/bin/env bash
# A test bed of N hosts on one machine: network namespaces on a bridge, for szchaos's network faults.
#
#   scripts/testbed.sh up N [--prefix P] [--subnet A.B.C]   make hosts P1..PN (default szh1..szhN)
#   scripts/testbed.sh down [--prefix P]                   remove every namespace, veth, bridge and fault record it made
#   scripts/testbed.sh status [--prefix P]                 list the hosts, their addresses and the faults in force
#
# Host i is the namespace Pi with loopback up and eth0 = 10.77.0.i/24 (--subnet changes 10.77.0), a veth
# whose other end (Pi-v, in the initial namespace) is a port of the bridge P-br (no address: the hosts talk
# to each other, not to the machine). `up` is idempotent (hosts already there are kept, missing ones made,
# half-made ones, left by an interrupted `up`, made again).
# `down` finds what to remove by the prefix (every namespace P<digits>, every link P<digits>-v, the bridge
# P-br), so it also cleans up after an interrupted `up`; it then drops szchaos's records of network faults
# (docs/CHAOS.md, "Network faults") that lived in those namespaces: their rules and qdiscs went with the
# namespaces and veths. Needs root, iproute2 and iptables (installed through scripts/install-deps.sh network).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

cmd="${1:-}"; [ $# -gt 0 ] && shift
n=""
prefix="szh"
subnet="10.77.0"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a value}"; shift ;;
    --prefix=*) prefix="${1#--prefix=}" ;;
    --subnet) subnet="${2:?--subnet needs a value}"; shift ;;
    --subnet=*) subnet="${1#--subnet=}" ;;
    -h|--help) usage; exit 0 ;;
    *) if [ "$cmd" = up ] && [ -z "$n" ]; then n="$1"; else echo "testbed.sh: unexpected argument '$1' (see --help)" >&2; exit 2; fi ;;
  esac
  shift
done

# Interface names are at most 15 bytes: P + up to 3 digits + "-v" / "-br".
if ! [[ "$prefix" =~ ^[a-z][a-z0-9]{0,9}$ ]]; then
  echo "testbed.sh: --prefix takes 1-10 lowercase letters and digits starting with a letter, not '$prefix'" >&2; exit 2
fi
if ! [[ "$subnet" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]]; then
  echo "testbed.sh: --subnet takes the first three numbers of an IPv4 /24, e.g. 10.77.0, not '$subnet'" >&2; exit 2
fi
bridge="${prefix}-br"
state="${SZCHAOS_NET_STATE:-/run/szchaos/net}"

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "testbed.sh: needs root (network namespaces, veths, a bridge)" >&2; exit 1; fi
  "$here/install-deps.sh" network >&2 || { echo "testbed.sh: could not install iproute2/iptables" >&2; exit 1; }
}

hosts() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}[0-9]+$" | sort -V || true; }
links() { ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^${prefix}[0-9]+-v$" || true; }

up() {
  if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 200 ]; then
    echo "testbed.sh: up takes a host count from 1 to 200, not '${n}'" >&2; exit 2
  fi
  need_root
  if ! ip link show "$bridge" >/dev/null 2>&1; then ip link add "$bridge" type bridge; fi
  ip link set "$bridge" up
  for i in $(seq 1 "$n"); do
    local ns="${prefix}${i}" v="${prefix}${i}-v"
    # `ip netns add` killed part-way leaves /run/netns/NS as a plain file that `ip netns list` shows but that
    # is no namespace: remade, else the veth below fails ("Peer netns reference is invalid").
    if ip netns list | awk '{print $1}' | grep -qx "$ns" && ! ip -n "$ns" link show lo >/dev/null 2>&1; then
      ip netns delete "$ns" >/dev/null 2>&1 || rm -f "/run/netns/$ns"
    fi
    ip netns list | awk '{print $1}' | grep -qx "$ns" || ip netns add "$ns"
    if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
      ip link delete "$v" >/dev/null 2>&1 || true     # half made by an interrupted run
      ip link add "$v" type veth peer name eth0 netns "$ns"
    fi
    ip link set "$v" master "$bridge" up
    ip -n "$ns" addr replace "${subnet}.${i}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    echo "$ns ${subnet}.${i}"
  done
}

down() {
  need_root
  local removed=()
  for ns in $(hosts); do ip netns delete "$ns" 2>/dev/null && removed+=("$ns") || true; done
  for v in $(links); do ip link delete "$v" 2>/dev/null || true; done
  ip link delete "$bridge" 2>/dev/null || true
  # Records of faults whose every namespace is gone: their rules and qdiscs went with them.
  local dropped=0
  if [ -d "$state" ] && [ ${#removed[@]} -gt 0 ]; then
    for f in "$state"/*.json; do
      [ -e "$f" ] || continue
      local mine=0
      for ns in "${removed[@]}"; do grep -q "\"$ns\"" "$f" && mine=1; done
      [ "$mine" = 1 ] || continue
      local left=0
      for ns in $(grep -o '"namespaces":\[[^]]*\]' "$f" | grep -o '"[^",:]*"' | tr -d '"' | grep -v namespaces); do
        ip netns list | awk '{print $1}' | grep -qx "$ns" && left=1
      done
      [ "$left" = 0 ] && rm -f "$f" && dropped=$((dropped + 1))
    done
  fi
  echo "removed ${#removed[@]} host(s) of prefix ${prefix}, bridge ${bridge}; ${dropped} fault record(s) dropped"
}

status() {
  local any=0
  for ns in $(hosts); do
    any=1
    echo "$ns $(ip -n "$ns" -4 -o addr show scope global | awk '{print $4}' | tr '\n' ' ')"
  done
  [ "$any" = 1 ] || echo "no hosts of prefix ${prefix}"
  if [ -d "$state" ]; then
    for f in "$state"/*.json; do [ -e "$f" ] && echo "fault record: $f"; done
  fi
  return 0
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
