import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_ProcessLifecycle {
    @Test func startReachesRunningAndWritesAVerifiablePidFile() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.sleeper("s"))
        try await p.start()
        let info = await p.info()
        #expect(info.status == .running)
        let pid = try #require(info.pid)
        guard case .alive(let identity) = PidFile.verify(h.pidFile("s")) else {
            Issue.record("the PID file must verify as alive: \(PidFile.verify(h.pidFile("s")))"); return
        }
        #expect(identity.pid == pid)
        #expect(try PidFile.read(h.pidFile("s")).name == "s")
        await p.stop()
    }

    @Test func aCleanStopReadsStoppedAndRemovesThePidFile() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.sleeper("s"))
        try await p.start()
        let pid = try #require(await p.pid)
        await p.stop()
        let info = await p.info()
        #expect(info.status == .stopped)
        #expect(info.lastExit == .signaled(signal: SIGTERM, coreDumped: false))
        #expect(info.pid == nil)
        #expect(!LiveProcess.isAlive(pid))
        #expect(!FileManager.default.fileExists(atPath: h.pidFile("s")))
    }

    @Test func childGetsTheComposedEnvironmentAndLogFile() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.shell("e", "echo \"$GREETING $SZGOVERNOR_NAME\"; exit 0",
                                                  environment: ["GREETING": "hello"]))
        try await p.start()
        try await waitUntil("e to exit") { await p.currentStatus == .stopped }
        let log = try String(contentsOfFile: h.deploymentDir.appendingPathComponent("logs/e.log").path, encoding: .utf8)
        #expect(log == "hello e\n")
    }

    @Test func stopKillsTheWholeGroup() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gcFile = h.dir.appending("gc.pid").path
        let p = try await h.process(Harness.shell("g", "/bin/sleep 300 & echo $! > \(gcFile).t; mv \(gcFile).t \(gcFile); wait"))
        try await p.start()
        try await waitUntil("the grandchild pid file") { FileManager.default.fileExists(atPath: gcFile) }
        let grandchild = try #require(pid_t(try String(contentsOfFile: gcFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        h.tracker.track(grandchild)
        await p.stop()
        try await waitUntil("grandchild \(grandchild) to die") { !LiveProcess.isAlive(grandchild) }
        #expect(await p.currentStatus == .stopped)
    }

    @Test func restartsAfterSigkillUnderPolicyAlways() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.sleeper("r", restart: Harness.immediate(.always)))
        try await p.start()
        let first = try #require(await p.pid)
        kill(first, SIGKILL)
        try await waitUntil("a new pid running") {
            let info = await p.info()
            return info.status == .running && info.pid != nil && info.pid != first
        }
        let info = await p.info()
        #expect(info.restartCount == 1)
        #expect(info.lastError?.contains("signal 9") == true)
        #expect(PidFile.verify(h.pidFile("r")).isSafeToSignal)
        #expect(p.context.latency.respawnMs.count == 1)
        #expect(p.context.latency.readyMs.count == 1)
        await p.stop()
        #expect(await p.currentStatus == .stopped)
    }

    @Test func onFailureLeavesACleanExitStopped() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.shell("c", "exit 0", restart: Harness.immediate(.onFailure)))
        try await p.start()
        try await waitUntil("c to settle as stopped") { await p.currentStatus == .stopped }
        #expect(await p.info().restartCount == 0)
        #expect(await p.info().lastExit == .exited(code: 0))
    }

    @Test func neverPolicyLeavesACrashCrashed() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.sleeper("n"))
        try await p.start()
        kill(try #require(await p.pid), SIGKILL)
        try await waitUntil("n to be crashed") { await p.currentStatus == .crashed }
        #expect(!FileManager.default.fileExists(atPath: h.pidFile("n")))
    }

    @Test func fatalAfterMaxRestarts() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.shell("f", "sleep 0.01; exit 3", restart: Harness.immediate(.onFailure, max: 3)))
        try await p.start()
        try await waitUntil("f to become fatal") { await p.currentStatus == .fatal }
        let info = await p.info()
        #expect(info.restartCount == 3)
        #expect(info.lastExit == .exited(code: 3))
        #expect(info.lastError?.contains("3 restarts within 60s (max_restarts 3)") == true)
        #expect(h.tracker.alive.isEmpty)
        await p.stop()
        #expect(await p.currentStatus == .stopped)
    }

    @Test func backoffWaitsForTheClock() async throws {
        let clock = ManualGovernorClock()
        let h = Harness(clock: clock)
        defer { h.cleanup() }
        let policy = RestartPolicy(mode: .always, maxRestarts: 10, window: .seconds(60),
                                   backoff: BackoffPolicy(initial: .milliseconds(1000), jitter: 0, immediateRestarts: 0))
        let p = try await h.process(Harness.sleeper("b", restart: policy))
        try await p.start()
        let first = try #require(await p.pid)
        kill(first, SIGKILL)
        #expect(await clock.waitForSleepers(1), "the restart must wait on the governor clock")
        #expect(clock.pendingDeadlines == [.milliseconds(1000)])
        #expect(await p.currentStatus == .backoff)
        clock.advance(by: .milliseconds(999))
        #expect(await p.currentStatus == .backoff)
        #expect(await p.pid == nil)
        clock.advance(by: .milliseconds(1))
        try await waitUntil("b to run again after 1000 ms of clock time") { await p.currentStatus == .running }
        #expect(await p.pid != first)
        await p.stop()
    }

    @Test func stopDuringBackoffCancelsTheRestart() async throws {
        let clock = ManualGovernorClock()
        let h = Harness(clock: clock)
        defer { h.cleanup() }
        let policy = RestartPolicy(mode: .always, backoff: BackoffPolicy(initial: .seconds(5), jitter: 0, immediateRestarts: 0))
        let p = try await h.process(Harness.sleeper("b", restart: policy))
        try await p.start()
        kill(try #require(await p.pid), SIGKILL)
        #expect(await clock.waitForSleepers(1))
        await p.stop()
        #expect(clock.sleeperCount == 0)
        clock.advance(by: .seconds(10))
        #expect(await p.currentStatus == .stopped)
        #expect(await p.pid == nil)
    }

    @Test func readyFileGatesRunning() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let go = h.dir.appending("go").path, ready = h.dir.appending("run/w.ready").path
        let p = try await h.process(Harness.shell("w", "while [ ! -e \(go) ]; do sleep 0.005; done; touch \(ready); exec /bin/sleep 300",
                                                  readiness: .readyFile(path: ready, timeout: .seconds(20))))
        let starting = Task { try await p.start() }
        try await waitUntil("w to be starting") { await p.currentStatus == .starting }
        #expect(await p.currentStatus == .starting, "not running before the ready file exists")
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        try await starting.value
        #expect(await p.currentStatus == .running)
        await p.stop()
    }

    @Test func staleReadyFileDoesNotPassTheProbe() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let ready = h.dir.appending("run/w.ready").path
        try h.dir.write("old", to: "run/w.ready")
        let p = try await h.process(Harness.shell("w", "exec /bin/sleep 300",
                                                  readiness: .readyFile(path: ready, timeout: .milliseconds(200))))
        await #expect(throws: GovernorError.self) { try await p.start() }
        #expect(await p.currentStatus == .crashed)
    }

    @Test func readinessTimeoutIsAFailedStartAndKillsTheChild() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let ready = h.dir.appending("never.ready").path
        let p = try await h.process(Harness.sleeper("t").with(readiness: .readyFile(path: ready, timeout: .milliseconds(150))))
        let error = await #expect(throws: GovernorError.self) { try await p.start() }
        #expect("\(error!)".contains("t was not ready after"))
        #expect("\(error!)".contains("ready file \(ready)"))
        #expect(await p.currentStatus == .crashed)
        #expect(h.tracker.alive.isEmpty, "the half-started child must be killed")
        #expect(!FileManager.default.fileExists(atPath: h.pidFile("t")))
    }

    @Test func exitBeforeReadyIsReportedWithItsCode() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.shell("x", "exit 7", readiness: .readyFile(path: h.dir.appending("x.ready").path, timeout: .seconds(300))))
        let (result, elapsed) = await measure { await #expect(throws: GovernorError.self) { try await p.start() } }
        #expect("\(result!)".contains("x exited before it was ready (exit code 7)"))
        // Generous bound: exit tests elsewhere in the run can starve the cooperative pool for seconds.
        #expect(elapsed < .seconds(120), "an exit must end the probe at once, not at its 300 s deadline")
    }

    @Test func sigtermThenSigkillAtTheTimeout() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.termIgnorer("i", stopTimeout: .milliseconds(300)))
        try await p.start()
        let pid = try #require(await p.pid)
        // Make sure the shell has installed its trap before stopping (it execs sleep right after).
        try await waitUntil("the trap to be set") { ProcessIdentity.readExecutable(pid: pid)?.hasSuffix("sleep") == true }
        let (_, elapsed) = await measure { await p.stop() }
        #expect(elapsed >= .milliseconds(300))
        #expect(elapsed < .seconds(60), "escalated at its timeout instead of waiting for the child")
        #expect(await p.info().lastExit == .signaled(signal: SIGKILL, coreDumped: false))
        #expect(await p.currentStatus == .stopped)
        #expect(p.context.events.events.contains { $0.event == .escalated && $0.process == "i" })
    }

    @Test func tenConcurrentStopsEndInOneStoppedState() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.sleeper("c"))
        try await p.start()
        let pid = try #require(await p.pid)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<10 { group.addTask { await p.stop() } }
        }
        #expect(await p.currentStatus == .stopped)
        #expect(!LiveProcess.isAlive(pid))
        let stoppedEvents = p.context.events.events.filter { $0.process == "c" && $0.event == .stopped }
        #expect(stoppedEvents.count == 1, "one stop did the work; the nine others found it stopped")
    }

    @Test func startAndStopRacingLeaveOneConsistentState() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let p = try await h.process(Harness.sleeper("race"))
        for round in 0..<20 {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await p.start() }
                group.addTask { await p.stop(timeout: .seconds(2)) }
                if round % 2 == 0 { group.addTask { try? await p.start() } }
            }
            let info = await p.info()
            let live = h.tracker.alive
            switch info.status {
            case .running:
                #expect(live == [try #require(info.pid)], "round \(round): running means exactly its pid is alive")
            case .stopped:
                #expect(live.isEmpty, "round \(round): stopped means nothing alive")
                #expect(info.pid == nil)
            default:
                Issue.record("round \(round): unexpected state \(info.status)")
            }
        }
        await p.stop()
        #expect(h.tracker.alive.isEmpty)
    }
}

extension HandlerConfig {
    func with(readiness: ReadinessSpec) -> HandlerConfig {
        var c = self
        c.readiness = readiness
        return c
    }
}
