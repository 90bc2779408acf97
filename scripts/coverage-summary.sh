#!/usr/bin/env bash
# Prints line coverage per library (Sources/<Library>) from the last `swift test --enable-code-coverage`.
# run_tests.sh --coverage calls it (with --scratch-path .build-coverage). Reads the JSON export SwiftPM writes (llvm-cov export format).
set -euo pipefail
cd "$(dirname "$0")/.."
json=$(swift test --show-codecov-path "$@" 2>/dev/null | tail -1)
if [ ! -f "$json" ]; then echo "coverage: no data at $json (run ./run_tests.sh MODE --coverage)" >&2; exit 1; fi
/usr/bin/python3 - "$json" "$PWD" <<'PY'
import json, sys, collections
data = json.load(open(sys.argv[1]))
root = sys.argv[2].rstrip("/") + "/Sources/"
per = collections.OrderedDict()
for f in data["data"][0]["files"]:
    name = f["filename"]
    if not name.startswith(root):
        continue
    lib = name[len(root):].split("/", 1)[0]
    s = f["summary"]["lines"]
    c = per.setdefault(lib, [0, 0])
    c[0] += s["covered"]; c[1] += s["count"]
goal = {"ZeroMQ", "ZMQClient", "Governor"}
print("line coverage per library (goal: 85 % for ZeroMQ, ZMQClient, Governor)")
tc = tt = 0
for lib, (cov, cnt) in sorted(per.items()):
    tc += cov; tt += cnt
    pct = 100.0 * cov / cnt if cnt else 0.0
    mark = "" if lib not in goal else ("  goal met" if pct >= 85 else "  below goal")
    print(f"  {lib:<18} {pct:6.1f} %  ({cov}/{cnt} lines){mark}")
if tt:
    print(f"  {'all':<18} {100.0 * tc / tt:6.1f} %  ({tc}/{tt} lines)")
PY
