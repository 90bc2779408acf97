import Chaos
import Foundation
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A fault actuator that stops the test's handler for good: a kill with auto-restart off.
final class StopPeerActuator: FaultActuator, @unchecked Sendable {
    let name = "stop-peer"
    let kinds: Set<FaultKind> = [.kill]
    let peer: TestPeer
    init(peer: TestPeer) { self.peer = peer }
    func candidates(for kind: FaultKind) async throws -> [String] { ["h-1"] }
    func start(_ fault: ScheduledFault) async throws -> String {
        peer.stop()
        return "stopped h-1 (no restart)"
    }
    func stop(_ fault: ScheduledFault) async throws -> String? { nil }
}

@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_ExperimentRunner {
    func experiment(upstream: String, attempts: Int, timeout: String = "100ms", duration: String = "1500ms", fault: String,
                    checks: String = "max_lost_requests: 0", steady: String = "") throws -> Experiment {
        try Experiment.parse("""
            title: runner test
            seed: 31
            duration: \(duration)
            proxies:
              - {name: front, listen: "tcp://127.0.0.1:*", upstream: "\(upstream)"}
            \(steady)
            load:
              clients: 2
              targets: [front]
              rate: 40
              methods: [echo]
              client: {timeout: \(timeout), attempts: \(attempts)}
            faults:
            \(fault)
            checks: {\(checks)}
            """, file: "inline.yaml")
    }

    static let dropReplies = """
          - name: drop-all-replies
            kind: proxy
            targets: [front]
            schedule: {initial_delay: 300ms, count: 1, duration: 500ms}
            params: {drop: 1, direction: replies}
        """

    func run(_ e: Experiment, folder: TemporaryFolder, extra: [any FaultActuator] = []) async throws -> ExperimentReport {
        let fleet = try ProxyFleet(e.proxies, seed: 31)
        defer { fleet.stop() }
        let env = RunnerEnvironment(actuators: [fleet.actuator] + extra, endpoints: fleet.endpoints)
        return try await ExperimentRunner(experiment: e, environment: env, outputDirectory: folder.path).run()
    }

    @Test func lostRequestsFailTheCheckAndTheJUnitFileSaysSo() async throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        let folder = try TemporaryFolder(prefix: "chaos-runner")
        let e = try experiment(upstream: peer.endpoint, attempts: 1, fault: Self.dropReplies)
        let r = try await run(e, folder: folder)
        #expect(r.exitCode == 1)
        #expect(r.load.lost > 0 && r.load.ok > 0)
        let lost = try #require(r.checks.first { $0.name == "max_lost_requests" })
        #expect(!lost.passed && lost.message.contains("(allowed 0)"))
        let doc = try JUnitDocument(String(contentsOfFile: folder.file("junit.xml"), encoding: .utf8))
        #expect(doc.failures.keys.contains("max_lost_requests"))
        #expect(doc.testcases.contains("max_lost_requests"))
        // The journal: JSON lines, fault start and stop, every request with seq, attempts and latency.
        let lines = try String(contentsOfFile: folder.file("journal.jsonl"), encoding: .utf8).split(separator: "\n")
        let events = try lines.map { try JSON.parse(String($0)) }
        let kinds = events.compactMap { $0["event"]?.stringValue }
        #expect(kinds.first == "experiment_start" && kinds.last == "experiment_end")
        #expect(kinds.contains("fault_start") && kinds.contains("fault_stop"))
        let requests = events.filter { $0["event"] == "request" }
        #expect(requests.count == r.load.sent)
        #expect(requests.allSatisfy { $0["seq"]?.intValue != nil && $0["attempts"] == 1 && $0["latency_ms"]?.doubleValue != nil })
        #expect(requests.contains { $0["outcome"] == "lost" })
        #expect(events.first?["seed"] == "31")
        #expect(try String(contentsOfFile: folder.file("summary.txt"), encoding: .utf8).contains("[FAIL] max_lost_requests"))
    }

    @Test func retriesHealTheSameFaultsAndEveryCheckHolds() async throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        let folder = try TemporaryFolder(prefix: "chaos-runner")
        // Room for a saturated machine (the whole suite in parallel and the other core busy): each request
        // may retry for 12 s (40 attempts of 300 ms) though the fault drops replies for 0.5 s only.
        let e = try experiment(upstream: peer.endpoint, attempts: 40, timeout: "300ms", duration: "6s", fault: Self.dropReplies,
                               checks: "max_lost_requests: 0, max_duplicates: 0, max_time_to_recovery: 5s")
        let r = try await run(e, folder: folder)
        #expect(r.exitCode == 0, "\(r.summary)\n\(Self.notOK(in: folder))")
        #expect(r.load.lost == 0 && r.load.retried > 0)
        #expect(r.faults.count == 1 && r.faults[0].timeToRecovery != nil)
        #expect(r.checks.contains { $0.name == "time_to_recovery: drop-all-replies#0" && $0.passed })
        let doc = try JUnitDocument(String(contentsOfFile: folder.file("junit.xml"), encoding: .utf8))
        #expect(doc.failures.isEmpty && doc.testcases.count == r.checks.count)
    }

    /// The journal's requests that did not end `ok`, for a failure message.
    static func notOK(in folder: TemporaryFolder) -> String {
        let text = (try? String(contentsOfFile: folder.file("journal.jsonl"), encoding: .utf8)) ?? ""
        let bad = text.split(separator: "\n").filter { $0.contains("\"event\":\"request\"") && !$0.contains("\"outcome\":\"ok\"") }
        return bad.isEmpty ? "" : "requests not ok:\n" + bad.prefix(10).joined(separator: "\n")
    }

    @Test func aHandlerThatStaysDownFailsTheSteadyStateCheck() async throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        let folder = try TemporaryFolder(prefix: "chaos-runner")
        let e = try experiment(upstream: peer.endpoint, attempts: 2, duration: "800ms", fault: """
              - name: kill-without-restart
                kind: kill
                targets: [h-1]
                schedule: {initial_delay: 200ms, count: 1}
            """, checks: "max_lost_requests: 1000",
            // A generous `within`: a loaded machine must not fail the check before the fault.
            steady: "steady_state: {targets: [front], within: 3s, recovery_timeout: 400ms, interval: 50ms}")
        let r = try await run(e, folder: folder, extra: [StopPeerActuator(peer: peer)])
        #expect(r.exitCode == 1)
        #expect(r.checks.first { $0.name == "steady_state_before" }?.passed == true)
        let restored = try #require(r.checks.first { $0.name == "steady_state_restored" })
        #expect(!restored.passed && restored.message.contains("not restored"))
    }

    /// The journal's descriptor is close-on-exec: Foundation's `FileHandle(forWritingAtPath:)` was not, and
    /// every process started meanwhile without closing descriptors (an exit test's child) held journals open.
    @Test func theJournalFileIsNotInheritedByChildProcesses() throws {
        let folder = TemporaryFolder(prefix: "journal")
        let path = folder.file("journal.jsonl")
        let journal = try Journal(path: path)
        defer { journal.close() }
        journal.record("probe")
        let fd = try #require(LiveProcess.leakableDescriptors().first { $0.value == path }?.key, "no descriptor open on \(path)")
        let info = try String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8)
        let flags = try #require(info.split(separator: "\n").first { $0.hasPrefix("flags:") }
            .flatMap { Int($0.dropFirst("flags:".count).trimmingCharacters(in: .whitespaces), radix: 8) })
        #expect(flags & Int(O_CLOEXEC) != 0, "\(info)")
    }

    @Test func aFaultKindWithoutActuatorIsRefusedBeforeAnythingRuns() async throws {
        let folder = try TemporaryFolder(prefix: "chaos-runner")
        let e = try experiment(upstream: "tcp://127.0.0.1:\(freeTCPPort())", attempts: 1, fault: """
              - name: efsm
                kind: force-efsm
                targets: [h-1]
            """)
        await #expect {
            try await run(e, folder: folder)
        } throws: { err in
            guard case .noActuator(let f, let k, _)? = err as? RunnerError else { return false }
            return f == "efsm" && k == .forceEFSM
        }
    }
}

@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_SZChaosCommand {
    static var executable: String {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("szchaos").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/szchaos").path
    }

    /// `szchaos` as a child (ScheduleZeroTesting's `TestProcess`: posix_spawn, no Foundation.Process, whose run loop
    /// leaves descriptors behind); with `cwd`, started through `/bin/sh -c 'cd DIR && exec ...'`.
    final class Child: @unchecked Sendable {
        let process: TestProcess
        init(_ args: [String], cwd: String? = nil) throws {
            let exe = integration_zmq_SZChaosCommand.executable
            if let cwd {
                let quoted = ([exe] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
                process = try TestProcess("/bin/sh", ["-c", "cd '\(cwd)' && exec \(quoted)"])
            } else {
                process = try TestProcess(exe, args)
            }
        }
        var text: Text { Text(process) }
        struct Text {
            let p: TestProcess
            init(_ p: TestProcess) { self.p = p }
            func get() -> String { p.lines.map { $0 + "\n" }.joined() }
        }
        func terminate() { process.signal(SIGTERM) }
        func waitExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
            let status = try await process.waitExit(timeout: timeout)
            try await waitUntil("szchaos output complete", timeout: .seconds(5)) { self.process.outputClosed }
            switch status {
            case .exited(let c): return c
            case .signaled(let s): return 128 + s
            }
        }
        var stderr: String { process.stderrText }
        deinit { process.stop() }
    }

    @Test func proxyPrintsSeedAndReadyForwardsAndStopsOnSIGTERM() async throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        let port = freeTCPPort()
        let child = try Child(["proxy", "--listen", "tcp://127.0.0.1:\(port)", "--upstream", peer.endpoint, "--seed", "5", "--delay", "1ms"])
        try await waitUntil("ready line", timeout: .seconds(10)) { child.text.get().contains("ready:") }
        #expect(child.text.get().hasPrefix("seed: 5\n"))
        let reply = try await onThread("call through szchaos proxy") {
            try SyncClient.with(endpoint: "tcp://127.0.0.1:\(port)", configuration: .init(timeout: .seconds(2), attempts: 2)) {
                try $0.call("echo", params: ["seq": 9])["seq"]
            }
        }
        #expect(reply == 9)
        child.terminate()  // SIGTERM
        #expect(try await child.waitExit() == 0)
        #expect(child.text.get().contains("stopped on SIGTERM"))
    }

    @Test func proxyFaultsAreAddedListedAndRemovedAtRunTime() async throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        let folder = try TemporaryFolder(prefix: "szpf")
        defer { folder.remove() }
        let control = "ipc://" + folder.path + "/p.control"
        let port = freeTCPPort()
        let proxy = try Child(["proxy", "--listen", "tcp://127.0.0.1:\(port)", "--upstream", peer.endpoint, "--control", control])
        try await waitUntil("ready line", timeout: .seconds(10)) { proxy.text.get().contains("ready:") }
        func faults(_ args: [String]) async throws -> (Int32, [String], String) {
            let c = try Child(["proxy-faults"] + args)
            let code = try await c.waitExit()
            return (code, c.process.lines, c.stderr)
        }
        var r = try await faults(["add", control, "--drop", "0.5", "--delay", "300ms", "--jitter", "50ms"])
        #expect(r.0 == 0 && r.1 == ["drop 0.5", "delay 300ms +-50ms"], "\(r)")
        r = try await faults(["list", control, "--json"])
        let listed = try #require(r.1.first.flatMap { try? JSON.parse($0).objectValue }, "\(r)")
        #expect(listed["settings"]?["drop"] == 0.5 && listed["settings"]?["delay_ms"] == 300 && listed["success"] == true, "\(r)")
        r = try await faults(["remove", control, "--fault", "drop"])
        #expect(r.0 == 0 && r.1 == ["delay 300ms +-50ms"], "\(r)")
        r = try await faults(["remove", control, "--all"])
        #expect(r.0 == 0 && r.1 == ["none"], "\(r)")
        // Traffic passes untouched again.
        let reply = try await onThread("call through the proxy") {
            try SyncClient.with(endpoint: "tcp://127.0.0.1:\(port)", configuration: .init(timeout: .seconds(2), attempts: 1)) {
                try $0.call("echo", params: ["seq": 4])["seq"]
            }
        }
        #expect(reply == 4)
        r = try await faults(["add", control])
        #expect(r.0 == 2 && r.2.contains("name at least one fault"), "\(r)")
        r = try await faults(["add", control, "--delay", "300"])
        #expect(r.0 == 2 && r.2.contains("a number without a unit is refused"), "\(r)")
        r = try await faults(["list", "ipc://" + folder.path + "/nobody.control"])
        #expect(r.0 == 1 && r.2.contains("no chaos proxy answers"), "\(r)")
        proxy.terminate()
        #expect(try await proxy.waitExit() == 0)
    }

    @Test func usageErrorsExit2() async throws {
        let child = try Child(["proxy", "--listen", "tcp://127.0.0.1:1", "--upstream", "tcp://127.0.0.1:2", "--drop", "7"])
        #expect(try await child.waitExit() == 2)
        #expect(child.stderr.contains("--drop"))
    }

    @Test func runAProxyOnlyExperimentWritesJournalAndJUnit() async throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        let folder = try TemporaryFolder(prefix: "szchaos-run")
        let yaml = """
            title: cli
            seed: 3
            duration: 2s
            proxies: [{name: front, listen: "tcp://127.0.0.1:*", upstream: "\(peer.endpoint)"}]
            steady_state: {targets: [front], within: 3s, recovery_timeout: 10s}
            load: {clients: 1, targets: [front], rate: 20, methods: [echo], client: {timeout: 1s, attempts: 5}}
            faults:
              - {name: slow, kind: proxy, targets: [front], schedule: {initial_delay: 200ms, count: 1, duration: 300ms}, params: {delay_ms: 20}}
            checks: {max_lost_requests: 0}
            output: {directory: out}
            """
        try yaml.write(toFile: folder.file("cli.yaml"), atomically: true, encoding: .utf8)
        let child = try Child(["run", "cli.yaml"], cwd: folder.path)
        #expect(try await child.waitExit() == 0, "\(child.text.get()) \(child.stderr)")
        #expect(child.text.get().contains("seed: 3") && child.text.get().contains("result: every check held"))
        #expect(FileManager.default.fileExists(atPath: folder.file("out/journal.jsonl")))
        #expect(FileManager.default.fileExists(atPath: folder.file("out/junit.xml")))
        // The HTML report beside them, its path printed; a proxy-only run has no governor events.
        #expect(child.text.get().contains("report: out/report.html\n"), "\(child.text.get())")
        let html = try String(contentsOfFile: folder.file("out/report.html"), encoding: .utf8)
        #expect(html.contains("data-passed=\"true\">PASSED") && html.contains("--seed 3</code>"))
        #expect(!FileManager.default.fileExists(atPath: folder.file("out/events.jsonl")))
        let bad = try Child(["run", Fixtures.path("bad/experiments/unknown-kind.yaml")])
        #expect(try await bad.waitExit() == 1)
        #expect(bad.stderr.contains("unknown-kind.yaml:9:11: faults[0].kind"))
    }
}
