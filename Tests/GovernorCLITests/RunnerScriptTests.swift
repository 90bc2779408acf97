import Foundation
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// `run_tests.sh` itself, driven with a stand-in `swift` first on PATH (so nothing is built or run twice):
/// what the runner says and waits for when a test run fails outside any test.
@Suite(.tags(.regression, .integration), .leakChecked)
struct regression_integration_RunnerScript {
    static let runTests = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("run_tests.sh").path

    /// A run whose leak guard fired printed "1 passed, 0 failed" and exited 1; and a leaked process that
    /// held the run's stdout made the runner wait until that process ended by itself (79 s once). The
    /// closing line must count the failure and say why before it, and the runner must stop the leftover
    /// instead of waiting for it.
    @Test func leakGuardFailureIsCountedAndALeakedStdoutHolderIsStoppedNotAwaited() async throws {
        let dir = TemporaryDirectory(prefix: "szrt")
        // The holder outlives any wait the test would accept (300 s): the runner must stop it, not wait.
        // (It slept 20 s once, and a runner slowed down by a busy machine lost that race without a fault.)
        let holderPid = dir.file("holder.pid")
        try dir.write("""
            #!/bin/sh
            case "$1 $2" in
              build*) exit 0 ;;
              "test list") echo "Fake.unit_Fake/one()"; exit 0 ;;
              test*)
                echo "✔ Test one() passed after 0.001 seconds."
                echo "✔ Test run with 1 test in 1 suite passed after 0.001 seconds."
                setsid sh -c 'echo $$ > "$0.t" && mv "$0.t" "$0"; exec sleep 300' "\(holderPid)" &
                echo "LEAK GUARD: the test run left these behind:" >&2
                echo "  - process $! (stand-in)" >&2
                exit 1 ;;
            esac
            exit 2
            """, to: "bin/swift", executable: true)
        let path = dir.file("bin") + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let p = try TestProcess("/bin/bash", [Self.runTests, "quick"], environment: ["PATH": path])
        var holder: pid_t?
        defer {
            p.stop()
            if let holder, LiveProcess.isAlive(holder) { kill(holder, SIGKILL) }  // the runner did not stop it
        }
        let status = try await p.waitExit(timeout: .seconds(60))
        try await waitUntil("the runner's output to end") { p.outputClosed }
        let lines = p.lines
        #expect(status != .exited(0), "\(lines)")
        #expect(lines.last == "1 passed, 1 failed", "the closing line: \(lines.suffix(3))")
        #expect(p.stderrText.contains("run_tests: FAILED (run 1): the leak guard found what the tests left behind"), "\(p.stderrText)")
        // The PID file is written (whole, by a rename) as the holder starts, long before the runner ends.
        let text = (try? String(contentsOfFile: holderPid, encoding: .utf8)) ?? ""
        holder = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
        let pid = try #require(holder, "the holder's PID file: \"\(text)\"")
        try await waitUntil("the runner to have stopped the leaked stdout holder", timeout: .seconds(10)) { !LiveProcess.isAlive(pid) }
    }

    /// A stand-in `swift` that lists `ids`, records the arguments of `swift test` in `args`, and runs `body`
    /// (shell) for `swift test`.
    func fakeSwift(_ dir: TemporaryDirectory, ids: [String], test body: String) throws -> [String: String] {
        try dir.write("""
            #!/bin/sh
            case "$1 $2" in
              build*) exit 0 ;;
              "test list") printf '%s\\n' \(ids.map { "'\($0)'" }.joined(separator: " ")); exit 0 ;;
              test*)
                printf '%s\\n' "$@" > "\(dir.file("args"))"
                \(body)
                ;;
            esac
            exit 2
            """, to: "bin/swift", executable: true)
        return ["PATH": dir.file("bin") + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]
    }

    func runner(_ args: [String], _ env: [String: String]) async throws -> (TestProcess.ExitStatus, [String], String) {
        let p = try TestProcess("/bin/bash", [Self.runTests] + args, environment: env)
        defer { p.stop() }
        let status = try await p.waitExit(timeout: .seconds(60))
        try await waitUntil("the runner's output to end") { p.outputClosed }
        return (status, p.lines, p.stderrText)
    }

    /// JUnit counted two failures for one test with two failed expectations (Swift Testing writes a <failure>
    /// per issue): one failure per failed test now, its messages in one element.
    @Test func junitCountsOneFailurePerFailedTest() async throws {
        let dir = TemporaryDirectory(prefix: "szrt")
        defer { dir.remove() }
        let env = try fakeSwift(dir, ids: ["Fake.unit_Fake/one()", "Fake.unit_Fake/two()"], test: """
            out=""; prev=""; for a in "$@"; do [ "$prev" = --xunit-output ] && out="$a"; prev="$a"; done
            cat > "$out" <<'XML'
            <?xml version="1.0" encoding="UTF-8"?>
            <testsuites><testsuite name="TestResults" errors="0" tests="2" failures="3" skipped="0" time="0.1">
            <testcase classname="Fake.unit_Fake" name="one()" time="0.1"><failure message="first" /><failure message="second" /></testcase>
            <testcase classname="Fake.unit_Fake" name="two()" time="0.1"><failure message="third" /></testcase>
            </testsuite></testsuites>
            XML
            echo "✘ Test one() failed after 0.100 seconds with 2 issues."
            echo "✘ Test two() failed after 0.100 seconds with 1 issue."
            echo "✘ Test run with 2 tests in 1 suite failed after 0.100 seconds with 3 issues."
            exit 1
            """)
        let xml = dir.file("junit.xml")
        let (status, lines, _) = try await runner(["quick", "--xunit", xml], env)
        #expect(status == .exited(1) && lines.last == "0 passed, 2 failed", "\(lines)")
        let text = try String(contentsOfFile: xml, encoding: .utf8)
        #expect(text.contains("failures=\"2\"") && !text.contains("failures=\"3\""), "\(text)")
        #expect(text.components(separatedBy: "<failure").count == 3, "one element per failed test: \(text)")
        #expect(text.contains("first | second"), "\(text)")
    }

    /// `./run_tests.sh quick -- --filter X` ran the union of the mode and X (swift test ORs its filters): the
    /// user's filter narrows the mode's selection now, in `--list` and in the run.
    @Test func aFilterAfterTheDashesNarrowsTheModesSelection() async throws {
        let dir = TemporaryDirectory(prefix: "szrt")
        defer { dir.remove() }
        let env = try fakeSwift(dir, ids: ["Fake.unit_Fake/one()", "Fake.unit_Fake/two()", "Fake.integration_Fake/two()"], test: """
            echo "✔ Test two() passed after 0.001 seconds."
            echo "✔ Test run with 1 test in 1 suite passed after 0.001 seconds."
            exit 0
            """)
        let (listed, lines, _) = try await runner(["quick", "--list", "--", "--filter", "two"], env)
        #expect(listed == .exited(0), "\(lines)")
        #expect(lines.filter { $0.hasPrefix("Fake.") } == ["Fake.unit_Fake/two()"], "\(lines)")
        let (ran, out, err) = try await runner(["quick", "--", "--filter", "two", "--parallel"], env)
        #expect(ran == .exited(0), "\(out) \(err)")
        let args = try String(contentsOfFile: dir.file("args"), encoding: .utf8).split(separator: "\n").map(String.init)
        let filters = args.indices.filter { args[$0] == "--filter" }.map { args[$0 + 1] }
        #expect(filters == ["^(?=.*[./]([a-z]+_)*unit_).*(two)"], "\(args)")
        #expect(args.contains("--parallel"), "the other options pass through: \(args)")
    }

    /// Every test of the run started at once (Swift Testing has no limit unless asked): on two cores the load
    /// average reached 30-40 and tests whose window for a reply is 2 s failed without a fault (flake 23). The
    /// runner passes a width of 8 per core to the test process, and a width the user set is kept.
    @Test func theRunLimitsHowManyTestsRunAtOnceAndKeepsTheUsersLimit() async throws {
        let dir = TemporaryDirectory(prefix: "szrt")
        defer { dir.remove() }
        var env = try fakeSwift(dir, ids: ["Fake.unit_Fake/one()"], test: """
            echo "${SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH:-unset}" > "\(dir.file("width"))"
            echo "✔ Test one() passed after 0.001 seconds."
            echo "✔ Test run with 1 test in 1 suite passed after 0.001 seconds."
            exit 0
            """)
        // Empty counts as unset, so what this test process inherited from its own runner does not count.
        env["SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH"] = ""
        let (ran, out, err) = try await runner(["quick"], env)
        #expect(ran == .exited(0), "\(out) \(err)")
        #expect(try String(contentsOfFile: dir.file("width"), encoding: .utf8) == "\(8 * ProcessInfo.processInfo.activeProcessorCount)\n")
        env["SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH"] = "3"
        let (again, out2, err2) = try await runner(["quick"], env)
        #expect(again == .exited(0), "\(out2) \(err2)")
        #expect(try String(contentsOfFile: dir.file("width"), encoding: .utf8) == "3\n")
    }
}
