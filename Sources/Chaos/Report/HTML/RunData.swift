import Foundation
import Interposer
import ScheduleZeroWire

/// One experiment run as its output directory tells it: the journal (`journal.jsonl`) and, when the run had a
/// deployment, the governor's events of its window (`events.jsonl`). What the HTML report and the comparison draw.
public struct RunData: Sendable {
    /// How a request is drawn: `retried` is a success reply after more than one attempt; `error` covers error
    /// replies, invalid replies and other client failures; `mismatch` a reply that answered another request.
    public enum Outcome: String, Sendable, CaseIterable {
        case ok, retried, lost, error, mismatch
        public static func of(_ kind: String, attempts: Int) -> Outcome {
            switch kind {
            case "ok": return attempts > 1 ? .retried : .ok
            case "lost": return .lost
            case "mismatch": return .mismatch
            default: return .error
            }
        }
        public var label: String {
            switch self {
            case .ok: "ok"
            case .retried: "retried"
            case .lost: "lost"
            case .error: "error"
            case .mismatch: "mismatched / duplicate"
            }
        }
    }

    public struct Request: Sendable, Equatable {
        /// Seconds since the run started (when the request ended).
        public var t: Double
        public var target: String
        public var client: Int
        public var seq: Int
        public var method: String
        public var kind: String
        public var attempts: Int
        public var latencyMs: Double
        public var outcome: Outcome { .of(kind, attempts: attempts) }
        public init(t: Double, target: String, client: Int = 1, seq: Int = 0, method: String = "", kind: String, attempts: Int = 1, latencyMs: Double) {
            self.t = t
            self.target = target
            self.client = client
            self.seq = seq
            self.method = method
            self.kind = kind
            self.attempts = attempts
            self.latencyMs = latencyMs
        }
    }

    public struct Fault: Sendable, Equatable {
        public var index: Int
        public var name: String
        public var kind: String
        public var targets: [String]
        public var applied: String?
        public var start: Double?
        public var stop: Double?
        /// When the steady state (or the first success reply) came back.
        public var recoveredAt: Double?
        public var timeToRecoveryMs: Double?
        public var error: String?
        public var label: String { "\(name)#\(index)" }
    }

    public struct Check: Sendable, Equatable {
        public var name: String
        public var passed: Bool
        public var message: String
    }

    public struct Probe: Sendable, Equatable {
        public var t: Double
        public var phase: String
        public var holds: Bool
        public var details: [String]
    }

    /// A governor lifecycle event, its time as seconds since the run started.
    public struct GovernorEvent: Sendable, Equatable {
        public var t: Double
        public var process: String
        public var event: String
        public var pid: Int?
        public var detail: String?
    }

    public var directory: String
    public var title = ""
    public var file = ""
    public var seed = ""
    public var command = ""
    public var durationMs: Double = 0
    public var wallStart: Double?
    /// When the fault clock (and the load) started, seconds since the run started.
    public var faultsClockStart: Double = 0
    public var end: Double = 0
    public var passed: Bool?
    public var checks: [Check] = []
    public var requests: [Request] = []
    public var faults: [Fault] = []
    public var probes: [Probe] = []
    public var governor: [GovernorEvent] = []
    public var links: [LinkSummaryFigures] = []
    public var counters: [String: Int] = [:]

    public init(directory: String) { self.directory = directory }

    /// The figures of one `link_summary` event.
    public struct LinkSummaryFigures: Sendable, Equatable {
        public var link: String
        public var requests: Int
        public var delivered: Int
        public var lost: Int
        public var late: Int
        public var duplicateExecutions: Int
        public var p50: Double?, p95: Double?, p99: Double?, max: Double?
        public var faulted: [String: Int]
    }

    /// Reads `journal.jsonl` (and `events.jsonl` when there) from an experiment's output directory.
    public static func load(directory: String) throws -> RunData {
        let journal = (directory as NSString).appendingPathComponent("journal.jsonl")
        guard let text = try? String(contentsOfFile: journal, encoding: .utf8) else {
            throw ReportError.noJournal(directory: directory)
        }
        var run = parse(journal: text, directory: directory)
        let events = (directory as NSString).appendingPathComponent("events.jsonl")
        if let ev = try? String(contentsOfFile: events, encoding: .utf8) { run.addGovernorEvents(ev) }
        return run
    }

    /// The journal's lines, in order; lines that are not JSON objects are skipped.
    public static func parse(journal text: String, directory: String = "") -> RunData {
        var r = RunData(directory: directory)
        var faults: [Int: Fault] = [:]
        r.requests.reserveCapacity(text.utf8.count / 200)
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let v = try? JSON.parse(String(line)), let e = v.objectValue, let event = e["event"]?.stringValue else { continue }
            let t = e["t"]?.doubleValue ?? 0
            r.end = Swift.max(r.end, t)
            func fault() -> Fault {
                let i = Int(e["index"]?.intValue ?? -1)
                return faults[i] ?? Fault(index: i, name: e["fault"]?.stringValue ?? "?", kind: e["kind"]?.stringValue ?? "?",
                                          targets: e["targets"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            }
            switch event {
            case "experiment_start":
                r.title = e["title"]?.stringValue ?? ""
                r.file = e["file"]?.stringValue ?? ""
                r.seed = e["seed"]?.stringValue ?? ""
                r.durationMs = e["duration_ms"]?.doubleValue ?? 0
                r.wallStart = e["wall_start"]?.doubleValue
                r.command = e["command"]?.stringValue
                    ?? ExperimentRunner.reproduceCommand(file: r.file, seed: UInt64(r.seed) ?? 0, output: directory.isEmpty ? nil : directory)
            case "faults_clock_start":
                r.faultsClockStart = t
            case "request":
                r.requests.append(Request(t: t, target: e["target"]?.stringValue ?? "?", client: Int(e["client"]?.intValue ?? 0),
                                          seq: Int(e["seq"]?.intValue ?? 0), method: e["method"]?.stringValue ?? "",
                                          kind: e["outcome"]?.stringValue ?? "failed", attempts: Int(e["attempts"]?.intValue ?? 1),
                                          latencyMs: e["latency_ms"]?.doubleValue ?? 0))
            case "fault_start":
                var f = fault()
                f.start = t
                f.applied = e["applied"]?.stringValue
                faults[f.index] = f
            case "fault_stop":
                var f = fault()
                f.stop = t
                faults[f.index] = f
            case "fault_error":
                var f = fault()
                f.error = e["error"]?.stringValue
                if f.start == nil { f.start = t }
                faults[f.index] = f
            case "fault_recovered":
                var f = fault()
                f.timeToRecoveryMs = e["time_to_recovery_ms"]?.doubleValue
                if let ms = f.timeToRecoveryMs { f.recoveredAt = (f.stop ?? t) + ms / 1000 }
                faults[f.index] = f
            case "steady_state":
                r.probes.append(Probe(t: t, phase: e["phase"]?.stringValue ?? "", holds: e["holds"]?.boolValue ?? false,
                                      details: e["details"]?.arrayValue?.compactMap(\.stringValue) ?? []))
            case "check":
                r.checks.append(Check(name: e["name"]?.stringValue ?? "?", passed: e["passed"]?.boolValue ?? false,
                                      message: e["message"]?.stringValue ?? ""))
            case "link_summary":
                let lat = e["latency"]?.objectValue ?? [:]
                r.links.append(LinkSummaryFigures(
                    link: e["link"]?.stringValue ?? "?", requests: Int(e["requests"]?.intValue ?? 0), delivered: Int(e["delivered"]?.intValue ?? 0),
                    lost: Int(e["lost"]?.intValue ?? 0), late: Int(e["late"]?.intValue ?? 0),
                    duplicateExecutions: Int(e["duplicate_executions"]?.intValue ?? 0),
                    p50: lat["p50_ms"]?.doubleValue, p95: lat["p95_ms"]?.doubleValue, p99: lat["p99_ms"]?.doubleValue, max: lat["max_ms"]?.doubleValue,
                    faulted: (e["faulted"]?.objectValue ?? [:]).compactMapValues { $0.intValue.map(Int.init) }))
            case "experiment_end":
                r.passed = e["passed"]?.boolValue
                r.counters = (e["load"]?.objectValue ?? [:]).compactMapValues { $0.intValue.map(Int.init) }
            default:
                break
            }
        }
        r.faults = faults.values.filter { $0.index >= 0 }.sorted { $0.index < $1.index }
        return r
    }

    /// Adds the governor's events (`events.jsonl` lines), placed on the run's time axis by `wall_start`.
    public mutating func addGovernorEvents(_ text: String) {
        guard let w = wallStart else { return }
        for line in text.split(separator: "\n") {
            guard let v = try? JSON.parse(String(line)), let iso = v["time"]?.stringValue,
                  let d = GovernorEventsWindow.date(iso) else { continue }
            governor.append(GovernorEvent(t: d.timeIntervalSince1970 - w, process: v["process"]?.stringValue ?? "?",
                                          event: v["event"]?.stringValue ?? "?", pid: v["pid"]?.intValue.map(Int.init),
                                          detail: v["detail"]?.stringValue))
        }
        end = Swift.max(end, governor.map(\.t).max() ?? 0)
    }

    /// The load's targets, by name.
    public var targets: [String] { Set(requests.map(\.target)).sorted() }

    /// Per-target latency percentiles (every request, whatever its outcome) and counts by outcome.
    public func latency(of target: String?) -> LinkSummary.Percentiles {
        LinkSummary.Percentiles(requests.filter { target == nil || $0.target == target }.map(\.latencyMs))
    }

    public func count(_ o: Outcome, target: String? = nil) -> Int {
        requests.reduce(0) { $0 + (($1.outcome == o && (target == nil || $1.target == target)) ? 1 : 0) }
    }

    /// Replies that answered another request plus duplicate executions the links saw.
    public var duplicates: Int { count(.mismatch) + links.reduce(0) { $0 + $1.duplicateExecutions } }
    public var lost: Int { count(.lost) }
    public var allPassed: Bool { passed ?? checks.allSatisfy(\.passed) }
}
