# Sourced by run_tests.sh and scripts/run-examples.sh (bash): `check_leftovers` after a test run whose
# processes inherited SZ_TEST_TMPDIR.
# After a run: no process that inherited this run's SZ_TEST_TMPDIR may still live (even if the test process
# itself crashed), and nothing may be left in that folder (temporary folders, PID files, ipc socket files).
# What is found is named, removed, and fails the run.
check_leftovers() {
  local ok=0 pids=() p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = "$$" ] && continue
    # SZ_TEST_TMPDIR itself, or a variable pointing inside it (a governor child's SZGOVERNOR_DIR).
    if { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -qE "^[A-Za-z_][A-Za-z0-9_]*=$SZ_TEST_TMPDIR(/|\$)"; then
      pids+=("$p")
    fi
  done
  if [ ${#pids[@]} -gt 0 ]; then
    echo "run_tests.sh: LEAK: processes of the test run still alive:" >&2
    for p in "${pids[@]}"; do echo "  - $p $({ tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null | cut -c1-160)" >&2; done
    kill -9 "${pids[@]}" 2>/dev/null
    ok=1
  fi
  # Governor cgroups (szgovernor/<id>) made for a deployment folder of this run: their
  # user.szgovernor.folder attribute names it (docs/ARCHITECTURE.md, "Process trees").
  local mount groups g
  mount=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break } }' /proc/self/mountinfo | head -1)
  if [ -n "$mount" ] && [ -d "$mount/szgovernor" ] && command -v python3 >/dev/null; then
    groups=$(python3 - "$mount/szgovernor" "$SZ_TEST_TMPDIR" <<'PY'
import os, sys
top, run = sys.argv[1], sys.argv[2].rstrip("/") + "/"
for name in sorted(os.listdir(top)):
    path = os.path.join(top, name)
    if not os.path.isdir(path):
        continue
    try:
        folder = os.getxattr(path, "user.szgovernor.folder").decode()
    except OSError:
        continue
    if folder.startswith(run):
        print(path)
PY
)
    if [ -n "$groups" ]; then
      echo "run_tests.sh: LEAK: governor cgroups of the test run left behind:" >&2
      for g in $groups; do
        echo "  - $g" >&2
        for c in "$g"/*/; do [ -f "$c/cgroup.kill" ] && echo 1 > "$c/cgroup.kill" 2>/dev/null; done
        sleep 0.2
        for c in "$g"/*/; do [ -f "$c/cgroup.procs" ] && rmdir "$c" 2>/dev/null; done
        rmdir "$g" 2>/dev/null
      done
      ok=1
    fi
  fi
  local left
  left=$(find "$SZ_TEST_TMPDIR" -mindepth 1 -maxdepth 1 2>/dev/null)
  if [ -n "$left" ]; then
    echo "run_tests.sh: LEAK: left in the run's temporary folder:" >&2
    find "$SZ_TEST_TMPDIR" -mindepth 1 -maxdepth 3 | sed 's/^/  - /' | head -20 >&2
    ok=1
  fi
  rm -rf "$SZ_TEST_TMPDIR"
  return $ok
}
