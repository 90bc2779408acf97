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
        let naturalEnd = dir.file("holder-ended-by-itself")
        try dir.write("""
            #!/bin/sh
            case "$1 $2" in
              build*) exit 0 ;;
              "test list") echo "Fake.unit_Fake/one()"; exit 0 ;;
              test*)
                echo "✔ Test one() passed after 0.001 seconds."
                echo "✔ Test run with 1 test in 1 suite passed after 0.001 seconds."
                setsid sh -c 'sleep 20; touch "$0"' "\(naturalEnd)" &
                echo "LEAK GUARD: the test run left these behind:" >&2
                echo "  - process $! (stand-in)" >&2
                exit 1 ;;
            esac
            exit 2
            """, to: "bin/swift", executable: true)
        let path = dir.file("bin") + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let p = try TestProcess("/bin/bash", [Self.runTests, "quick"], environment: ["PATH": path])
        defer { p.stop() }
        let status = try await p.waitExit(timeout: .seconds(60))
        try await waitUntil("the runner's output to end") { p.outputClosed }
        let lines = p.lines
        #expect(status != .exited(0), "\(lines)")
        #expect(lines.last == "1 passed, 1 failed", "the closing line: \(lines.suffix(3))")
        #expect(p.stderrText.contains("run_tests: FAILED (run 1): the leak guard found what the tests left behind"), "\(p.stderrText)")
        #expect(!FileManager.default.fileExists(atPath: naturalEnd), "the runner waited for the leaked stdout holder to end by itself")
    }
}
