#!/usr/bin/env bash
# The test runner of the ScheduleZero harness. See docs/TESTING.md.
#
#   ./run_tests.sh [MODE] [--list] [--xunit FILE] [--coverage] [--repeat N] [-- swift test options]
#
# Options after `--` go to `swift test`; a `--filter REGEX` there narrows the mode's selection (both must
# match), and `--list` shows the narrowed selection. JUnit XML counts one failure per failed test.
#
# MODE (default: ci)
#   quick        unit tests only: no process, no socket outside the test process; seconds
#   zmq          every test tagged zmq
#   governor     every test tagged governor
#   network      every test tagged network (network namespaces, iptables, tc: root; skipped otherwise)
#   integration  every test tagged integration
#   regression   the regression catalogue (same set as `swift test --filter regression`)
#   slow         every test tagged slow
#   all          everything
#   ci           everything but slow, plus the whole regression catalogue; JUnit XML to test-results/
#   examples     builds each package under Examples/ and runs its tests (the test kit used from outside;
#                the first build compiles the harness again in Examples/NAME/.build: minutes); see
#                scripts/run-examples.sh
#
# A mode that selects no test fails. Swift 6.3 cannot select by tag, so the selection is by the tag tokens
# that every test identifier carries (`unit_zmq_WireCodec/...`); a lint test keeps tokens and tags in step.
#
# Environment
#   SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH  tests running at once (default 8 per core)
#   SZ_TEST_THREADS     threads of the test kit's executor, which .leakChecked suites run on (default 48)
#   SZ_RUN_LIMIT        seconds before the run's watchdog stops it (120 quick, 1200 slow and all, else 600)
#   SZ_POOL_WATCHDOG    seconds: say when a task waited that long for a thread (SZ_POOL_WATCHDOG_STACKS=DIR
#                       also writes every thread's stack there with gdb); see docs/TESTING.md
set -uo pipefail
cd "$(dirname "$0")"

MODES="quick zmq governor network integration regression slow all ci examples"
mode=ci
list=0
xunit=""
coverage=0
repeat=1
extra=()

usage() { sed -n '2,/^set -uo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --list) list=1 ;;
    --xunit) xunit="${2:?--xunit needs a file}"; shift ;;
    --xunit=*) xunit="${1#--xunit=}" ;;
    --coverage) coverage=1 ;;
    --repeat) repeat="${2:?--repeat needs a count}"; shift ;;
    --repeat=*) repeat="${1#--repeat=}" ;;
    --) shift; extra+=("$@"); break ;;
    -*) echo "run_tests.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *)
      if [[ " $MODES " == *" $1 "* ]]; then mode="$1"
      else echo "run_tests.sh: unknown mode '$1' (modes: $MODES)" >&2; exit 2; fi ;;
  esac
  shift
done
if ! [[ "$repeat" =~ ^[1-9][0-9]*$ ]]; then echo "run_tests.sh: --repeat takes a positive count, not '$repeat'" >&2; exit 2; fi

# --- What the project needs on the machine --------------------------------------------------------
scripts/install-deps.sh "$mode" || { echo "run_tests.sh: could not install the system packages" >&2; exit 1; }
# The examples are packages of their own, built and tested in their folders, with the same leftover checks.
[ "$mode" = examples ] && exec scripts/run-examples.sh "$xunit" "${extra[@]+"${extra[@]}"}"

# --- Selection ---------------------------------------------------------------------------------------
# A tag token is a lowercase word followed by `_` at the start of a suite or function name.
tag_regex() { printf '[./]([a-z]+_)*%s_' "$1"; }
filter=()
skip=()
case "$mode" in
  quick) filter=(--filter "$(tag_regex unit)") ;;
  zmq|governor|network|integration|regression|slow) filter=(--filter "$(tag_regex "$mode")") ;;
  all) ;;
  ci) skip=(--skip "^(?!.*$(tag_regex regression)).*$(tag_regex slow)") ;;
esac
# `-- --filter X`: swift test ORs its filters, so the mode's and the user's are joined into one that needs
# both (a lookahead); the other options pass through as they are.
user_filters=()
passthrough=()
for ((k = 0; k < ${#extra[@]}; k++)); do
  if [ "${extra[$k]}" = --filter ] && [ $((k + 1)) -lt ${#extra[@]} ]; then
    user_filters+=("${extra[$((k + 1))]}"); k=$((k + 1))
  elif [[ "${extra[$k]}" == --filter=* ]]; then
    user_filters+=("${extra[$k]#--filter=}")
  else
    passthrough+=("${extra[$k]}")
  fi
done
if [ ${#user_filters[@]} -gt 0 ]; then
  joined=$(IFS='|'; echo "${user_filters[*]}")
  if [ ${#filter[@]} -gt 0 ]; then filter=(--filter "^(?=.*${filter[1]}).*(${joined})"); else filter=(--filter "$joined"); fi
fi
extra=("${passthrough[@]+"${passthrough[@]}"}")

build_flags=()
# Coverage builds go to a scratch folder of their own, so switching coverage on and off rebuilds nothing.
[ "$coverage" = 1 ] && build_flags+=(--enable-code-coverage --scratch-path .build-coverage)

echo "==> building (swift build --build-tests ${build_flags[*]:-})"
if ! swift build --build-tests "${build_flags[@]}" 2>&1 | grep -vE '^warning: prohibited flag' ; then :; fi
if [ "${PIPESTATUS[0]}" != 0 ]; then echo "run_tests.sh: build failed" >&2; exit 1; fi

# The selection, as test identifiers from `swift test list` (the same regular expressions as the run).
select_tests() {
  local all_tests
  all_tests=$(swift test list --skip-build "${build_flags[@]}" 2>/dev/null | grep -E '^[A-Za-z]')
  case "$mode" in
    all) printf '%s\n' "$all_tests" ;;
    ci) printf '%s\n' "$all_tests" | grep -Ev "$(tag_regex slow)"
        printf '%s\n' "$all_tests" | grep -E "$(tag_regex slow)" | grep -E "$(tag_regex regression)" ;;
    quick) printf '%s\n' "$all_tests" | grep -E "$(tag_regex unit)" ;;
    *) printf '%s\n' "$all_tests" | grep -E "$(tag_regex "$mode")" ;;
  esac | { if [ ${#user_filters[@]} -gt 0 ]; then grep -P "$(IFS='|'; echo "${user_filters[*]}")" || true; else cat; fi; } \
       | sed '/^$/d' | sort -u
}
selected=$(select_tests)
n_selected=$(printf '%s\n' "$selected" | sed '/^$/d' | wc -l)
per_tag=""
for t in unit integration regression zmq governor network slow; do
  per_tag="$per_tag${per_tag:+, }$t $(printf '%s\n' "$selected" | grep -cE "$(tag_regex "$t")")"
done

if [ "$list" = 1 ]; then
  printf '%s\n' "$selected"
  echo "run_tests: $mode selects $n_selected test functions ($per_tag)"
  [ "$n_selected" -gt 0 ] || { echo "run_tests.sh: mode $mode selects no test" >&2; exit 1; }
  exit 0
fi
echo "run_tests: $mode selects $n_selected test functions ($per_tag)"
if [ "$n_selected" = 0 ]; then echo "run_tests.sh: mode $mode selects no test" >&2; exit 1; fi

# Seconds one run of the selection may take before the watchdog stops it (SZ_RUN_LIMIT overrides).
case "$mode" in quick) run_limit=120 ;; ci|zmq|governor|network|integration|regression) run_limit=600 ;; *) run_limit=1200 ;; esac
run_limit="${SZ_RUN_LIMIT:-$run_limit}"
# At most this many tests at once (Swift Testing's own limit; without it every test of the run starts at
# once): 8 per core, 16 on two. All 436 of ci starting together put the load average at 30-40 on two cores,
# and a test's 2 s window for a reply then ran out without a fault (flake 23, docs/TESTING.md); at 32, 2 runs
# in 10 with one core busy still lost such a window. 16 costs ci about 5 s. The test kit's executor has more
# threads than that (48: TestExecutor, SZ_TEST_THREADS).
width_default=$(( $(nproc 2>/dev/null || echo 2) * 8 ))
export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="${SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH:-$width_default}"

if [ "$mode" = ci ] && [ -z "$xunit" ]; then xunit="test-results/junit.xml"; fi
xunit_flags=()
if [ -n "$xunit" ]; then mkdir -p "$(dirname "$xunit")"; fi

# check_leftovers: after a run, what the run left behind is named, removed, and fails it.
source scripts/leftovers.sh

log_dir=$(mktemp -d "${TMPDIR:-/tmp}/sz-run-tests.XXXXXX")
trap 'rm -rf "$log_dir"' EXIT
# Interrupted (Ctrl-C, SIGTERM from CI): still stop what this run started and remove its folder.
trap '[ -n "${SZ_TEST_TMPDIR:-}" ] && check_leftovers; exit 130' INT TERM
total_pass=0
total_fail=0
runs_ok=0
start_all=$(date +%s.%N)
for ((i = 1; i <= repeat; i++)); do
  log="$log_dir/run-$i.log"
  xunit_flags=()
  if [ -n "$xunit" ]; then
    if [ "$repeat" = 1 ]; then xunit_flags=(--xunit-output "$xunit"); else xunit_flags=(--xunit-output "${xunit%.xml}-$i.xml"); fi
  fi
  [ "$repeat" -gt 1 ] && echo "==> run $i of $repeat"
  # Everything a test makes goes below this run's own folder; every process a test starts inherits the
  # variable. Both are checked after the run (see check_leftovers).
  SZ_TEST_TMPDIR=$(mktemp -d /tmp/szr.XXXXXX)
  # Traversable by other users (not listable): the permission tests run a client as `nobody` against a
  # socket in a folder of their own below this one.
  chmod 0711 "$SZ_TEST_TMPDIR"
  export SZ_TEST_TMPDIR
  start=$(date +%s.%N)
  # A watchdog over the whole run: a test that hangs despite its own deadlines fails the run with its name.
  # The output goes to a file, not a pipe: a leaked process holding a pipe would keep the reader waiting
  # for its end (a run once waited 79 s for one); `tail --pid` shows it live and stops with the run.
  raw="$log.raw"
  : > "$raw"
  ( timeout --signal=TERM --kill-after=15 "$run_limit" \
      swift test --skip-build --disable-xctest "${build_flags[@]}" "${filter[@]}" "${skip[@]}" "${xunit_flags[@]}" "${extra[@]}" \
      > "$raw" 2>&1 < /dev/null
    echo $? > "$log.rc" ) &
  runner=$!
  tail -s 0.2 -n +1 -f --pid="$runner" "$raw" | grep --line-buffered -vE '^warning: prohibited flag' \
    | awk '/Test run with/ { print; next } /^✘/ { print; shown = 1; next } /^↳/ { if (shown) print; next }
           /^(◇|✔|􀟈)/ { shown = 0; next } /^" to / || /^$/ || / started\.$/ || / passed after [0-9.]+ seconds?\.$/ { next } { print; fflush() }'
  wait "$runner"
  grep -vE '^warning: prohibited flag' "$raw" > "$log"
  rc=$(cat "$log.rc" 2>/dev/null || echo 1)
  # Swift Testing writes one <failure> per recorded issue and counts issues as failures: one per failed
  # test instead (a test with two failed expectations is one failure, its messages kept in one element).
  if [ ${#xunit_flags[@]} -gt 0 ] && [ -f "${xunit_flags[1]}" ]; then
    /usr/bin/python3 - "${xunit_flags[1]}" <<'PY' || echo "run_tests.sh: could not normalise ${xunit_flags[1]}" >&2
import sys, xml.etree.ElementTree as ET
path = sys.argv[1]
tree = ET.parse(path)
root = tree.getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
total = 0
for suite in suites:
    failed = 0
    for case in suite.iter("testcase"):
        fails = case.findall("failure")
        if not fails:
            continue
        failed += 1
        if len(fails) > 1:
            first = fails[0]
            first.set("message", " | ".join(f.get("message", "") for f in fails))
            first.text = "\n".join((f.text or "") for f in fails) or None
            for f in fails[1:]:
                case.remove(f)
    suite.set("failures", str(failed))
    total += failed
if root.tag == "testsuites":
    root.set("failures", str(total))
tree.write(path, encoding="UTF-8", xml_declaration=True)
PY
  fi
  timed_out=0
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    timed_out=1
    echo "run_tests.sh: the run did not finish within ${run_limit}s; still running:" >&2
    grep -E '^◇ Test [^ (]+\(' "$log" | sed -E 's/^◇ Test ([^ (]+\([^)]*\)).*/\1/' | sort -u > "$log.started"
    grep -E '^(✔|✘) Test [^ (]+\(' "$log" | sed -E 's/^(✔|✘) Test ([^ (]+\([^)]*\)).*/\2/' | sort -u > "$log.ended"
    comm -23 "$log.started" "$log.ended" | sed 's/^/  - /' >&2
    rc=1
  fi
  why=()
  [ "$timed_out" = 1 ] && why+=("the watchdog stopped it after ${run_limit}s")
  grep -q '^LEAK GUARD:' "$log" && why+=("the leak guard found what the tests left behind")
  check_leftovers || why+=("processes or files of the run were left behind")
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  ran=$(grep -Eo 'Test run with [0-9]+ tests?' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  failed=$(grep -Ec '^✘ Test [^ ]+\(.*\) .*failed' "$log" || true)
  ran=${ran:-0}
  passed=$((ran - failed))
  if [ "$ran" = 0 ] && [ "$timed_out" = 0 ]; then
    why+=("it ran no test: the selection is empty or the tests did not start")
  fi
  if [ "$rc" != 0 ] && [ "$failed" = 0 ] && [ ${#why[@]} = 0 ]; then
    why+=("swift test exited $rc with no failed test: the test process crashed or its build is stale (see the log above)")
  fi
  if [ ${#why[@]} -gt 0 ]; then
    rc=1
    # A run that failed outside any test still counts as one failure, so the closing line never reads
    # "N passed, 0 failed" for a red run; the reason is said just before it.
    [ "$failed" = 0 ] && failed=1
    for w in "${why[@]}"; do echo "run_tests: FAILED (run $i): $w" >&2; done
  fi
  echo "run_tests: $mode (run $i): $passed passed, $failed failed in ${secs}s"
  total_pass=$((total_pass + passed))
  total_fail=$((total_fail + failed))
  if [ "$rc" = 0 ]; then runs_ok=$((runs_ok + 1)); fi
done
secs_all=$(awk -v a="$start_all" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

if [ "$coverage" = 1 ]; then scripts/coverage-summary.sh --scratch-path .build-coverage || true; fi
[ -n "$xunit" ] && [ "$repeat" = 1 ] && [ -f "$xunit" ] && echo "run_tests: JUnit XML written to $xunit"
[ "$repeat" -gt 1 ] && echo "run_tests: $mode: $runs_ok of $repeat runs passed in ${secs_all}s"
echo "$total_pass passed, $total_fail failed"
[ "$runs_ok" = "$repeat" ]
