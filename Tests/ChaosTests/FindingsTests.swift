import Chaos
import Foundation
import Governor
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing

/// Findings from synthetic governor events and load outcomes (no process, no socket).
@Suite(.tags(.unit), .leakChecked)
struct unit_Findings {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static func event(_ process: String, _ kind: LifecycleEvent.Kind, pid: Int32 = 100, _ detail: String? = nil, at s: Double) -> LifecycleEvent {
        LifecycleEvent(process: process, event: kind, pid: pid, detail: detail, at: t0.addingTimeInterval(s))
    }
    static func fault(_ name: String, targets: [String], from: Double, to: Double) -> FaultWindow {
        FaultWindow(label: "\(name)#0", targets: targets, from: from, to: to)
    }

    @Test func governorEventsGiveEachKindForItsOwnProcessOnly() {
        let events = [
            Self.event("old", .escalated, "still alive after 1s: SIGKILL to group", at: -5),          // before the run: ignored
            Self.event("h-1", .exited, pid: 11, "signal 9 (SIGKILL)", at: 1.5),                      // the fault's own target
            Self.event("h-2", .exited, pid: 12, "exit code 3", at: 1.6),                             // not its target
            Self.event("h-3", .exited, pid: 13, "exit code 3", at: 9),                               // outside every window
            Self.event("stubborn", .stopping, pid: 20, "SIGTERM to group, SIGKILL after 2s", at: 10),
            Self.event("stubborn", .escalated, pid: 20, "still alive after 2s: SIGKILL to group", at: 12),
            Self.event("stubborn", .stopped, pid: 20, "signal 9 (SIGKILL)", at: 12.1),
            Self.event("server", .stopping, pid: 30, "SIGTERM to group, SIGKILL after 2s", at: 12.2),
            Self.event("server", .stopped, pid: 30, "exit code 1", at: 12.3),
            Self.event("c-1", .stopping, pid: 40, "SIGTERM to group, SIGKILL after 2s", at: 12.2),
            Self.event("c-1", .stopped, pid: 40, "exit code 0", at: 12.3),
        ]
        let f = Findings.fromGovernorEvents(events, since: Self.t0, runStart: Self.t0,
                                            faults: [Self.fault("pause", targets: ["h-1"], from: 1, to: 2)])
        #expect(f.map(\.name) == ["crash_during_fault: h-2", "ignored_sigterm: stubborn", "nonzero_exit_on_sigterm: server"])
        #expect(f[0].message.contains("exit code 3 during fault pause#0 on h-1"), "\(f[0])")
        #expect(f[1].message == "ignored SIGTERM and was killed after 2s (pid 20)")
        #expect(f[2].message == "exited with code 1 on SIGTERM (pid 30)")
        #expect(abs((f[1].firstAt ?? 0) - 12) < 0.01)
    }

    @Test func loadOutcomesAreGroupedByTargetAndTextWithTheFirst() {
        let start = ContinuousClock.now
        func o(_ seq: Int, _ target: String, _ kind: RequestOutcomeKind, _ error: String? = nil, wire: String? = nil) -> RequestOutcome {
            RequestOutcome(client: 1, seq: seq, method: "increment_counter", target: target, kind: kind, attempts: 1, latency: .zero,
                           error: error, finishedAt: start.advanced(by: .milliseconds(100 * seq)), wireProblem: wire)
        }
        let f = Findings.fromLoad([o(1, "a", .ok), o(2, "a", .errorReply, "Expecting value"), o(3, "b", .errorReply, "Expecting value"),
                                   o(4, "a", .errorReply, "Expecting value"), o(5, "a", .errorReply, "other"),
                                   o(6, "c", .ok, wire: "a reply without a boolean success"), o(7, "c", .ok, wire: "a reply without a boolean success"),
                                   o(8, "d", .invalidReply, "reply is not a JSON object: [1]"), o(9, "e", .lost)], start: start)
        #expect(f.map(\.name) == ["error_replies: a", "error_replies: b", "error_replies: a", "wire_violation: c", "wire_violation: d"])
        #expect(f.map(\.count) == [2, 1, 1, 2, 1])
        #expect(f[0].message.contains("\"Expecting value\"") && f[0].message.contains("seq 2"))
        #expect(abs((f[0].firstAt ?? 0) - 0.2) < 0.001)
    }

    @Test func policiesMakeFindingsFailAndTheReportCarriesThem() throws {
        let e = try Experiment.parse("title: t\nduration: 1s\ndeployment: ci\nchecks: {findings: {ignored_sigterm: fail, error_replies: warn}}\n")
        #expect(e.checks.findings == [.ignoredSigterm: .fail, .errorReplies: .warn])
        #expect(try Experiment.parse("title: t\nduration: 1s\ndeployment: ci\nchecks: {findings: fail}\n").checks.findings.count == FindingKind.allCases.count)
        #expect(throws: ExperimentError.self) { try Experiment.parse("title: t\nduration: 1s\ndeployment: ci\nchecks: {findings: loud}\n", file: "x.yaml") }
        do {
            _ = try Experiment.parse("title: t\nduration: 1s\ndeployment: ci\nchecks:\n  findings: {ignored_sigterms: fail}\n", file: "x.yaml")
            Issue.record("an unknown kind loaded")
        } catch { #expect("\(error)".contains("x.yaml:5:") && "\(error)".contains("checks.findings.ignored_sigterms")) }

        let found = [Finding(kind: .ignoredSigterm, target: "h-1", message: "ignored SIGTERM and was killed after 2s"),
                     Finding(kind: .errorReplies, target: "h-2", message: "error reply \"x\"", count: 3)]
        let checks = Findings.checks(found, policy: e.checks.findings)
        #expect(checks.map(\.name) == ["finding: ignored_sigterm: h-1"] && checks.allSatisfy { !$0.passed })
        var r = ExperimentReport(title: "t", file: "t.yaml", seed: 1, plan: [], faults: [], load: LoadCounters(), checks: checks, elapsed: .zero)
        r.findings = found
        #expect(r.summary.contains("findings:\n  ignored_sigterm h-1: ignored SIGTERM and was killed after 2s\n  error_replies h-2: error reply \"x\" (3 times)"))
        #expect(r.junitXML.contains("<property name=\"finding.2.error_replies\"") && r.junitXML.contains("name=\"finding: ignored_sigterm: h-1\""))
        #expect(!r.passed)
    }
}

/// An experiment on a deployment of deviant peers under an in-process governor: each finding names exactly its
/// own deviant process, and none names the clean ones (c-1, a szmock handler; the ci deployment's run).
@Suite(.tags(.integration, .zmq, .governor), .leakChecked,
       .enabled(if: FileManager.default.isExecutableFile(atPath: pyzmqPython), "needs /usr/bin/python3 with python3-zmq"))
struct integration_zmq_governor_Findings {
    static func python(_ args: String) -> String {
        #"["/bin/sh", "-c", "mkdir -p \"$0\" && cd \"$0\" && exec /usr/bin/python3 \#(Fixtures.path("peers/deviant.py")) \#(args)", "${DEPLOYMENT_DIR}/work/${NAME}"]"#
    }

    static func deployment() -> String {
        let zmq = freeTCPPort(), http = freeTCPPort(), s1 = freeTCPPort(), s2 = freeTCPPort(), stub = freeTCPPort(), ns = freeTCPPort()
        func handler(_ id: String, _ port: Int, _ deviation: String, stop: String = "20s") -> String {
            """
              - id: \(id)
                endpoint: "tcp://127.0.0.1:\(port)"
                command: \(python(deviation))
                environment: {SZ_NO_REGISTRATION: "1", SCHEDULEZERO_TEST_HANDLER_ID: "\(id)", SCHEDULEZERO_HANDLER_HOST: 127.0.0.1,
                              SCHEDULEZERO_HANDLER_PORT: "\(port)", SZ_SHARED_STATE: "${DEPLOYMENT_DIR}/shared-state.json"}
                readiness: {ping: "${ENDPOINT}", timeout: 20s}
                stop_timeout: \(stop)

            """
        }
        func mock(_ id: String, crashAfter: Int) -> String {
            """
              - id: \(id)
                endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
                command: ["${SZMOCK}", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}", "--crash-after", "\(crashAfter)"]
                readiness: {ping: "${ENDPOINT}", timeout: 20s}

            """
        }
        return """
            deployment: fnd
            environment: {PYTHONUNBUFFERED: "1"}
            defaults:
              stop_timeout: 20s               # a busy machine must not make a clean peer look stubborn
              restart: {policy: never}
            server:
              command: \(python("exit1-on-sigterm"))
              endpoint: "tcp://127.0.0.1:\(zmq)"
              environment: {SCHEDULEZERO_ZMQ_HOST: 127.0.0.1, SCHEDULEZERO_ZMQ_PORT: "\(zmq)", SCHEDULEZERO_HOST: 127.0.0.1, SCHEDULEZERO_PORT: "\(http)"}
              readiness: {http: "http://127.0.0.1:\(http)/api/health", timeout: 20s}
            handlers:
            \(handler("s-1", s1, "shared-state"))\(handler("s-2", s2, "shared-state"))\(handler("stubborn", stub, "ignore-sigterm", stop: "1s"))\(handler("ns", ns, "no-success"))\(mock("c-1", crashAfter: 1_000_000))\(mock("c-2", crashAfter: 40))
            """
    }

    @Test func eachFindingNamesItsOwnDeviantProcessOnly() async throws {
        // Run by `szchaos run` in a process of its own: its governor's stop timeouts are not at the mercy of this
        // test process's busy cooperative pool (an in-process governor saw clean peers "escalated" there).
        // c-2 serves 40 requests (its readiness ping and under a second of load), then crashes while c-1 (not its
        // target) is paused.
        let rig = try CIRig(yaml: Self.deployment(), name: "fnd")
        defer { _ = rig.tracker.killAll() }
        let experiment = try rig.dir.write("""
            title: findings
            seed: 5
            duration: 3s
            deployment: {name: fnd, start_if_not_running: true, stop_after: true}
            load:
              clients: 6
              targets: [s-1, s-2, s-1, s-2, ns, c-2]
              rate: 50                # a bounded load: thousands of log lines per second would hold the stop up
              methods: [{method: increment_counter, params: {counter_name: shared}}]
              client: {timeout: 1s, attempts: 1}
            faults:
              - {name: hold, kind: pause, targets: [c-1], schedule: {initial_delay: 0s, count: 1, duration: 2800ms}}
            checks: {steady_state_restored: false, max_lost_requests: 100000, findings: {ignored_sigterm: fail}}
            """, to: "findings.yaml").path
        let out = rig.dir.path + "/out"
        let run = try await SZChaosRun.run(["run", experiment, "--root", rig.root, "--file", rig.deploymentFile, "--output", out],
                                           timeout: .seconds(120))
        let summary = run.text
        #expect(run.code == 1, "ignored_sigterm fails the run: \(summary) \(run.stderr)")
        let journal = try String(contentsOfFile: out + "/journal.jsonl", encoding: .utf8)
        let findings = journal.split(separator: "\n").compactMap { (try? JSON.parse(String($0)))?.objectValue }.filter { $0["event"] == "finding" }
        var byKind: [String: Set<String>] = [:]
        for f in findings { byKind[f["kind"]?.stringValue ?? "?", default: []].insert(f["target"]?.stringValue ?? "?") }
        var logs = ""
        for name in (byKind["ignored_sigterm"] ?? []).subtracting(["stubborn"]).sorted() {
            let log = (try? String(contentsOfFile: rig.root + "/fnd/logs/\(name).log", encoding: .utf8)) ?? "(no log)"
            let events = ((try? String(contentsOfFile: rig.root + "/fnd/events.jsonl", encoding: .utf8)) ?? "").split(separator: "\n")
                .filter { $0.contains("\"\(name)\"") }.suffix(6).joined(separator: "\n")
            logs += "\n\(name).log ends: \(log.suffix(1200))\n\(name) events:\n\(events)"
        }
        #expect(byKind["ignored_sigterm"]?.contains("stubborn") == true, "\(summary)")
        #expect(byKind["crash_during_fault"] == ["c-2"], "\(summary)")
        #expect(byKind["wire_violation"] == ["ns"], "\(summary)")
        #expect(byKind["error_replies"].map { $0.isSubset(of: ["s-1", "s-2"]) && !$0.isEmpty } == true, "\(summary)")
        // The clean szmock handlers are never flagged at their stop.
        #expect(!(byKind["ignored_sigterm"] ?? []).contains { $0.hasPrefix("c-") } && !(byKind["nonzero_exit_on_sigterm"] ?? []).contains { $0.hasPrefix("c-") })
        let failed = journal.split(separator: "\n").compactMap { (try? JSON.parse(String($0)))?.objectValue }
            .filter { $0["event"] == "check" && $0["passed"] == false }.compactMap { $0["name"]?.stringValue }
        #expect(failed.contains("finding: ignored_sigterm: stubborn"), "\(summary)")
        // Seen in 3 of about 20 runs on a busy machine before the peers had a bounded stop: a clean Python peer
        // that did not exit within its 20 s stop timeout was killed and reported too. The peers now end within
        // SZ_STOP_GRACE_S (5 s) of a SIGTERM whatever blocks their graceful stop (Fixtures/peers/peer_common.py).
        #expect(byKind["ignored_sigterm"] == ["stubborn"], "\(summary)\(logs)")
        #expect(byKind["nonzero_exit_on_sigterm"] == ["server"], "\(summary)\(logs)")
        #expect(Set(byKind.keys) == Set(FindingKind.allCases.map(\.rawValue)), "\(summary)")
        // Policy: ignored_sigterm fails the run, the rest are warnings.
        #expect(failed == ["finding: ignored_sigterm: stubborn"], "\(summary)")
        #expect(findings.contains { $0["kind"] == "ignored_sigterm" && $0["policy"] == "fail" }
                && findings.contains { $0["kind"] == "error_replies" && $0["policy"] == "warn" })
        let junit = try String(contentsOfFile: out + "/junit.xml", encoding: .utf8)
        #expect(junit.contains("finding.1.") && junit.contains("name=\"finding: ignored_sigterm: stubborn\""))
        #expect(summary.contains("findings:\n") && summary.contains("stubborn: ignored SIGTERM and was killed after 1s"), "\(summary)")
    }

    @Test func aCleanRunOnTheCIDeploymentHasNoFinding() async throws {
        try await withCIRig(start: false) { rig in
            let e = try Experiment.parse("""
                title: clean
                seed: 3
                duration: 2s
                deployment: {name: ci, start_if_not_running: true, stop_after: true}
                load: {clients: 2, targets: [h-1, h-2], rate: 20, methods: [ping, {method: increment_counter, params: {counter_name: c}}],
                       client: {timeout: 1s, attempts: 6}}
                faults:
                  - {name: kill, kind: kill, targets: [h-3], schedule: {initial_delay: 300ms, count: 1}}
                checks: {steady_state_restored: false, findings: fail}
                """, file: "clean.yaml")
            let driver = rig.driver()
            let paths = rig.paths
            let candidates: @Sendable () async throws -> [String] = { try driver.handlers("ci") }
            let env = RunnerEnvironment(deployment: driver, actuators: [ProcessFaultActuator(paths: paths, candidates: candidates)])
            let report = try await ExperimentRunner(experiment: e, environment: env, outputDirectory: rig.dir.path + "/out").run()
            await driver.stopAll()
            #expect(report.findings.isEmpty, "\(report.summary)")
            #expect(report.passed, "\(report.summary)")
        }
    }
}
