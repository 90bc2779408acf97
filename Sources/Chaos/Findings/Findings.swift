import Foundation
import Governor
import ScheduleZeroWire

/// What the harness reports by itself after an experiment, from what the governor and the load already saw
/// (docs/CHAOS.md, "Findings"). A warning unless the experiment's `checks.findings` makes its kind fail.
public enum FindingKind: String, Sendable, CaseIterable, Hashable {
    /// The governor's `escalated`: SIGTERM ignored until the stop timeout, then killed.
    case ignoredSigterm = "ignored_sigterm"
    /// A stop (`stopping`, SIGTERM) that ended with a non-zero exit code.
    case nonzeroExitOnSigterm = "nonzero_exit_on_sigterm"
    /// A process exited during a fault window of which it was not the target.
    case crashDuringFault = "crash_during_fault"
    /// Error replies of the load, one finding per target and error text.
    case errorReplies = "error_replies"
    /// Replies that do not follow the wire: not a JSON object, or an object without a boolean `success`.
    case wireViolation = "wire_violation"
}

public enum FindingPolicy: String, Sendable, Equatable {
    case warn, fail
}

public struct Finding: Sendable, Equatable {
    public var kind: FindingKind
    /// The process or load target it is about.
    public var target: String
    public var message: String
    public var count: Int
    /// Seconds since the run's start (the journal's clock) of the first occurrence, when known.
    public var firstAt: Double?
    public init(kind: FindingKind, target: String, message: String, count: Int = 1, firstAt: Double? = nil) {
        self.kind = kind
        self.target = target
        self.message = message
        self.count = count
        self.firstAt = firstAt
    }

    /// `ignored_sigterm: h-1` (error replies add their text).
    public var name: String { "\(kind.rawValue): \(target)" }

    public var json: JSONValue {
        .object(["kind": .string(kind.rawValue), "target": .string(target), "message": .string(message), "count": .int(Int64(count)),
                 "first_at": firstAt.map { .double(($0 * 1000).rounded() / 1000) } ?? .null])
    }

    public var line: String {
        "\(kind.rawValue) \(target): \(message)" + (count > 1 ? " (\(count) times)" : "")
            + (firstAt.map { String(format: ", first at %.3f s", $0) } ?? "")
    }
}

/// When a fault was in force (journal seconds) and on which processes.
public struct FaultWindow: Sendable, Equatable {
    public var label: String
    public var targets: [String]
    public var from: Double
    public var to: Double
    public init(label: String, targets: [String], from: Double, to: Double) {
        self.label = label
        self.targets = targets
        self.from = from
        self.to = to
    }

    /// The windows of the faults that started.
    public static func of(_ records: [FaultRecord]) -> [FaultWindow] {
        records.compactMap { r in
            r.startedAt.map { FaultWindow(label: "\(r.fault.name)#\(r.fault.index)", targets: r.fault.targets, from: $0, to: r.stoppedAt ?? $0) }
        }
    }
}

public enum Findings {
    /// Findings from the governor's lifecycle events (`events.jsonl`) written at or after `since`.
    /// `faults` are the run's fault windows (journal seconds, with `runStart` their wall-clock origin).
    public static func fromGovernorEvents(_ events: [LifecycleEvent], since: Date, runStart: Date, faults: [FaultWindow],
                                          grace: Double = 1) -> [Finding] {
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var out: [Finding] = []
        var stopping: [String: LifecycleEvent] = [:]
        var escalated: Set<String> = []
        for e in events {
            guard let when = parser.date(from: e.time), when >= since else { continue }
            let at = when.timeIntervalSince(runStart)
            let key = "\(e.process)#\(e.pid ?? 0)"
            switch e.event {
            case .stopping:
                stopping[key] = e
            case .escalated:
                escalated.insert(key)
                guard let esc = StopEscalation(e) else { continue }
                out.append(Finding(kind: .ignoredSigterm, target: e.process,
                                   message: String(esc.line.dropFirst(e.process.count + 1)), firstAt: at))
            case .stopped:
                guard stopping[key] != nil, !escalated.contains(key), let d = e.detail, d.hasPrefix("exit code "),
                      let code = Int(d.dropFirst("exit code ".count)), code != 0 else { continue }
                out.append(Finding(kind: .nonzeroExitOnSigterm, target: e.process,
                                   message: "exited with code \(code) on SIGTERM" + (e.pid.map { " (pid \($0))" } ?? ""), firstAt: at))
            case .exited:
                // An unexpected exit inside the window of a fault that did not target this process.
                for f in faults {
                    guard at >= f.from, at <= f.to + grace, !f.targets.contains(e.process) else { continue }
                    out.append(Finding(kind: .crashDuringFault, target: e.process,
                                       message: "\(e.detail ?? "exited") during fault \(f.label) on "
                                        + (f.targets.isEmpty ? "no process" : f.targets.joined(separator: ", ")),
                                       firstAt: at))
                    break
                }
            default:
                continue
            }
        }
        return out
    }

    /// Reads `events.jsonl` (`LifecycleLog.read`).
    public static func readEvents(_ path: String) -> [LifecycleEvent] { LifecycleLog.read(path) }

    /// Findings from the load's outcomes: error replies grouped by target and text (with the first one), and
    /// replies that do not follow the wire. `start` is the run's start (the journal's clock).
    public static func fromLoad(_ outcomes: [RequestOutcome], start: ContinuousClock.Instant) -> [Finding] {
        struct Group { var count = 0; var first: RequestOutcome }
        var errors: [String: Group] = [:], order: [String] = []
        var wire: [String: Group] = [:], wireOrder: [String] = []
        for o in outcomes.sorted(by: { $0.finishedAt < $1.finishedAt }) {
            switch o.kind {
            case .errorReply:
                let key = "\(o.target)\u{0}\(o.error ?? "")"
                if errors[key] == nil { errors[key] = Group(first: o); order.append(key) }
                errors[key]!.count += 1
            case .invalidReply:
                if wire[o.target] == nil { wire[o.target] = Group(first: o); wireOrder.append(o.target) }
                wire[o.target]!.count += 1
            case .ok where o.wireProblem != nil:
                if wire[o.target] == nil { wire[o.target] = Group(first: o); wireOrder.append(o.target) }
                wire[o.target]!.count += 1
            default:
                continue
            }
        }
        var out: [Finding] = []
        for key in order {
            let g = errors[key]!
            out.append(Finding(kind: .errorReplies, target: g.first.target,
                               message: "error reply \"\(g.first.error ?? "")\" (first: client \(g.first.client) seq \(g.first.seq) \(g.first.method))",
                               count: g.count, firstAt: (g.first.finishedAt - start).secondsValue))
        }
        for key in wireOrder {
            let g = wire[key]!
            let what = g.first.wireProblem ?? g.first.error ?? "an invalid reply"
            out.append(Finding(kind: .wireViolation, target: key,
                               message: "replies that do not follow the wire: \(what) (first: client \(g.first.client) seq \(g.first.seq) \(g.first.method))",
                               count: g.count, firstAt: (g.first.finishedAt - start).secondsValue))
        }
        return out
    }

    /// The checks findings add: one per finding whose kind the experiment makes fail (warnings are not checks).
    public static func checks(_ findings: [Finding], policy: [FindingKind: FindingPolicy]) -> [CheckResult] {
        findings.filter { policy[$0.kind] == .fail }.map { CheckResult(name: "finding: \($0.name)", passed: false, message: $0.line) }
    }
}
