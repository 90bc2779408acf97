import Foundation

/// `comparison.html`: several runs side by side (the same experiment over time, or two builds of a service):
/// the checks, each fault's time to recovery, lost and duplicate counts, latency, and a trend plot of those
/// figures across the runs in the order given. Self-contained like `report.html`.
public enum ComparisonReport {
    public static let fileName = "comparison.html"

    /// One figure per run, plotted as a trend.
    public struct Metric: Sendable {
        public var id: String
        public var title: String
        public var value: @Sendable (RunData) -> Double?
        public var format: @Sendable (Double) -> String
    }

    public static let metrics: [Metric] = [
        Metric(id: "lost", title: "lost requests", value: { Double($0.lost) }, format: { String(Int($0)) }),
        Metric(id: "duplicates", title: "mismatched replies + duplicate executions", value: { Double($0.duplicates) }, format: { String(Int($0)) }),
        Metric(id: "errors", title: "error replies and failures", value: { Double($0.count(.error)) }, format: { String(Int($0)) }),
        Metric(id: "max_ttr", title: "longest time to recovery", value: { $0.faults.compactMap(\.timeToRecoveryMs).max() }, format: { HTMLReport.ms($0) }),
        Metric(id: "p99", title: "p99 latency (all targets)", value: { $0.latency(of: nil).p99 }, format: { HTMLReport.ms($0) }),
        Metric(id: "checks_failed", title: "checks failed", value: { Double($0.checks.filter { !$0.passed }.count) }, format: { String(Int($0)) }),
    ]

    /// Reads each directory and writes the comparison to `output` (default `comparison.html` in the current directory).
    @discardableResult
    public static func write(directories: [String], output: String? = nil) throws -> String {
        let runs = try directories.map { try RunData.load(directory: $0) }
        let path = output ?? fileName
        do { try html(runs).write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw ReportError.cannotWrite(path: path, reason: "\(error)")
        }
        return path
    }

    static func name(_ r: RunData, _ i: Int) -> String { "#\(i + 1) " + (r.directory as NSString).lastPathComponent }

    public static func html(_ runs: [RunData]) -> String {
        let esc = HTMLReport.esc
        var h = HTMLWriter()
        h.page(title: "szchaos: comparison of \(runs.count) runs") { h in
            h.raw("<h1>Comparison of \(runs.count) run(s)</h1>\n")
            h.raw("<table id=\"comparison\"><tr><th></th>")
            for (i, r) in runs.enumerated() { h.raw("<th data-run=\"\(i)\">\(esc(name(r, i)))</th>") }
            h.raw("</tr>\n")
            func row(_ id: String, _ title: String, _ cell: (RunData) -> (String, String?)) {
                h.raw("<tr data-row=\"\(esc(id))\"><th>\(esc(title))</th>")
                for r in runs {
                    let (text, cls) = cell(r)
                    h.raw("<td\(cls.map { " class=\"\($0)\"" } ?? "")>\(text)</td>")
                }
                h.raw("</tr>\n")
            }
            row("title", "experiment") { (esc($0.title + " (" + $0.file + ")"), nil) }
            row("seed", "seed") { (esc($0.seed), "num") }
            row("verdict", "verdict") { ($0.allPassed ? "PASSED" : "FAILED", $0.allPassed ? "pass" : "fail") }
            row("command", "reproduce") { ("<code>\(esc($0.command))</code>", nil) }
            for check in HTMLReport.orderedUnique(runs.flatMap { $0.checks.map(\.name) }) {
                row("check:" + check, check) { r in
                    guard let c = r.checks.first(where: { $0.name == check }) else { return ("-", nil) }
                    return ("<span title=\"\(esc(c.message))\">\(c.passed ? "PASS" : "FAIL")</span>", c.passed ? "pass" : "fail")
                }
            }
            for fault in HTMLReport.orderedUnique(runs.flatMap { $0.faults.map(\.label) }) {
                row("ttr:" + fault, "time to recovery: " + fault) { r in
                    guard let f = r.faults.first(where: { $0.label == fault }) else { return ("-", nil) }
                    return (f.timeToRecoveryMs.map(HTMLReport.ms) ?? (f.error == nil ? "not recovered" : "failed"), "num")
                }
            }
            row("requests", "requests") { (String($0.requests.count), "num") }
            for m in metrics {
                row(m.id, m.title) { r in (m.value(r).map(m.format) ?? "-", "num") }
            }
            h.raw("</table>\n<h2>Trends</h2>\n<div class=\"trends\">\n")
            for m in metrics { h.raw(trend(m, runs)) }
            h.raw("</div>\n")
        }
        return h.text
    }

    /// A small line plot of one metric across the runs (x: the run's position in the list).
    static func trend(_ m: Metric, _ runs: [RunData]) -> String {
        let w = 380.0, hgt = 170.0, l = 50.0, r = 14.0, t = 24.0, b = 30.0
        let values = runs.map(m.value)
        let maxV = Swift.max(values.compactMap { $0 }.max() ?? 0, 1e-9)
        let top = maxV <= 1 && values.allSatisfy({ ($0 ?? 0) == ($0 ?? 0).rounded() }) ? 1 : maxV * 1.1
        func x(_ i: Int) -> Double { runs.count <= 1 ? l + (w - l - r) / 2 : l + Double(i) / Double(runs.count - 1) * (w - l - r) }
        func y(_ v: Double) -> Double { t + (1 - v / top) * (hgt - t - b) }
        var s = SVGWriter()
        s.open(width: w, height: hgt, id: "trend-" + m.id)
        s.raw("<text class=\"head\" x=\"\(HTMLReport.n(l))\" y=\"15\">\(HTMLReport.esc(m.title))</text>")
        s.raw("<line class=\"axis\" x1=\"\(l)\" x2=\"\(w - r)\" y1=\"\(hgt - b)\" y2=\"\(hgt - b)\"/><line class=\"axis\" x1=\"\(l)\" x2=\"\(l)\" y1=\"\(t)\" y2=\"\(hgt - b)\"/>")
        // The middle tick only where it reads differently from the ends (not "0" between 0 and 1).
        let ticks = Set([m.format(0), m.format(top)]).contains(m.format(top / 2)) ? [0, top] : [0, top / 2, top]
        for v in ticks {
            s.raw("<text class=\"tick\" x=\"\(l - 4)\" y=\"\(HTMLReport.n(y(v) + 4))\" text-anchor=\"end\">\(HTMLReport.esc(m.format(v)))</text>")
        }
        let pts = values.enumerated().compactMap { i, v in v.map { (i, $0) } }
        if pts.count > 1 {
            s.raw("<polyline class=\"trend-line\" points=\"" + pts.map { "\(HTMLReport.n(x($0.0))),\(HTMLReport.n(y($0.1)))" }.joined(separator: " ") + "\"/>")
        }
        for (i, v) in pts {
            s.raw("<circle class=\"trend-point \(runs[i].allPassed ? "pass" : "fail")\" data-run=\"\(i)\" data-v=\"\(HTMLReport.n3(v))\" cx=\"\(HTMLReport.n(x(i)))\" "
                  + "cy=\"\(HTMLReport.n(y(v)))\" r=\"4\"><title>\(HTMLReport.esc(name(runs[i], i))): \(HTMLReport.esc(m.format(v)))</title></circle>")
        }
        for i in runs.indices {
            s.raw("<text class=\"tick\" x=\"\(HTMLReport.n(x(i)))\" y=\"\(hgt - b + 16)\" text-anchor=\"middle\">#\(i + 1)</text>")
        }
        s.close()
        return s.text
    }
}
