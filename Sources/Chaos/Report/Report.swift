import Foundation
import Interposer
import ScheduleZeroWire

/// The verdict of one check.
public struct CheckResult: Sendable, Equatable {
    /// e.g. `max_lost_requests`, `time_to_recovery: drop-replies#0`.
    public var name: String
    public var passed: Bool
    /// What was measured against what was allowed.
    public var message: String
    public var time: Duration
    public init(name: String, passed: Bool, message: String, time: Duration = .zero) {
        self.name = name
        self.passed = passed
        self.message = message
        self.time = time
    }
}

/// One fault as it happened.
public struct FaultRecord: Sendable, Equatable {
    public var fault: ScheduledFault
    public var startedAt: Double?
    public var stoppedAt: Double?
    public var applied: String?
    public var error: String?
    /// From the end of the fault to the steady state (or the first success reply) again; `nil`: not recovered.
    public var timeToRecovery: Duration?
}

/// Everything a run found: the checks, the faults, the load. `exitCode` is 0 when every check held, 1 otherwise.
public struct ExperimentReport: Sendable {
    public var title: String
    public var file: String
    public var seed: UInt64
    public var plan: [ScheduledFault]
    public var faults: [FaultRecord]
    public var load: LoadCounters
    public var checks: [CheckResult]
    public var elapsed: Duration
    public var journalPath: String?
    public var junitPath: String?
    public var summaryPath: String?
    /// What each interposed link of the deployment saw during the run.
    public var links: [LinkSummary]
    /// What the harness saw by itself (docs/CHAOS.md, "Findings"): warnings unless `checks.findings` fails them.
    public var findings: [Finding] = []

    public init(title: String, file: String, seed: UInt64, plan: [ScheduledFault], faults: [FaultRecord], load: LoadCounters,
                checks: [CheckResult], elapsed: Duration, journalPath: String? = nil, junitPath: String? = nil,
                summaryPath: String? = nil, links: [LinkSummary] = []) {
        self.title = title
        self.file = file
        self.seed = seed
        self.plan = plan
        self.faults = faults
        self.load = load
        self.checks = checks
        self.elapsed = elapsed
        self.journalPath = journalPath
        self.junitPath = junitPath
        self.summaryPath = summaryPath
        self.links = links
    }

    public var passed: Bool { checks.allSatisfy(\.passed) }
    public var exitCode: Int32 { passed ? 0 : 1 }

    /// The human summary.
    public var summary: String {
        var out: [String] = []
        out.append("experiment: \(title) (\(file))")
        out.append("seed: \(seed)")
        out.append(String(format: "ran %.1f s; faults applied %d of %d", elapsed.secondsValue,
                          faults.filter { $0.startedAt != nil && $0.error == nil }.count, plan.count))
        for f in faults {
            let ttr = f.timeToRecovery.map { "recovered in \($0.millisText)" } ?? (f.error == nil ? "not recovered" : "")
            out.append("  \(f.fault)" + (f.error.map { " FAILED: \($0)" } ?? " \(ttr)"))
        }
        let l = load
        out.append("requests: \(l.sent) sent, \(l.ok) ok, \(l.retried) retried, \(l.lost) lost, \(l.errorReplies) error replies, "
                   + "\(l.invalidReplies) invalid replies, \(l.mismatched) mismatched, \(l.failed) failed")
        if !links.isEmpty {
            out.append("links:")
            for l in links {
                func ms(_ x: Double?) -> String { x.map { String(format: "%.2f ms", $0) } ?? "-" }
                let faults = (l.faulted.merging(l.touched) { $0 + $1 }).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                out.append("  \(l.link): \(l.requests) requests, \(l.delivered) delivered, \(l.lost) lost, \(l.late) late, "
                           + "\(l.duplicateExecutions) duplicate executions; latency p50 \(ms(l.latency.p50)), p95 \(ms(l.latency.p95)), "
                           + "p99 \(ms(l.latency.p99)), max \(ms(l.latency.max))" + (faults.isEmpty ? "" : "; faults: " + faults.joined(separator: ", ")))
            }
        }
        if !findings.isEmpty {
            out.append("findings:")
            for f in findings { out.append("  \(f.line)") }
        }
        out.append("checks:")
        for c in checks { out.append("  [\(c.passed ? "PASS" : "FAIL")] \(c.name): \(c.message)") }
        out.append(passed ? "result: every check held" : "result: \(checks.filter { !$0.passed }.count) check(s) failed")
        if let journalPath { out.append("journal: \(journalPath)") }
        if let junitPath { out.append("junit: \(junitPath)") }
        return out.joined(separator: "\n") + "\n"
    }

    /// JUnit XML: one testsuite for the experiment, one testcase per check, a `<failure>` for each that failed.
    public var junitXML: String {
        let failures = checks.filter { !$0.passed }.count
        let suite = "chaos." + Self.slug(title)
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuites name=\"szchaos\" tests=\"\(checks.count)\" failures=\"\(failures)\" errors=\"0\" time=\"\(Self.secs(elapsed))\">\n"
        x += "  <testsuite name=\"\(Self.escape(suite))\" tests=\"\(checks.count)\" failures=\"\(failures)\" errors=\"0\" skipped=\"0\" time=\"\(Self.secs(elapsed))\">\n"
        x += "    <properties>\n"
        x += "      <property name=\"seed\" value=\"\(seed)\"/>\n"
        x += "      <property name=\"file\" value=\"\(Self.escape(file))\"/>\n"
        for l in links {
            var props: [(String, String)] = [("requests", "\(l.requests)"), ("lost", "\(l.lost)"), ("late", "\(l.late)"),
                                             ("duplicate_executions", "\(l.duplicateExecutions)")]
            for (k, v) in [("latency_p50_ms", l.latency.p50), ("latency_p95_ms", l.latency.p95), ("latency_p99_ms", l.latency.p99),
                           ("latency_max_ms", l.latency.max)] {
                if let v { props.append((k, String(format: "%.3f", v))) }
            }
            for (k, v) in props { x += "      <property name=\"link.\(Self.escape(l.link)).\(k)\" value=\"\(v)\"/>\n" }
        }
        for (i, f) in findings.enumerated() {
            x += "      <property name=\"finding.\(i + 1).\(f.kind.rawValue)\" value=\"\(Self.escape(f.target + ": " + f.line))\"/>\n"
        }
        x += "    </properties>\n"
        for c in checks {
            x += "    <testcase classname=\"\(Self.escape(suite))\" name=\"\(Self.escape(c.name))\" time=\"\(Self.secs(c.time))\""
            if c.passed {
                x += "/>\n"
            } else {
                x += ">\n      <failure message=\"\(Self.escape(c.message))\" type=\"CheckFailed\">\(Self.escape(c.message + "\nseed: \(seed)"))</failure>\n    </testcase>\n"
            }
        }
        x += "    <system-out>\(Self.escape(summary))</system-out>\n"
        x += "  </testsuite>\n</testsuites>\n"
        return x
    }

    static func secs(_ d: Duration) -> String { String(format: "%.3f", d.secondsValue) }

    static func slug(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    /// XML text and attribute escaping; characters XML 1.0 forbids are dropped.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\n", "\t": out.unicodeScalars.append(u)
            case "\r": out += "&#13;"
            default:
                if u.value < 0x20 || (0xFFFE...0xFFFF).contains(u.value) { continue }
                out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
