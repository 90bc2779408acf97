import Foundation
import ScheduleZeroWire
import Synchronization
import Interposer

/// What a runner works with besides the experiment: the deployment driver (governor), the steady-state
/// probe, the fault actuators, and endpoints by name for load targets.
public struct RunnerEnvironment: Sendable {
    public var deployment: (any DeploymentDriver)?
    /// `nil`: the runner makes a `PingSteadyStateProbe` from the experiment's `steady_state` (names resolved through
    /// `endpoints` and the deployment driver).
    public var probe: (any SteadyStateProbe)?
    public var actuators: [any FaultActuator]
    /// Name -> endpoint for load and probe targets (e.g. the proxies' listen endpoints).
    public var endpoints: [String: String]
    public var progress: ProgressReporter?
    /// How often the progress line is refreshed.
    public var progressInterval: Duration

    public init(deployment: (any DeploymentDriver)? = nil, probe: (any SteadyStateProbe)? = nil,
                actuators: [any FaultActuator] = [], endpoints: [String: String] = [:],
                progress: ProgressReporter? = nil, progressInterval: Duration = .milliseconds(250)) {
        self.deployment = deployment
        self.probe = probe
        self.actuators = actuators
        self.endpoints = endpoints
        self.progress = progress
        self.progressInterval = progressInterval
    }
}

/// The proxies of a proxy experiment, started from its `proxies` section and stopped together.
public final class ProxyFleet: @unchecked Sendable {
    public let proxies: [String: ChaosProxy]

    /// Starts every proxy of the experiment, each seeded from the experiment's seed and its position.
    public init(_ specs: [ProxySpec], seed: UInt64) throws {
        var started: [String: ChaosProxy] = [:]
        do {
            for (i, p) in specs.enumerated() {
                started[p.name] = try ChaosProxy(ChaosProxyConfiguration(
                    listen: p.listen, upstream: p.upstream, control: p.control,
                    seed: FaultSchedule.seed(seed, entry: 1_000 + i), faults: p.faults, name: p.name))
            }
        } catch {
            for p in started.values { p.stop() }
            throw error
        }
        proxies = started
    }

    /// Name -> the endpoint clients use.
    public var endpoints: [String: String] { proxies.mapValues(\.listenEndpoint) }
    public var actuator: ProxyActuator { ProxyActuator(proxies: proxies) }
    public func stop() { for p in proxies.values { p.stop() } }
    deinit { stop() }
}

/// Runs an experiment: steady state first, then load and the fault schedule together for `duration`, then
/// the checks; writes the journal (JSON lines), the JUnit XML and the summary into the output directory.
public final class ExperimentRunner: @unchecked Sendable {
    public let experiment: Experiment
    public let environment: RunnerEnvironment
    /// The experiment's seed, or the one given, or one drawn now. Always reported.
    public let seed: UInt64
    public let outputDirectory: String
    private let clock = ContinuousClock()
    private let applied = Atomic<Int>(0)
    /// When the run began, on the wall clock of the link journals.
    nonisolated(unsafe) var wallStart = Date()
    /// The command that reproduces the run, for the journal and the HTML report; `nil`: `szchaos run FILE --seed S --output DIR`.
    public nonisolated(unsafe) var command: String?

    public init(experiment: Experiment, environment: RunnerEnvironment, seed: UInt64? = nil, outputDirectory: String? = nil) {
        self.experiment = experiment
        self.environment = environment
        self.seed = seed ?? experiment.seed ?? SeededGenerator.randomSeed()
        self.outputDirectory = outputDirectory ?? experiment.output.directory
    }

    /// The fault plan from given candidates per kind: deterministic for one seed.
    public static func plan(_ experiment: Experiment, seed: UInt64, candidates: (FaultSpec) throws -> [String]) throws -> [ScheduledFault] {
        var all: [(entry: Int, fault: ScheduledFault)] = []
        for (i, f) in experiment.faults.enumerated() {
            let made: [ScheduledFault]
            do {
                made = try FaultSchedule.make(seed: FaultSchedule.seed(seed, entry: i), name: f.name, kind: f.kind,
                                              spec: f.schedule, targets: f.targets, candidates: try candidates(f),
                                              window: experiment.duration, params: f.params)
            } catch let e as ScheduleError {
                throw RunnerError.schedule(fault: f.name, e)
            }
            all += made.map { (i, $0) }
        }
        all.sort { ($0.fault.offset, $0.entry, $0.fault.index) < ($1.fault.offset, $1.entry, $1.fault.index) }
        return all.enumerated().map { n, e in
            var f = e.fault
            f.index = n
            return f
        }
    }

    func actuator(for f: FaultSpec) throws -> any FaultActuator {
        guard let a = environment.actuators.first(where: { $0.kinds.contains(f.kind) }) else {
            throw RunnerError.noActuator(fault: f.name, kind: f.kind, available: environment.actuators.map(\.name))
        }
        return a
    }

    /// The fault plan, with candidates from the actuators.
    public func plan() async throws -> [ScheduledFault] {
        var cands: [String: [String]] = [:]
        for f in experiment.faults {
            cands[f.name] = try await actuator(for: f).candidates(for: f.kind)
        }
        return try Self.plan(experiment, seed: seed) { cands[$0.name] ?? [] }
    }

    private func resolve(_ name: String, field: String) async throws -> (name: String, endpoint: String) {
        if name.contains("://") { return (name, name) }
        if let ep = environment.endpoints[name] { return (name, ep) }
        if let d = experiment.deployment, let driver = environment.deployment,
           let ep = try await driver.endpoint(of: name, in: d.name) {
            return (name, ep)
        }
        throw RunnerError.unknownTarget(field: field, name: name, known: environment.endpoints.keys.sorted())
    }

    private func makeProbe() async throws -> (any SteadyStateProbe)? {
        if let p = environment.probe { return p }
        guard let s = experiment.steadyState else { return nil }
        var eps = s.endpoints
        var names = environment.endpoints.keys.sorted()
        if let d = experiment.deployment, let driver = environment.deployment { names += try await driver.targets(d.name) }
        for pattern in s.targets {
            let hits = names.filter { TargetSelector.matches($0, pattern) }
            guard !hits.isEmpty else { throw RunnerError.unknownTarget(field: "steady_state.targets", name: pattern, known: names) }
            for h in hits where h != "server" && h != "governor" {
                eps[h] = try await resolve(h, field: "steady_state.targets").endpoint
            }
        }
        return PingSteadyStateProbe(endpoints: eps, within: s.within)
    }

    /// Probes until the steady state holds or `timeout` passes; returns how long it took, or `nil`.
    private func waitSteady(_ probe: any SteadyStateProbe, timeout: Duration, every: Duration) async -> (Duration?, ProbeResult) {
        let t0 = clock.now
        while true {
            let r = await probe.probe()
            if r.holds { return (clock.now - t0, r) }
            if clock.now - t0 >= timeout || Task.isCancelled { return (nil, r) }
            try? await Task.sleep(for: every)
        }
    }

    /// Runs the experiment. Throws only when it cannot be run at all (no actuator for a fault, no deployment
    /// driver, unwritable output); a failed check is a report with exit code 1.
    public func run() async throws -> ExperimentReport {
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true) } catch {
            throw RunnerError.cannotWrite(path: outputDirectory, reason: "\(error)")
        }
        let journalPath = (outputDirectory as NSString).appendingPathComponent("journal.jsonl")
        let junitPath = (outputDirectory as NSString).appendingPathComponent("junit.xml")
        let summaryPath = (outputDirectory as NSString).appendingPathComponent("summary.txt")
        let start = clock.now
        wallStart = Date()
        let journal = try Journal(path: journalPath, start: start)
        defer { journal.close() }

        // Deployment.
        var startedDeployment = false
        if let d = experiment.deployment {
            guard let driver = environment.deployment else { throw RunnerError.noDeploymentDriver(deployment: d.name) }
            if try await !driver.isRunning(d.name) {
                guard d.startIfNotRunning else { throw RunnerError.deploymentNotRunning(deployment: d.name) }
                environment.progress?.note("deployment \(d.name) is not running: starting it")
                try await driver.start(d.name)
                startedDeployment = true
                journal.record("deployment_started", ["deployment": .string(d.name)])
                environment.progress?.note("deployment \(d.name) started")
            }
        }
        do {
            var report = try await runStarted(start: start, journal: journal, paths: (journalPath, junitPath, summaryPath))
            await stopDeployment(if: startedDeployment, journal: journal)
            await copyDeploymentEvents()
            // Findings from the governor's events, the stop of the deployment included.
            if let d = experiment.deployment, let path = try? await environment.deployment?.eventLog(d.name) {
                report.findings += Findings.fromGovernorEvents(Findings.readEvents(path), since: wallStart, runStart: wallStart,
                                                               faults: FaultWindow.of(report.faults))
            }
            report.checks += Findings.checks(report.findings, policy: experiment.checks.findings)
            try publish(report, journal: journal)
            return report
        } catch {
            await stopDeployment(if: startedDeployment, journal: journal)
            throw error
        }
    }

    private func stopDeployment(if started: Bool, journal: Journal) async {
        guard started, let d = experiment.deployment, d.stopAfter, let driver = environment.deployment else { return }
        do {
            try await driver.stop(d.name)
            journal.record("deployment_stopped", ["deployment": .string(d.name)])
            environment.progress?.note("deployment \(d.name) stopped")
        } catch {
            journal.record("deployment_error", ["deployment": .string(d.name), "error": .string("\(error)")])
        }
    }

    private func runStarted(start runStart: ContinuousClock.Instant, journal: Journal,
                            paths: (journal: String, junit: String, summary: String)) async throws -> ExperimentReport {
        let (journalPath, junitPath, summaryPath) = paths
        let plan = try await plan()
        var actuators: [String: any FaultActuator] = [:]
        for f in experiment.faults { actuators[f.name] = try actuator(for: f) }
        let probe = try await makeProbe()
        let loadTargets = try await {
            var out: [(name: String, endpoint: String)] = []
            for t in experiment.load?.targets ?? [] { out.append(try await resolve(t, field: "load.targets")) }
            return out
        }()
        journal.record("experiment_start", [
            "title": .string(experiment.title), "file": .string(experiment.file), "seed": .string(String(seed)),
            "duration_ms": .int(Int64(experiment.duration.wholeMilliseconds)), "plan": .array(plan.map(\.json)),
            "wall_start": .double(wallStart.timeIntervalSince1970), "command": .string(command ?? reproduceCommand()),
        ])
        environment.progress?.note("szchaos: \(experiment.title): seed \(seed), \(plan.count) fault(s) planned over \(experiment.duration.millisText)")

        var checks: [CheckResult] = []
        let steady = experiment.steadyState
        // Steady state before anything: if it does not hold, no fault is injected (Chaos Toolkit's rule).
        if let probe {
            let (took, r) = await waitSteady(probe, timeout: steady?.recoveryTimeout ?? .seconds(10), every: steady?.interval ?? .milliseconds(100))
            journal.record("steady_state", ["phase": "before", "holds": .bool(took != nil), "details": .array(r.details.map { .string($0) })])
            checks.append(CheckResult(name: "steady_state_before", passed: took != nil,
                                      message: took != nil ? "held before the faults" : "did not hold before the faults: " + r.details.joined(separator: "; ")))
            if took == nil {
                return finish(plan: plan, records: [], load: LoadCounters(), checks: checks, start: runStart,
                              paths: (journalPath, junitPath, summaryPath))
            }
        }

        // The fault clock starts now, with the load: a deployment that took long to start (or a steady state
        // that took long to hold) must not squeeze the schedule.
        let start = clock.now
        journal.record("faults_clock_start", [:])
        let load = experiment.load.map { LoadGenerator(spec: $0, endpoints: loadTargets, seed: seed, journal: journal) }
        load?.start()
        let progressTask = environment.progress.map { p in
            Task { [weak self] in
                while !Task.isCancelled, let self {
                    p.update(self.snapshot(load: load, planned: plan.count, start: start))
                    try? await Task.sleep(for: environment.progressInterval)
                }
            }
        }

        // Faults, each on its own schedule; the experiment lasts `duration` or until the last fault is undone
        // and recovered, whichever is later.
        let records = await withTaskGroup(of: FaultRecord.self) { group in
            for f in plan {
                let a = actuators[f.name]!
                group.addTask { await self.execute(f, actuator: a, start: start, journal: journal, probe: probe, load: load) }
            }
            group.addTask {
                try? await Task.sleep(until: start.advanced(by: self.experiment.duration), clock: self.clock)
                return FaultRecord(fault: ScheduledFault(index: -1, name: "", kind: .proxy, targets: [], offset: .zero, duration: .zero))
            }
            var out: [FaultRecord] = []
            for await r in group where r.fault.index >= 0 { out.append(r) }
            return out.sorted { $0.fault.index < $1.fault.index }
        }
        // Stopping waits for each client's current call (attempts x timeout): on a thread of its own, never
        // on the cooperative pool, which the probes and the recovery watchers of other runs share.
        if let load { _ = await onOwnThread("load-stop") { load.stop() } }
        progressTask?.cancel()
        environment.progress?.finish(snapshot(load: load, planned: plan.count, start: start))

        // Checks.
        if let probe, experiment.checks.steadyStateRestored {
            let (took, r) = await waitSteady(probe, timeout: steady?.recoveryTimeout ?? .seconds(10), every: steady?.interval ?? .milliseconds(100))
            journal.record("steady_state", ["phase": "after", "holds": .bool(took != nil), "details": .array(r.details.map { .string($0) })])
            checks.append(CheckResult(name: "steady_state_restored", passed: took != nil,
                                      message: took.map { "held again \($0.millisText) after the run" }
                                        ?? "not restored within \((steady?.recoveryTimeout ?? .seconds(10)).millisText): " + r.details.joined(separator: "; "),
                                      time: took ?? .zero))
        }
        for r in records {
            if let e = r.error {
                checks.append(CheckResult(name: "fault_applied: \(r.fault.name)#\(r.fault.index)", passed: false, message: e))
            }
        }
        let counters = load?.counters ?? LoadCounters()
        if let max = experiment.checks.maxLostRequests {
            checks.append(CheckResult(name: "max_lost_requests", passed: counters.lost <= max,
                                      message: "\(counters.lost) lost of \(counters.sent) (allowed \(max))"))
        }
        if let max = experiment.checks.maxErrors {
            checks.append(CheckResult(name: "max_errors", passed: counters.errors <= max,
                                      message: "\(counters.errorReplies) error replies + \(counters.invalidReplies) invalid replies (allowed \(max))"))
        }
        if let max = experiment.checks.maxDuplicates {
            checks.append(CheckResult(name: "max_duplicates", passed: counters.mismatched <= max,
                                      message: "\(counters.mismatched) replies answered another request (allowed \(max))"))
        }
        let links = try await linkSummaries()
        for l in links { journal.record("link_summary", l.json.objectValue ?? [:]) }
        checks += Self.linkChecks(experiment.checks.links, links)
        for r in records where r.error == nil && r.fault.index >= 0 {
            let name = "time_to_recovery: \(r.fault.name)#\(r.fault.index)"
            if let limit = experiment.checks.maxTimeToRecovery {
                let ok = r.timeToRecovery.map { $0 <= limit } ?? false
                checks.append(CheckResult(name: name, passed: ok,
                                          message: (r.timeToRecovery.map { "recovered in \($0.millisText)" } ?? "did not recover") + " (allowed \(limit.millisText))",
                                          time: r.timeToRecovery ?? .zero))
            }
        }
        if checks.isEmpty {
            checks.append(CheckResult(name: "ran", passed: true, message: "the experiment ran; it has no checks"))
        }
        var report = finish(plan: plan, records: records, load: counters, checks: checks, start: runStart,
                            paths: (journalPath, junitPath, summaryPath), links: links)
        report.findings = Findings.fromLoad(load?.outcomes ?? [], start: runStart)
        return report
    }

    /// What each interposed link of the deployment saw during this run (its journal from the run's start).
    private func linkSummaries() async throws -> [LinkSummary] {
        guard let d = experiment.deployment, let driver = environment.deployment else { return [] }
        let journals = try await driver.linkJournals(d.name)
        return journals.keys.sorted().map { LinkSummary.read(journals[$0]!, link: $0, since: wallStart) }
    }

    /// `checks.links`: one check per matching link and allowance; a pattern that matches no link fails.
    public static func linkChecks(_ specs: [LinkCheckSpec], _ links: [LinkSummary]) -> [CheckResult] {
        var out: [CheckResult] = []
        for spec in specs {
            let hits = links.filter { TargetSelector.matches($0.link, spec.pattern) }
            guard !hits.isEmpty else {
                out.append(CheckResult(name: "links: \(spec.pattern)", passed: false,
                                       message: "no interposed link matches \"\(spec.pattern)\" (links: \(links.map(\.link).joined(separator: ", ")); "
                                        + "set `interpose: true` in the deployment file)"))
                continue
            }
            for l in hits {
                func byMethod(_ d: [String: Int]) -> String {
                    d.isEmpty ? "" : "; by method: " + d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                }
                if let max = spec.maxDuplicateExecutions {
                    out.append(CheckResult(name: "link_duplicate_executions: \(l.link)", passed: l.duplicateExecutions <= max,
                                           message: "\(l.duplicateExecutions) duplicate execution(s) in \(l.requests) requests (allowed \(max))"
                                            + byMethod(l.duplicatesByMethod)))
                }
                if let max = spec.maxLostRequests {
                    out.append(CheckResult(name: "link_lost_requests: \(l.link)", passed: l.lost <= max,
                                           message: "\(l.lost) request(s) forwarded and never answered (allowed \(max))" + byMethod(l.lostByMethod)))
                }
                if let max = spec.maxLateReplies {
                    out.append(CheckResult(name: "link_late_replies: \(l.link)", passed: l.late <= max,
                                           message: "\(l.late) reply(ies) after the requester had gone (allowed \(max))"))
                }
            }
        }
        return out
    }

    private func finish(plan: [ScheduledFault], records: [FaultRecord], load: LoadCounters, checks: [CheckResult],
                        start: ContinuousClock.Instant,
                        paths: (journal: String, junit: String, summary: String), links: [LinkSummary] = []) -> ExperimentReport {
        ExperimentReport(title: experiment.title, file: experiment.file, seed: seed, plan: plan, faults: records,
                         load: load, checks: checks, elapsed: clock.now - start, journalPath: paths.journal,
                         junitPath: paths.junit, summaryPath: paths.summary, links: links)
    }

    /// Journals the findings and checks, then writes the JUnit XML and the summary.
    private func publish(_ report: ExperimentReport, journal: Journal) throws {
        for f in report.findings {
            var fields = f.json.objectValue ?? [:]
            fields["policy"] = .string((experiment.checks.findings[f.kind] ?? .warn).rawValue)
            journal.record("finding", fields)
        }
        for c in report.checks {
            journal.record("check", ["name": .string(c.name), "passed": .bool(c.passed), "message": .string(c.message)])
        }
        journal.record("experiment_end", ["passed": .bool(report.passed), "load": report.load.json])
        guard let junit = report.junitPath, let summary = report.summaryPath else { return }
        do {
            try report.junitXML.write(toFile: junit, atomically: true, encoding: .utf8)
            try report.summary.write(toFile: summary, atomically: true, encoding: .utf8)
        } catch {
            throw RunnerError.cannotWrite(path: outputDirectory, reason: "\(error)")
        }
    }

    private func snapshot(load: LoadGenerator?, planned: Int, start: ContinuousClock.Instant) -> ProgressSnapshot {
        let c = load?.counters ?? LoadCounters()
        return ProgressSnapshot(elapsed: clock.now - start, total: experiment.duration, faultsApplied: applied.load(ordering: .relaxed),
                                faultsPlanned: planned, ok: c.ok, retried: c.retried, failed: c.notOK)
    }

    private func execute(_ f: ScheduledFault, actuator: any FaultActuator, start: ContinuousClock.Instant, journal: Journal,
                         probe: (any SteadyStateProbe)?, load: LoadGenerator?) async -> FaultRecord {
        var rec = FaultRecord(fault: f)
        try? await Task.sleep(until: start.advanced(by: f.offset), clock: clock)
        if Task.isCancelled { rec.error = "cancelled before it started"; return rec }
        let base: [String: JSONValue] = ["index": .int(Int64(f.index)), "fault": .string(f.name), "kind": .string(f.kind.rawValue),
                                         "targets": .array(f.targets.map { .string($0) }), "actuator": .string(actuator.name)]
        do {
            let what = try await actuator.start(f)
            rec.startedAt = journal.seconds()
            rec.applied = what
            applied.add(1, ordering: .relaxed)
            var fields = base
            fields["applied"] = .string(what)
            journal.record("fault_start", fields)
            environment.progress?.note("fault \(f.index): \(what)")
        } catch {
            rec.error = "\(error)"
            var fields = base
            fields["error"] = .string("\(error)")
            journal.record("fault_error", fields)
            return rec
        }
        if f.duration > .zero { try? await Task.sleep(for: f.duration) }
        do {
            let what = try await actuator.stop(f)
            var fields = base
            if let what { fields["undone"] = .string(what) }
            journal.record("fault_stop", fields)
        } catch {
            rec.error = "could not undo: \(error)"
            var fields = base
            fields["error"] = .string("\(error)")
            journal.record("fault_error", fields)
        }
        let ended = clock.now
        rec.stoppedAt = journal.seconds()
        // Time to recovery: the steady state again, or (without a probe) the next success reply of the load.
        let budget = experiment.steadyState?.recoveryTimeout ?? .seconds(10)
        if let probe {
            let (took, _) = await waitSteady(probe, timeout: budget, every: experiment.steadyState?.interval ?? .milliseconds(100))
            rec.timeToRecovery = took
        } else if let load {
            while clock.now - ended < budget {
                if let ok = load.lastOK, ok > ended { rec.timeToRecovery = ok - ended; break }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        var fields = base
        fields["time_to_recovery_ms"] = rec.timeToRecovery.map { .double(($0.secondsValue * 1e6).rounded() / 1000) } ?? .null
        journal.record("fault_recovered", fields)
        return rec
    }
}
