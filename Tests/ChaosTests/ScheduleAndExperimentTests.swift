import Chaos
#if canImport(FoundationXML)
import FoundationXML
#endif
import Foundation
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing

@Suite(.tags(.unit), .leakChecked)
struct unit_FaultSchedule {
    let handlers = ["server", "h-1", "h-2", "h-3"]

    @Test func sameSeedSameScheduleOtherSeedOtherSchedule() throws {
        let spec = ScheduleSpec(initialDelay: .seconds(2), interval: .seconds(3), jitter: .seconds(1), duration: .zero, count: 20)
        let sel = TargetSelector(include: ["h-*"])
        let a = try FaultSchedule.make(seed: 11, kind: .killRandom, spec: spec, targets: sel, candidates: handlers)
        let b = try FaultSchedule.make(seed: 11, kind: .killRandom, spec: spec, targets: sel, candidates: handlers)
        let c = try FaultSchedule.make(seed: 12, kind: .killRandom, spec: spec, targets: sel, candidates: handlers)
        #expect(a == b)
        #expect(a != c)
        #expect(a.count == 20)
        #expect(Set(a.flatMap(\.targets)).isSubset(of: ["h-1", "h-2", "h-3"]))
        #expect(Set(a.flatMap(\.targets)).count > 1, "random targets vary over 20 faults")
    }

    @Test func firstFaultWaitsForTheInitialDelayAndIntervalsCarryJitter() throws {
        let spec = ScheduleSpec(initialDelay: .seconds(2), interval: .seconds(4), jitter: .seconds(1), count: 30)
        let s = try FaultSchedule.make(seed: 3, kind: .kill, spec: spec, targets: TargetSelector(include: ["h-1"]), candidates: handlers)
        #expect(s[0].offset == .seconds(2), "not at once (Pumba #162)")
        let gaps = zip(s.dropFirst(), s).map { $0.offset - $1.offset }
        #expect(gaps.allSatisfy { $0 >= .seconds(3) && $0 <= .seconds(5) })
        #expect(Set(gaps).count > 5, "jitter makes the gaps differ (Pumba #53)")
        let now = try FaultSchedule.make(seed: 3, kind: .kill, spec: ScheduleSpec(initialDelay: .zero, count: 1),
                                         targets: TargetSelector(include: ["h-1"]), candidates: handlers)
        #expect(now[0].offset == .zero)
    }

    @Test func windowBoundsAScheduleWithoutCount() throws {
        let spec = ScheduleSpec(initialDelay: .seconds(1), interval: .seconds(2), count: nil)
        let s = try FaultSchedule.make(seed: 1, kind: .pause, spec: spec, targets: TargetSelector(include: ["h-2"]),
                                       candidates: handlers, window: .seconds(10))
        #expect(s.map(\.offset) == [.seconds(1), .seconds(3), .seconds(5), .seconds(7), .seconds(9)])
        #expect(throws: ScheduleError.unbounded) {
            try FaultSchedule.make(seed: 1, kind: .pause, spec: spec, targets: TargetSelector(include: ["h-2"]), candidates: handlers)
        }
    }

    @Test func noTargetNamedOrMatchingIsAnErrorNeverAll() throws {
        #expect(throws: ScheduleError.noTargetNamed) {
            try FaultSchedule.make(seed: 1, kind: .kill, spec: .init(), targets: TargetSelector(include: []), candidates: handlers)
        }
        #expect {
            try FaultSchedule.make(seed: 1, kind: .kill, spec: .init(), targets: TargetSelector(include: ["x-*"]), candidates: handlers)
        } throws: { e in
            guard case .noTargetMatches(_, _, let known)? = e as? ScheduleError else { return false }
            return known == handlers.sorted() && "\(e)".contains("no target matches")
        }
        #expect(throws: ScheduleError.self) {
            try TargetSelector(include: ["h-*"], exclude: ["h-*"]).matching(handlers)
        }
    }

    @Test func includeExcludeGlobsAndLimit() throws {
        #expect(try TargetSelector(include: ["h-*"], exclude: ["h-2"]).matching(handlers) == ["h-1", "h-3"])
        #expect(try TargetSelector(include: ["h-[12]", "server"]).matching(handlers) == ["h-1", "h-2", "server"])
        var rng = SeededGenerator(seed: 9)
        #expect(try TargetSelector(include: ["*"], limit: 2, random: false).choose(from: handlers, using: &rng) == ["h-1", "h-2"])
        let two = try TargetSelector(include: ["h-*"], limit: 2).choose(from: handlers, using: &rng)
        #expect(two.count == 2 && Set(two).isSubset(of: ["h-1", "h-2", "h-3"]))
        #expect(try TargetSelector(include: ["h-*"], limit: 9).choose(from: handlers, using: &rng).count == 3)
    }

    @Test func experimentPlanIsTheSameForTheSameSeed() throws {
        let e = try Experiment.load(file: Fixtures.path("experiments/smoke.yaml"))
        let cands: (FaultSpec) -> [String] = { _ in ["server", "h-1", "h-2", "h-3"] }
        let a = try ExperimentRunner.plan(e, seed: 77, candidates: cands)
        let b = try ExperimentRunner.plan(e, seed: 77, candidates: cands)
        #expect(a == b && a.count == 3)
        #expect(a.map(\.name) == ["kill-a-handler", "drop-replies", "force-efsm"])
        #expect(a[0].offset == .seconds(3) && a[0].targets.count == 1 && a[0].targets[0].hasPrefix("h-"))
        #expect(a[2].targets.count == 1 && a[2].targets != ["h-2"])
        let seeds = try (1...20).map { try ExperimentRunner.plan(e, seed: UInt64($0), candidates: cands)[0].targets }
        #expect(Set(seeds).count > 1, "the victim depends on the seed")
    }
}

@Suite(.tags(.unit), .leakChecked)
struct unit_ExperimentYAML {
    @Test func everyExperimentFixtureReads() throws {
        let folder = Fixtures.path("experiments")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 3)
        for f in files { _ = try Experiment.load(file: folder + "/" + f) }
        let drop = try Experiment.load(file: folder + "/job-link-drop.yaml")
        #expect(drop.checks.links.map(\.pattern) == ["h-1"] && drop.checks.links.first?.maxDuplicateExecutions == 1)
    }

    @Test func smokeFixtureReads() throws {
        let e = try Experiment.load(file: Fixtures.path("experiments/smoke.yaml"))
        #expect(e.title == "smoke" && e.duration == .seconds(20) && e.duration < .seconds(30))
        #expect(e.deployment?.name == "demo")
        #expect(e.steadyState?.within == .milliseconds(50) && e.steadyState?.targets == ["h-*"])
        #expect(e.load?.clients == 3 && e.load?.methods.first?.method == "increment_counter")
        #expect(e.load?.methods.last == MethodCall("heartbeat"))
        #expect(e.load?.client.attempts == 5 && e.load?.client.timeout == .milliseconds(500))
        #expect(e.faults.map(\.kind) == [.killRandom, .dropReplies, .forceEFSM])
        #expect(e.faults[0].targets.random && e.faults[0].targets.limit == 1)
        #expect(e.faults[1].schedule.duration == .seconds(2) && e.faults[1].params["count"] == 3)
        #expect(e.faults[2].targets.exclude == ["h-2"])
        #expect(e.checks.maxLostRequests == 0 && e.checks.maxTimeToRecovery == .seconds(8))
        #expect(e.seed == 20240601)
    }

    @Test func proxyOnlyFixtureReads() throws {
        let e = try Experiment.load(file: Fixtures.path("experiments/proxy-only.yaml"))
        #expect(e.deployment == nil && e.proxies.map(\.name) == ["front"])
        #expect(e.faults.allSatisfy { $0.kind == .proxy && $0.schedule.duration > .zero })
        #expect(e.faults[0].schedule.jitter == .seconds(1) && e.faults[0].params["drop"] == 0.3)
    }

    @Test(arguments: [
        ("bad-duration.yaml", 11, "faults[0].schedule.interval", "duration"),
        ("unknown-kind.yaml", 9, "faults[0].kind", "unknown fault kind explode"),
        ("no-target.yaml", 10, "faults[0].targets", "never hits every target"),
        ("bad-probability.yaml", 12, "faults[0].params.drop", "probability"),
        ("unknown-field.yaml", 10, "load.rte", "unknown field"),
        ("missing-title.yaml", 1, "title", "missing"),
        ("bad-endpoint.yaml", 5, "proxies[0].listen", "endpoint"),
        ("not-yaml.yaml", 4, "", "YAML syntax"),
        ("proxy-without-duration.yaml", 11, "faults[0].schedule", "duration"),
    ])
    func badFixturesNameFileLineAndField(file: String, line: Int, field: String, words: String) throws {
        let path = Fixtures.path("bad/experiments/\(file)")
        #expect {
            try Experiment.load(file: path)
        } throws: { e in
            guard let e = e as? ExperimentError else { return false }
            return e.file == path && e.line == line && e.field == field && e.message.contains(words)
                && e.description.hasPrefix("\(path):\(line):")
        }
    }

    @Test func durationsAndDefaults() throws {
        let e = try Experiment.parse("""
            title: d
            duration: 1.5s
            steady_state: {endpoints: {a: "tcp://127.0.0.1:9"}, within: 250ms, recovery_timeout: 1m}
            """)
        #expect(e.duration == .milliseconds(1500))
        #expect(e.steadyState?.within == .milliseconds(250) && e.steadyState?.recoveryTimeout == .seconds(60))
        #expect(e.checks.maxLostRequests == 0 && e.checks.steadyStateRestored)
        #expect(throws: ExperimentError.self) { try Experiment.parse("title: x\nduration: 1s\n") }
    }
}

@Suite(.tags(.unit), .leakChecked)
struct unit_ChaosReport {
    func report(_ checks: [CheckResult]) -> ExperimentReport {
        ExperimentReport(title: "t <&> \"q\"", file: "x.yaml", seed: 5, plan: [], faults: [], load: LoadCounters(),
                         checks: checks, elapsed: .seconds(2), journalPath: nil, junitPath: nil, summaryPath: nil)
    }

    @Test func junitIsWellFormedWithAFailurePerFailedCheck() throws {
        let r = report([
            CheckResult(name: "max_lost_requests", passed: false, message: "3 lost of 10 (allowed 0) <&>"),
            CheckResult(name: "steady_state_restored", passed: true, message: "held"),
        ])
        #expect(r.exitCode == 1 && !r.passed)
        let doc = try JUnitDocument(r.junitXML)
        #expect(doc.testcases == ["max_lost_requests", "steady_state_restored"])
        #expect(doc.failures == ["max_lost_requests": "3 lost of 10 (allowed 0) <&>"])
        #expect(doc.suiteAttributes["tests"] == "2" && doc.suiteAttributes["failures"] == "1")
        #expect(report([CheckResult(name: "a", passed: true, message: "ok")]).exitCode == 0)
    }

    @Test func progressIsOneUpdatingLineOnATerminalAndPlainLinesOtherwise() {
        let tty = Locked<[String]>([])
        let p = ProgressReporter(isTerminal: true, write: { s in tty.mutate { $0.append(s) } })
        p.update(ProgressSnapshot(elapsed: .seconds(1), faultsApplied: 1, faultsPlanned: 2, ok: 5, retried: 1, failed: 0))
        p.update(ProgressSnapshot(elapsed: .milliseconds(1100), ok: 6))
        p.finish(ProgressSnapshot(elapsed: .seconds(2), ok: 9))
        #expect(tty.get().count == 3)
        #expect(tty.get().allSatisfy { $0.hasPrefix("\r\u{1B}[2K") })
        #expect(!tty.get()[0].contains("\n") && tty.get()[2].hasSuffix("\n"))
        #expect(tty.get()[0].contains("faults 1/2") && tty.get()[0].contains("ok 5, retried 1, failed 0"))

        let plain = Locked<[String]>([])
        let q = ProgressReporter(isTerminal: false, plainInterval: .seconds(5), write: { s in plain.mutate { $0.append(s) } })
        for ms in stride(from: 0, through: 12_000, by: 250) { q.update(ProgressSnapshot(elapsed: .milliseconds(ms))) }
        q.finish(ProgressSnapshot(elapsed: .seconds(12)))
        #expect(plain.get().count == 4)  // at 0, 5 and 10 s, and the final line
        #expect(plain.get().allSatisfy { $0.hasPrefix("progress: ") && $0.hasSuffix("\n") && !$0.contains("\u{1B}") })
    }
}

/// Reads JUnit XML with Foundation's parser: fails on XML that is not well formed.
struct JUnitDocument {
    var testcases: [String] = []
    var failures: [String: String] = [:]
    var suiteAttributes: [String: String] = [:]

    init(_ xml: String) throws {
        final class Delegate: NSObject, XMLParserDelegate {
            var doc = JUnitDocument(empty: ())
            var current: String?
            func parser(_ p: XMLParser, didStartElement e: String, namespaceURI: String?, qualifiedName: String?,
                        attributes a: [String: String] = [:]) {
                switch e {
                case "testsuite": doc.suiteAttributes = a
                case "testcase":
                    current = a["name"]
                    doc.testcases.append(a["name"] ?? "?")
                case "failure": if let c = current { doc.failures[c] = a["message"] ?? "" }
                default: break
                }
            }
        }
        let parser = XMLParser(data: Data(xml.utf8))
        let d = Delegate()
        parser.delegate = d
        guard parser.parse() else { throw NotWellFormed(detail: parser.parserError.map { "\($0)" } ?? "?") }
        self = d.doc
    }

    init(empty: ()) {}
}

struct NotWellFormed: Error { let detail: String }
