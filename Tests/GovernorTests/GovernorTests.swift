import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_Governor {
    static func readyHandler(_ id: String, _ h: Harness) -> HandlerConfig {
        let ready = h.deploymentDir.appendingPathComponent("run/\(id).ready").path
        return Harness.shell(id, "touch \(ready); exec /bin/sleep 300", readiness: .readyFile(path: ready, timeout: .seconds(20)))
    }

    @Test func startsServerAndHandlersAndReportsHealthAndMetrics() async throws {
        let h = Harness()
        defer { h.cleanup() }
        var server = Harness.sleeper("server")
        server.role = .server
        let gov = try h.governor((1...3).map { Self.readyHandler("h-\($0)", h) }, server: server)
        try await gov.start()
        #expect(await gov.isRunning)
        #expect(await gov.healthCheck() == ["server": true, "h-1": true, "h-2": true, "h-3": true])
        let metrics = await gov.metrics()
        #expect(metrics.totalServices == 4)
        #expect(metrics.healthyServices == 4)
        #expect(metrics.totalRestarts == 0)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(metrics)) as? [String: Any]
        for key in ["deployment", "running", "total_services", "healthy_services", "total_restarts", "services"] {
            #expect(json?[key] != nil, "metrics must carry upstream's key \(key)")
        }
        #expect(await gov.listHandlers().map(\.name) == ["h-1", "h-2", "h-3"])
        await gov.stop()
        #expect(await gov.status().allSatisfy { $0.status == .stopped })
        #expect(h.tracker.alive.isEmpty)
        // Upstream order: every handler stops before the server.
        let stops = gov.events.events.filter { $0.event == .stopping }.map(\.process)
        #expect(stops.last == "server")
        #expect(Set(stops.dropLast()) == ["h-1", "h-2", "h-3"])
    }

    @Test func eventsAreAppendedAsJsonLines() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try h.governor([Harness.sleeper("a")])
        try await gov.start()
        await gov.stop()
        let text = try String(contentsOfFile: h.deploymentDir.appendingPathComponent("events.jsonl").path, encoding: .utf8)
        let events = try text.split(separator: "\n").map { try JSONDecoder().decode(LifecycleEvent.self, from: Data($0.utf8)) }
        #expect(events.map(\.event) == [.governorStarted, .spawned, .ready, .stopping, .stopped, .governorStopped])
    }

    @Test func aSecondGovernorOnTheSameDeploymentIsRefused() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let first = try h.governor([Harness.sleeper("a")])
        try await first.start()
        let second = try h.governor([Harness.sleeper("a")])
        let error = await #expect(throws: GovernorError.self) { try await second.start() }
        #expect("\(error!)".contains("is already governed by governor pid \(getpid())"))
        #expect(await second.isRunning == false)
        #expect(h.tracker.alive.count == 1, "the refused governor must start nothing")
        await first.stop()
    }

    @Test func patternOperationsActOnMatchingNamesOnly() async throws {
        let h = Harness()
        defer { h.cleanup() }
        var server = Harness.sleeper("server")
        server.role = .server
        let gov = try h.governor([], server: server)
        try await gov.start()
        let started = try await gov.startInstances(of: Harness.sleeper("h"), count: 3)
        #expect(started == ["h-1", "h-2", "h-3"])
        #expect(await gov.count(matching: "h-*") == 3)
        #expect(try await gov.stop(matching: "h-[12]") == ["h-1", "h-2"])
        #expect(await gov.status(matching: "*").map(\.status) == [.running, .stopped, .stopped, .running])
        let before = await gov.status(matching: "h-3").first?.pid
        #expect(try await gov.restart(matching: "h-*") == ["h-1", "h-2", "h-3"])
        #expect(await gov.status(matching: "h-*").allSatisfy { $0.status == .running })
        #expect(await gov.status(matching: "h-3").first?.pid != before)
        #expect(try await gov.startInstances(of: Harness.sleeper("h"), count: 1) == ["h-4"])
        let error = await #expect(throws: GovernorError.self) { try await gov.stop(matching: "x-*") }
        #expect(error == .noMatch(deployment: "t", pattern: "x-*", known: ["server", "h-1", "h-2", "h-3", "h-4"]))
        await gov.stop()
        #expect(h.tracker.alive.isEmpty)
    }

    @Test func addRemoveAndUnknownHandlers() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try h.governor([Harness.sleeper("h1")])
        try await gov.start()
        let info = try await gov.addHandler(Harness.sleeper("h2"))
        #expect(info.status == .running)
        await #expect(throws: GovernorError.duplicateProcess(deployment: "t", name: "h2")) {
            try await gov.addHandler(Harness.sleeper("h2"))
        }
        let pid = try #require(info.pid)
        try await gov.removeHandler("h2")
        #expect(!LiveProcess.isAlive(pid))
        let error = await #expect(throws: GovernorError.self) { try await gov.handlerStatus("h9") }
        #expect("\(error!)" == "deployment \"t\" has no process \"h9\" (known: h1)")
        await gov.stop()
    }
}

@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_Reconcile {
    @Test func aForgedPidFileNamingAnUnrelatedProcessIsRemovedWithoutSignalling() async throws {
        let h = Harness()
        defer { h.cleanup() }
        // An unrelated process the test started itself, NOT through a governor (no deployment marker).
        let bystander = try Spawner.spawn(SpawnRequest(executable: "/bin/sleep", arguments: ["300"]))
        h.tracker.track(bystander.pid)
        defer { bystander.signalGroup(SIGKILL) }
        let identity = try #require(bystander.identity)
        // Forged with the bystander's true identity: only the marker check can tell it is not ours.
        try PidFile.write(PidRecord(identity: identity, name: "h-1"), to: h.pidFile("h-1"))
        try "\(bystander.pid)\n".write(toFile: h.pidFile("upstream"), atomically: true, encoding: .utf8)
        try PidFile.write(PidRecord(pid: 2_000_000_000, startTime: 5, executable: "/x"), to: h.pidFile("dead"))
        try PidFile.write(PidRecord(pid: bystander.pid, startTime: identity.startTime + 1, executable: identity.executable),
                          to: h.pidFile("reused"))

        let gov = try h.governor([])
        try await gov.start()
        let report = await gov.lastReconcile
        #expect(report.stopped.isEmpty)
        #expect(Set(report.removed.keys) == ["h-1", "upstream", "dead", "reused"])
        #expect(report.removed["h-1"]?.contains("not a child of this deployment (no SZGOVERNOR_DIR): not signalled") == true)
        #expect(report.removed["dead"] == "pid 2000000000 is dead")
        #expect(report.removed["reused"]?.contains("now belongs to another process") == true)
        #expect(bystander.exitStatus == nil, "the bystander must not have been signalled")
        #expect(LiveProcess.isAlive(bystander.pid))
        let left = try FileManager.default.contentsOfDirectory(atPath: h.deploymentDir.appendingPathComponent("pids").path)
        #expect(left == ["governor.pid"])
        await gov.stop()
    }

    @Test func aLiveOrphanOfOursIsStoppedWithItsGroup() async throws {
        let h = Harness()
        defer { h.cleanup() }
        // Play an earlier governor that was SIGKILLed: its child runs on, with its PID file.
        let earlier = try h.governor([Harness.sleeper("h-1")])
        let context = try await earlier.makeContext(for: Harness.sleeper("h-1"))
        let orphan = try Spawner.spawn(context.spawn)
        h.tracker.track(orphan.pid)
        try PidFile.write(PidRecord(identity: try #require(orphan.identity), name: "h-1"), to: h.pidFile("h-1"))

        let gov = try h.governor([])
        try await gov.start()
        let report = await gov.lastReconcile
        #expect(report.stopped == ["h-1"], "\(report)")
        #expect(await orphan.waitForExit(timeout: .seconds(30)) == .signaled(signal: SIGTERM, coreDumped: false))
        #expect(!FileManager.default.fileExists(atPath: h.pidFile("h-1")))
        await gov.stop()
    }
}
