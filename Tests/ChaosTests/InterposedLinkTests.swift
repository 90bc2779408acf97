import Chaos
import Foundation
import Governor
import Interposer
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZeroMQ
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif

/// Interposed links on a governed deployment whose handlers have no control channel: every message fault
/// reaches them through their interposer, the server's calls go through it, and the link journal counts
/// what the service cannot tell (lost requests, duplicate executions).
@Suite(.tags(.regression, .integration, .zmq, .governor), .leakChecked)
struct regression_integration_zmq_governor_InterposedLinks {
    /// szmock server + two szmock handlers with no control channel, every link interposed (ipc endpoints
    /// in the deployment folder). `jobs`: the server's `--job` arguments.
    static func yaml(jobs: [String] = [], interpose: Bool = true, attempts: Int = 3, callTimeoutMs: Int = 1500) -> String {
        let jobArgs = jobs.map { ", \"--job\", '\($0)'" }.joined()
        return """
        deployment: links
        defaults:
          stop_timeout: 2s
          \(interpose ? "interpose: {timeout: 5s}" : "interpose: false")
          restart: {policy: always, max_restarts: 20, window: 30s, reset_after: 2s,
                    backoff: {initial: 50ms, multiplier: 2, max: 1s, jitter: 0.1, immediate: 1}}
        server:
          stop_timeout: 10s
          command: ["${SZMOCK}", "server", "--bind", "${ENDPOINT}", "--journal", "${DEPLOYMENT_DIR}/server.jsonl",
                    "--attempts", "\(attempts)", "--call-timeout-ms", "\(callTimeoutMs)", "--retry-delay-ms", "100"\(jobArgs)]
          endpoint: "ipc://${RUN_DIR}/server.sock"
          readiness: {ping: "${ENDPOINT}", within: 200ms, timeout: 30s}
        handlers:
          - id: h
            replicas: 2
            endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
            command: ["${SZMOCK}", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}", "--server", "${SERVER_ENDPOINT}",
                      "--registration-timeout-ms", "500", "--registration-retry-ms", "200"]
            readiness: {ping: "${ENDPOINT}", within: 200ms, timeout: 30s}
        """
    }

    static func withRig(jobs: [String] = [], interpose: Bool = true, _ body: (CIRig) async throws -> Void) async throws {
        let rig = try CIRig(yaml: yaml(jobs: jobs, interpose: interpose), name: "links")
        do {
            try await rig.start()
            try await body(rig)
        } catch {
            await rig.cleanup()
            throw error
        }
        await rig.cleanup()
    }

    /// The JSON lines of a file of the deployment folder (missing: none).
    static func lines(_ rig: CIRig, _ file: String) -> [[String: JSONValue]] {
        let path = rig.paths.directory + "/" + file
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { (try? JSON.parse(String($0)))?.objectValue }
    }

    static func registered(_ rig: CIRig) async throws -> [String: JSONValue] {
        let (r, _) = try await clientCall(rig.dataEndpoint("server"), "list_handlers", timeout: .seconds(3))
        return try r.get()["handlers"]?.objectValue ?? [:]
    }

    /// The real server retries a job whose reply was lost, so one reply dropped on the job link makes the
    /// handler run the job twice while the server sees one success. The link must count exactly the
    /// handler's extra executions, from the wire alone.
    @Test func jobLinkDropIsCountedAsExactlyTheHandlersExtraExecutions() async throws {
        // The server dispatches every 100 ms, many more times than the test needs; it is stopped (gracefully:
        // a dispatch in flight finishes) once the dropped reply and a few later jobs have been seen.
        try await Self.withRig(jobs: [#"h-1:increment_counter:{"counter_name":"c"}@100ms*1000"#]) { rig in
            let drop = try await rig.szchaos(["drop-replies", "h-1", "--count", "1"])
            #expect(drop.code == 0, "\(drop.text) \(drop.stderr)")
            #expect(drop.text.contains("run/h-1.link"), "the fault went to h-1's interposer: \(drop.text)")
            let replied = { Self.lines(rig, "server.jsonl").filter { $0["event"]?.stringValue == "reply" }.count }
            try await waitUntil("the dropped reply on h-1's link", timeout: .seconds(60)) {
                Self.lines(rig, "links/h-1.jsonl").contains { $0["event"]?.stringValue == "reply" && $0["fault"]?.stringValue == "drop_next" }
            }
            let before = replied()
            try await waitUntil("five more jobs after the drop", timeout: .seconds(60)) { replied() >= before + 5 }
            _ = try await rig.governor?.stop(matching: "server")
            let journal = Self.lines(rig, "server.jsonl")
            let replies = journal.filter { $0["event"]?.stringValue == "reply" && $0["success"]?.boolValue == true }.count
            let failures = journal.filter { $0["event"]?.stringValue == "failure" }.count
            #expect(failures == 0, "a job failed for good")
            // Stopped gracefully (the server's stop_timeout is 10 s: at 2 s a busy machine SIGKILLed it with a
            // dispatch in flight that the handler ran and the journal never ended, one execution too many).
            let ended = Set(journal.filter { ["reply", "failure"].contains($0["event"]?.stringValue) }.compactMap { $0["seq"]?.intValue })
            let inFlight = journal.filter { $0["event"]?.stringValue == "dispatch" }.compactMap { $0["seq"]?.intValue }.filter { !ended.contains($0) }
            #expect(inFlight.isEmpty && journal.contains { $0["event"]?.stringValue == "stopped" },
                    "the server was not stopped gracefully: dispatches without an end \(inFlight)")
            #expect(journal.contains { $0["event"]?.stringValue == "attempt_failed" }, "the dropped reply made the server retry")
            let (counts, _) = try await clientCall(rig.dataEndpoint("h-1"), "get_execution_count", timeout: .seconds(3))
            let executed = try counts.get()["by_method"]?.objectValue?["increment_counter"]?.intValue ?? -1
            let link = try #require(await rig.governor?.link("h-1")).linkCounters
            #expect(link.duplicateExecutions >= 1)
            #expect(Int(executed) == replies + link.duplicateExecutions,
                    "handler ran increment_counter \(executed) times for \(replies) successful jobs; the link counted \(link.duplicateExecutions) duplicates")
            try await waitUntil("the journal to hold every duplicate execution the link counted") {
                Self.lines(rig, "links/h-1.jsonl").filter { $0["event"]?.stringValue == "duplicate_execution" }.count == link.duplicateExecutions
            }
            // `szchaos links` reads the same from the journal.
            let links = try await rig.szchaos(["links", "h-1", "--json"])
            #expect(links.code == 0, "\(links.text) \(links.stderr)")
            let summary = links.record?["links"]?.arrayValue?.first?.objectValue
            #expect(summary?["duplicate_executions"]?.intValue == Int64(link.duplicateExecutions), "\(links.text)")
            #expect(summary?["duplicates_by_method"]?.objectValue?["increment_counter"]?.intValue == Int64(link.duplicateExecutions))
            let table = try await rig.szchaos(["links"])
            #expect(table.lines.first?.hasPrefix("LINK") == true && table.lines.contains { $0.hasPrefix("h-1 ") }, "\(table.text)")
        }
    }

    /// An experiment's `checks.links` read the link journals: one dropped reply on the job link fails
    /// `max_duplicate_executions: 0` for h-1 and nothing else, and the summary and JUnit carry the link figures.
    /// (The steady-state probe pings h-2 only: on h-1 the dropped reply must be a job's, not a probe's ping.)
    @Test func experimentLinkChecksCountDuplicateExecutionsFromTheJournal() async throws {
        let rig = try CIRig(yaml: Self.yaml(jobs: [#"h-1:increment_counter:{"counter_name":"c"}@100ms*1000"#]), name: "links")
        let driver = rig.driver()
        do {
            let e = try Experiment.parse("""
                title: job link drop
                seed: 7
                duration: 3s
                deployment: {name: links, start_if_not_running: true, stop_after: true}
                steady_state: {probe: ping, targets: [h-2], within: 2s, recovery_timeout: 20s, interval: 50ms}
                faults:
                  - {name: drop, kind: drop-replies, targets: [h-1], schedule: {initial_delay: 500ms, count: 1}, params: {count: 1}}
                checks:
                  steady_state_restored: true
                  links: {h-1: {max_duplicate_executions: 0, max_lost_requests: 0}, "h-2": {max_duplicate_executions: 0}}
                """, file: "links-experiment.yaml")
            let candidates: @Sendable () async throws -> [String] = { try driver.handlers("links") }
            let env = RunnerEnvironment(deployment: driver, actuators: [ControlFaultActuator(paths: rig.paths, candidates: candidates)])
            let r = try await ExperimentRunner(experiment: e, environment: env, outputDirectory: rig.dir.path + "/out").run()
            await driver.stopAll()
            let dup = try #require(r.checks.first { $0.name == "link_duplicate_executions: h-1" })
            #expect(!dup.passed && dup.message.contains("by method: increment_counter"), "\(r.summary)")
            #expect(r.checks.first { $0.name == "link_duplicate_executions: h-2" }?.passed == true, "\(r.summary)")
            #expect(r.checks.first { $0.name == "link_lost_requests: h-1" }?.passed == true, "\(r.summary)")
            #expect(r.exitCode == 1)
            let h1 = try #require(r.links.first { $0.link == "h-1" })
            #expect(h1.duplicateExecutions >= 1 && h1.latency.count > 0)
            #expect(r.summary.contains("  h-1: ") && r.summary.contains("duplicate executions; latency p50"), "\(r.summary)")
            let junit = try String(contentsOfFile: rig.dir.path + "/out/junit.xml", encoding: .utf8)
            #expect(junit.contains("link.h-1.duplicate_executions") && junit.contains("link.h-1.latency_p95_ms"))
        } catch {
            await driver.stopAll()
            await rig.cleanup()
            throw error
        }
        await rig.cleanup()
    }

    /// A handler registers the private endpoint it bound; the server's interposer rewrites it to the public
    /// one, so the server calls through the handler's interposer, also after the handler is restarted.
    @Test func handlersRegisterTheirPublicEndpointThroughTheServerInterposerAlsoAfterARestart() async throws {
        try await Self.withRig { rig in
            try await waitUntil("both handlers registered") { (try? await Self.registered(rig))?.count == 2 }
            var handlers = try await Self.registered(rig)
            #expect(handlers["h-1"]?.objectValue?["address"]?.stringValue == rig.dataEndpoint("h-1"), "\(handlers)")
            let old = try #require(rig.pid("h-1"))
            kill(old, SIGKILL)
            _ = try await rig.waitRestarted("h-1", from: old)
            try await waitUntil("h-1 registered again through the interposer") {
                Self.lines(rig, "links/server.jsonl").filter { $0["event"]?.stringValue == "rewrite" && $0["to"]?.stringValue == rig.dataEndpoint("h-1") }.count >= 2
            }
            handlers = try await Self.registered(rig)
            #expect(handlers["h-1"]?.objectValue?["address"]?.stringValue == rig.dataEndpoint("h-1"), "\(handlers)")
            let info = try #require(await rig.governor?.status().first { $0.name == "h-1" }?.link)
            #expect(info.publicEndpoint == rig.dataEndpoint("h-1"))
            #expect(info.privateEndpoint.hasSuffix("/run/h-1.private"))
        }
    }

    /// drop-replies, delay, force-efsm, garbage, status and clear on a handler that has no control channel.
    @Test func everyMessageFaultReachesAHandlerWithoutAControlChannelThroughItsInterposer() async throws {
        try await Self.withRig { rig in
            let h2 = rig.dataEndpoint("h-2")
            // The link's proxy faults from the command line (toxiproxy-cli style) on the same interposer.
            let added = try await rig.szchaos(["proxy-faults", "add", "--link", "h-2", "--duplicate", "0.25"])
            #expect(added.code == 0 && added.lines == ["duplicate 0.25"], "\(added.lines)")
            let removed = try await rig.szchaos(["proxy-faults", "remove", "--link", "h-2", "--all"])
            #expect(removed.code == 0 && removed.lines == ["none"], "\(removed.lines)")
            // delay: once, on the reply
            #expect(try await rig.szchaos(["delay", "h-2", "--by", "300ms"]).code == 0)
            let clock = ContinuousClock()
            let t0 = clock.now
            let (delayed, _) = try await clientCall(h2, timeout: .seconds(5))
            #expect(try delayed.get().success)
            #expect(clock.now - t0 >= .milliseconds(300), "the delay was not applied")
            // garbage
            #expect(try await rig.szchaos(["garbage", "h-2"]).code == 0)
            let (garbled, _) = try await clientCall(h2, timeout: .seconds(3))
            guard case .failure(let e) = garbled else { Issue.record("garbage answered a proper reply"); return }
            #expect("\(e)".contains("invalid"), "\(e)")
            #expect(try await rig.szchaos(["clear", "h-2"]).code == 0)
            // drop one reply: the client times out once, reopens, and gets the next
            #expect(try await rig.szchaos(["drop-replies", "h-2", "--count", "1"]).code == 0)
            let (afterDrop, stats) = try await clientCall(h2, timeout: .milliseconds(800), attempts: 3)
            #expect(try afterDrop.get().success)
            #expect(stats.timeouts == 1)
            // force-efsm: a raw REQ socket sends, gets nothing, and is then in EFSM
            #expect(try await rig.szchaos(["force-efsm", "h-2"]).code == 0)
            let efsm = try await onThread("a raw REQ through the swallowing link") { () -> Bool in
                let ctx = try Context()
                defer { try? ctx.terminate(timeout: .seconds(2)) }
                let req = try ctx.socket(.req)
                try req.setReceiveTimeout(.milliseconds(500))
                try req.connect(h2)
                try req.send(Request(method: "ping").encoded())
                _ = try? req.receive()
                do { try req.send(Request(method: "ping").encoded()); return false } catch let e as ZMQError { return e.code == .efsm }
            }
            #expect(efsm, "the swallowed request should leave the REQ socket in EFSM")
            let (recovered, _) = try await clientCall(h2, timeout: .seconds(2))
            #expect(try recovered.get().success, "one request swallowed, then the link answers again")
            // status names the link's counters
            let status = try await rig.szchaos(["status", "h-2", "--json"])
            #expect(status.code == 0)
            let data = status.record?["actions"]?.arrayValue?.first?.objectValue?["data"]?.objectValue
            #expect((data?["link"]?.objectValue?["requests"]?.intValue ?? 0) >= 4, "\(status.text)")
            #expect(try await rig.szchaos(["clear", "h-2"]).code == 0)
            let counters = try #require(await rig.governor?.link("h-2")).linkCounters
            #expect(counters.faulted >= 2)  // the dropped reply and the swallowed request
        }
    }

    /// Faults on the registration link (handler -> server) act on the server's interposer: a lost reply to
    /// a restarted handler's registration is retried by the handler, which registers in the end.
    @Test func registrationLinkFaultIsRecoveredByTheHandlersRetry() async throws {
        try await Self.withRig { rig in
            try await waitUntil("both handlers registered") { (try? await Self.registered(rig))?.count == 2 }
            let drop = try await rig.szchaos(["drop-replies", "server", "--count", "1", "--include-server"])
            #expect(drop.code == 0, "\(drop.text) \(drop.stderr)")
            let old = try #require(rig.pid("h-2"))
            kill(old, SIGKILL)
            _ = try await rig.waitRestarted("h-2", from: old)
            try await waitUntil("the dropped registration reply on the server's link", timeout: .seconds(30)) {
                Self.lines(rig, "links/server.jsonl").contains { $0["event"]?.stringValue == "reply" && $0["fault"]?.stringValue == "drop_next" }
            }
            try await waitUntil("h-2 registered again after the lost reply", timeout: .seconds(30)) {
                Self.lines(rig, "links/server.jsonl").filter {
                    $0["event"]?.stringValue == "rewrite" && $0["to"]?.stringValue == rig.dataEndpoint("h-2")
                }.count >= 2
                    && Self.lines(rig, "server.jsonl").filter { $0["event"]?.stringValue == "register" && $0["handler_id"]?.stringValue == "h-2" }.count >= 2
            }
        }
    }

    /// Before: "control channel ... unreachable" after 2 s, with no hint. A handler with neither an
    /// interposer nor a control channel gets an error that says how to enable interposition.
    @Test func messageFaultWithNowhereToGoSaysHowToEnableInterposition() async throws {
        try await Self.withRig(interpose: false) { rig in
            let r = try await rig.szchaos(["drop-replies", "h-1", "--count", "1"])
            #expect(r.code == 1)
            #expect((r.text + r.stderr).contains("add `interpose: true` to h-1"), "\(r.text) \(r.stderr)")
        }
    }

    /// Interposers stop with the deployment: no link socket, private socket or thread is left.
    @Test func stoppingTheDeploymentStopsItsInterposers() async throws {
        let rig = try CIRig(yaml: Self.yaml(), name: "links")
        do {
            try await rig.start()
            let proxies = try await ["server", "h-1", "h-2"].asyncMap { try #require(await rig.governor?.link($0)) }
            await rig.governor?.stop()
            #expect(proxies.allSatisfy { !$0.isRunning })
            #expect(await rig.governor?.link("h-1") == nil)
            let run = (try? FileManager.default.contentsOfDirectory(atPath: rig.paths.runDirectory)) ?? []
            // The interposers' sockets (public, control) and the private ones behind them are gone.
            #expect(run.filter { $0.hasSuffix(".link") || $0.hasSuffix(".private") || $0.hasSuffix(".sock") }.isEmpty, "\(run)")
            let stopped = Self.lines(rig, "events.jsonl").filter { $0["event"]?.stringValue == "link_stopped" }.count
            #expect(stopped == 3)
        } catch {
            await rig.cleanup()
            throw error
        }
        await rig.cleanup()
    }
}

extension Array {
    func asyncMap<T>(_ body: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for x in self { out.append(try await body(x)) }
        return out
    }
}
