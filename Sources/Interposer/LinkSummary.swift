import Foundation
import ScheduleZeroWire

/// What one link journal (`links/<name>.jsonl`) says, summed up: the figures `szchaos links` prints and the
/// experiment checks read.
public struct LinkSummary: Sendable, Equatable {
    public var link: String
    public var requests = 0
    public var forwarded = 0
    public var delivered = 0
    /// Forwarded and never answered within the link's timeout.
    public var lost = 0
    /// Answered after the requester had gone.
    public var late = 0
    public var duplicateExecutions = 0
    /// Messages a fault kept from their destination, by fault (`drop_next`, `swallow_next`, `drop`, ...).
    public var faulted: [String: Int] = [:]
    /// Messages that went on with a fault applied (`delay`, `garbage`, `corrupt`, ...).
    public var touched: [String: Int] = [:]
    public var rewrites = 0
    /// Request in to reply out, of the replies that reached their requester, in ms.
    public var latency = Percentiles()
    /// Request forwarded to reply back from the handler, in ms.
    public var handlerLatency = Percentiles()
    /// Duplicate executions and lost requests by method.
    public var duplicatesByMethod: [String: Int] = [:]
    public var lostByMethod: [String: Int] = [:]

    public init(link: String) { self.link = link }

    /// Nearest-rank percentiles of a sample.
    public struct Percentiles: Sendable, Equatable {
        public var count = 0
        public var p50: Double?
        public var p95: Double?
        public var p99: Double?
        public var max: Double?

        public init() {}

        public init(_ samples: [Double]) {
            let s = samples.sorted()
            count = s.count
            guard !s.isEmpty else { return }
            func rank(_ q: Double) -> Double { s[Swift.max(0, Swift.min(s.count - 1, Int((q * Double(s.count)).rounded(.up)) - 1))] }
            p50 = rank(0.5)
            p95 = rank(0.95)
            p99 = rank(0.99)
            max = s.last
        }

        public var json: JSONValue {
            func v(_ x: Double?) -> JSONValue { x.map { .double(($0 * 1000).rounded() / 1000) } ?? .null }
            return .object(["count": .int(Int64(count)), "p50_ms": v(p50), "p95_ms": v(p95), "p99_ms": v(p99), "max_ms": v(max)])
        }
    }

    public var json: JSONValue {
        func counts(_ d: [String: Int]) -> JSONValue { .object(d.mapValues { .int(Int64($0)) }) }
        return .object([
            "link": .string(link), "requests": .int(Int64(requests)), "forwarded": .int(Int64(forwarded)),
            "delivered": .int(Int64(delivered)), "lost": .int(Int64(lost)), "late": .int(Int64(late)),
            "duplicate_executions": .int(Int64(duplicateExecutions)), "rewrites": .int(Int64(rewrites)),
            "faulted": counts(faulted), "touched": counts(touched), "latency": latency.json,
            "handler_latency": handlerLatency.json, "duplicates_by_method": counts(duplicatesByMethod),
            "lost_by_method": counts(lostByMethod),
        ])
    }

    /// Sums up a journal. `since`: only events at or after this time (an experiment's window); `lastStart`:
    /// only what the newest interposer wrote (from its last `link_started` on). A missing file is empty.
    public static func read(_ path: String, link: String? = nil, since: Date? = nil, lastStart: Bool = false) -> LinkSummary {
        let name = link ?? ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return LinkSummary(link: name) }
        var lines = text.split(separator: "\n")
        if lastStart, let i = lines.lastIndex(where: { $0.contains(#""event":"link_started""#) }) {
            lines = Array(lines[i...])
        }
        return summarize(lines.compactMap { (try? JSON.parse(String($0)))?.objectValue }, link: name, since: since)
    }

    public static func summarize(_ events: [[String: JSONValue]], link: String, since: Date? = nil) -> LinkSummary {
        var s = LinkSummary(link: link)
        var latencies: [Double] = [], handler: [Double] = []
        let from = since?.timeIntervalSince1970
        for e in events {
            if let from, (e["t"]?.doubleValue ?? 0) < from { continue }
            let fault = e["fault"]?.stringValue ?? "none"
            let method = e["method"]?.stringValue ?? "?"
            switch e["event"]?.stringValue {
            case "request":
                s.requests += 1
                if e["forwarded"]?.boolValue == true {
                    s.forwarded += 1
                    if fault != "none" { s.touched[fault, default: 0] += 1 }
                } else {
                    s.faulted[fault, default: 0] += 1
                }
            case "reply":
                if let h = e["handler_ms"]?.doubleValue { handler.append(h) }
                if e["delivered"]?.boolValue == true {
                    s.delivered += 1
                    if let l = e["latency_ms"]?.doubleValue { latencies.append(l) }
                    if fault != "none" { s.touched[fault, default: 0] += 1 }
                } else if e["late"]?.boolValue == true {
                    s.late += 1
                } else {
                    s.faulted[fault, default: 0] += 1
                }
            case "lost":
                s.lost += 1
                s.lostByMethod[method, default: 0] += 1
            case "duplicate_execution":
                s.duplicateExecutions += 1
                s.duplicatesByMethod[method, default: 0] += 1
            case "rewrite":
                s.rewrites += 1
            default:
                break
            }
        }
        s.latency = Percentiles(latencies)
        s.handlerLatency = Percentiles(handler)
        return s
    }

    /// The link journals of a deployment folder, by link name.
    public static func journals(inDeployment directory: String) -> [String: String] {
        let folder = (directory as NSString).appendingPathComponent("links")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var out: [String: String] = [:]
        for f in files where f.hasSuffix(".jsonl") {
            out[String(f.dropLast(6))] = (folder as NSString).appendingPathComponent(f)
        }
        return out
    }

    /// An aligned text table of summaries.
    public static func table(_ summaries: [LinkSummary]) -> String {
        let header = ["LINK", "REQUESTS", "DELIVERED", "LOST", "LATE", "DUP-EXEC", "FAULTED", "P50 ms", "P95 ms", "P99 ms", "MAX ms"]
        func ms(_ x: Double?) -> String { x.map { String(format: "%.2f", $0) } ?? "-" }
        let rows = summaries.map { s in
            [s.link, "\(s.requests)", "\(s.delivered)", "\(s.lost)", "\(s.late)", "\(s.duplicateExecutions)",
             "\(s.faulted.values.reduce(0, +))", ms(s.latency.p50), ms(s.latency.p95), ms(s.latency.p99), ms(s.latency.max)]
        }
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = Swift.max(widths[i], c.count) } }
        func line(_ r: [String]) -> String {
            r.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}
