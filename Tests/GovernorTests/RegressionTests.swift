import Foundation
import Testing
import TestSupport
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

/// The governor entries of the regression catalogue, against the real ProcessGovernor and real processes.
/// Each name says what broke upstream (or in other supervisors).
@Suite(.tags(.regression, .integration, .governor), .leakChecked)
struct regression_integration_governor_Catalogue {
    @Test func cleanStopIsReportedStoppedNotCrashed() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try h.governor([Harness.sleeper("h-1"), Harness.sleeper("h-2")])
        try await gov.start()
        await gov.stop()
        #expect(await gov.status().map(\.status) == [.stopped, .stopped])
        #expect(await gov.healthCheck() == ["h-1": false, "h-2": false])
    }

    @Test func noChildOrGrandchildSurvivesTheGovernorStop() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gcFile = h.dir.appending("gc.pid").path
        let gov = try h.governor([Harness.shell("h-1", "/bin/sleep 300 & echo $! > \(gcFile).t; mv \(gcFile).t \(gcFile); wait"),
                                  Harness.sleeper("h-2")])
        try await gov.start()
        try await waitUntil("the grandchild pid file") { FileManager.default.fileExists(atPath: gcFile) }
        let grandchild = try #require(pid_t(try String(contentsOfFile: gcFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        h.tracker.track(grandchild)
        await gov.stop()
        try await waitUntil("every started process to be gone") { h.tracker.alive.isEmpty }
    }

    @Test func pidFilesAreRemovedOnStopAndOnExit() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try h.governor([Harness.sleeper("h-1"), Harness.sleeper("h-2")])
        try await gov.start()
        #expect(PidFile.verify(h.pidFile("h-1")).isSafeToSignal)
        kill(try #require(try await gov.handlerStatus("h-2").pid), SIGKILL)
        try await waitUntil("h-2's PID file to go after its exit") { !FileManager.default.fileExists(atPath: h.pidFile("h-2")) }
        await gov.stop()
        let left = try FileManager.default.contentsOfDirectory(atPath: h.deploymentDir.appendingPathComponent("pids").path)
        #expect(left.isEmpty, "left behind: \(left)")
    }

    @Test func childrenRunTheConfiguredExecutableNotTheFirstOnPath() async throws {
        let h = Harness()
        defer { h.cleanup() }
        // Two programs with one name; the governor's own PATH would find `decoy` first.
        let script = "#!/bin/sh\n/bin/sleep 300\n"
        try h.dir.write(script, to: "decoy/szfake", executable: true)
        let real = try h.dir.write(script, to: "build/szfake", executable: true)
        var config = Harness.sleeper("h-1")
        config.executable = "szfake"
        config.arguments = []
        config.environment = ["PATH": h.dir.appending("build").path]
        var options = h.options()
        options.parentEnvironment["PATH"] = h.dir.appending("decoy").path + ":/usr/bin:/bin"
        let gov = try ProcessGovernor(deployment: Deployment(name: "t", handlers: [config]), directory: h.deploymentDir,
                                      options: options)
        try await gov.start()
        let pid = try #require(try await gov.handlerStatus("h-1").pid)
        // /proc/PID/cmdline of a script names the script path the kernel ran.
        let cmdline = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8).split(separator: "\0")
        #expect(cmdline.contains { $0 == real.path })
        #expect(!cmdline.contains { $0.contains("decoy") })
        await gov.stop()
    }

    @Test func fiftyRapidStartStopCyclesLeaveNoPidConflictAndNoProcess() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try h.governor([Harness.sleeper("h-1"), Harness.sleeper("h-2")])
        var seen: [pid_t] = []
        for cycle in 0..<50 {
            try await gov.start()
            let pids = try await gov.status().map { try #require($0.pid) }
            #expect(Set(pids).count == 2, "cycle \(cycle): two processes, two PIDs")
            for name in ["h-1", "h-2"] {
                guard case .alive(let id) = PidFile.verify(h.pidFile(name)), pids.contains(id.pid) else {
                    Issue.record("cycle \(cycle): \(name)'s PID file does not name its live process"); continue
                }
            }
            seen += pids
            await gov.stop()
            #expect(pids.allSatisfy { !LiveProcess.isAlive($0) }, "cycle \(cycle): a process survived its stop")
        }
        #expect(seen.count == 100)
        #expect(h.tracker.alive.isEmpty)
        #expect(LiveProcess.children(of: getpid()).filter { seen.contains($0) }.isEmpty)
    }

    @Test func concurrentStopCallsEndInOneConsistentState() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try h.governor([Harness.sleeper("h-1"), Harness.sleeper("h-2")])
        try await gov.start()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<10 {
                group.addTask {
                    if i % 2 == 0 { await gov.stop() } else { _ = try? await gov.stop(matching: "h-*") }
                }
            }
        }
        #expect(await gov.status().map(\.status) == [.stopped, .stopped])
        #expect(h.tracker.alive.isEmpty)
    }

    @Test func handlerIgnoringSigtermIsKilledAtItsTimeout() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try h.governor([Harness.termIgnorer("h-1", stopTimeout: .milliseconds(250))])
        try await gov.start()
        let pid = try #require(try await gov.handlerStatus("h-1").pid)
        try await waitUntil("the trap to be set") { ProcessIdentity.readExecutable(pid: pid)?.hasSuffix("sleep") == true }
        let (_, elapsed) = await measure { await gov.stop() }
        #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(60))
        #expect(!LiveProcess.isAlive(pid))
        #expect(try await gov.handlerStatus("h-1").lastExit == .signaled(signal: SIGKILL, coreDumped: false))
        #expect(try await gov.handlerStatus("h-1").status == .stopped)
    }

    @Test func aChildKilledWithSigkillIsRestartedInMilliseconds() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try h.governor([Harness.sleeper("h-1", restart: Harness.immediate(.always))])
        try await gov.start()
        for round in 0..<5 {
            let old = try #require(try await gov.handlerStatus("h-1").pid)
            kill(old, SIGKILL)
            try await waitUntil("round \(round): a new h-1") {
                let info = try await gov.handlerStatus("h-1")
                return info.status == .running && info.pid != old
            }
        }
        let metrics = await gov.metrics()
        #expect(metrics.totalRestarts == 5)
        #expect(metrics.restartLatencyMs.count == 5)
        #expect((metrics.restartLatencyMs.median ?? .infinity) < 1000)
        await gov.stop()
    }
}
