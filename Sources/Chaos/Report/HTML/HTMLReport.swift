import Foundation
import Interposer

/// The self-contained HTML report of one run (`report.html`): inline CSS and SVG, no script, nothing fetched.
/// Verdict first (checks, seed, the command that reproduces the run), then one timeline on one time axis
/// (fault windows, governor events, steady-state probes and recoveries, per-target latency on a log axis,
/// request outcomes), then tables (faults, per-target latency percentiles, per-link figures).
///
/// Big runs: per target and pixel column only the fastest and the slowest first-attempt success is drawn
/// (every other outcome, and every retried request, is drawn one by one), so 100,000 requests stay a few
/// hundred kilobytes and every failure and every extreme stays visible.
public enum HTMLReport {
    public static let fileName = "report.html"

    /// The timeline's geometry: tests compute the expected positions with it.
    public struct Layout: Sendable {
        public var width = 1200.0
        public var left = 120.0
        public var right = 24.0
        public init() {}
        public var plotWidth: Double { width - left - right }
    }

    /// Seconds since the run started -> x in the SVG.
    public struct TimeScale: Sendable {
        public var t0: Double
        public var t1: Double
        public var layout: Layout
        public func x(_ t: Double) -> Double {
            layout.left + (Swift.min(Swift.max(t, t0), t1) - t0) / Swift.max(t1 - t0, 1e-9) * layout.plotWidth
        }
        /// The pixel column a time falls in (decimation buckets).
        public func column(_ t: Double) -> Int { Int(x(t) - layout.left) }
    }

    /// The time axis a run is drawn on: from its start to its last event, at least its planned duration.
    public static func timeScale(_ run: RunData, layout: Layout = Layout()) -> TimeScale {
        var t1 = Swift.max(run.end, run.faultsClockStart + run.durationMs / 1000)
        for g in run.governor { t1 = Swift.max(t1, g.t) }
        let t0 = Swift.min(0, run.governor.map(\.t).min() ?? 0)
        return TimeScale(t0: t0, t1: Swift.max(t1, t0 + 1), layout: layout)
    }

    /// Reads the output directory and writes `report.html` into it; returns its path.
    @discardableResult
    public static func write(directory: String) throws -> String {
        let run = try RunData.load(directory: directory)
        let path = (directory as NSString).appendingPathComponent(fileName)
        do { try html(run).write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw ReportError.cannotWrite(path: path, reason: "\(error)")
        }
        return path
    }

    // MARK: - The page

    public static func html(_ run: RunData, layout: Layout = Layout()) -> String {
        var h = HTMLWriter()
        h.page(title: "szchaos: \(run.title)") {
            verdict(run, into: &$0)
            $0.raw("<h2>Timeline</h2>\n")
            $0.raw(timeline(run, layout: layout))
            $0.raw(legend())
            faultTable(run, into: &$0)
            latencyTable(run, into: &$0)
            linkTable(run, into: &$0)
            governorTable(run, into: &$0)
        }
        return h.text
    }

    static func verdict(_ run: RunData, into h: inout HTMLWriter) {
        let failed = run.checks.filter { !$0.passed }.count
        let ok = run.allPassed
        h.raw("<h1>\(esc(run.title)) <span class=\"muted\">\(esc(run.file))</span></h1>\n")
        h.raw("<div class=\"verdict \(ok ? "pass" : "fail")\" id=\"verdict\" data-passed=\"\(ok)\">"
              + (ok ? "PASSED: every check held (\(run.checks.count))" : "FAILED: \(failed) of \(run.checks.count) check(s) failed")
              + "</div>\n")
        h.raw("<p>seed <b id=\"seed\">\(esc(run.seed))</b>; reproduce with <code id=\"command\">\(esc(run.command))</code></p>\n")
        let c = run.counters
        if !c.isEmpty {
            h.raw("<p class=\"muted\">requests: \(c["sent"] ?? 0) sent, \(c["ok"] ?? 0) ok, \(c["retried"] ?? 0) retried, \(c["lost"] ?? 0) lost, "
                  + "\(c["error_replies"] ?? 0) error replies, \(c["invalid_replies"] ?? 0) invalid, \(c["mismatched"] ?? 0) mismatched, "
                  + "\(c["failed"] ?? 0) failed</p>\n")
        }
        h.raw("<table id=\"checks\"><tr><th></th><th>check</th><th>figure and allowance</th></tr>\n")
        for k in run.checks {
            h.raw("<tr class=\"check \(k.passed ? "pass" : "fail")\" data-check=\"\(esc(k.name))\" data-passed=\"\(k.passed)\"><td class=\"badge\">"
                  + (k.passed ? "PASS" : "FAIL") + "</td><td>\(esc(k.name))</td><td>\(esc(k.message))</td></tr>\n")
        }
        h.raw("</table>\n")
    }

    static func legend() -> String {
        var s = "<div class=\"legend\">"
        for o in RunData.Outcome.allCases { s += "<span><i class=\"sw o-\(o.rawValue)\"></i>\(esc(o.label))</span>" }
        s += "<span><i class=\"sw fault\"></i>fault window</span><span><i class=\"sw rec\"></i>time to recovery</span>"
        s += "<span><i class=\"sw ghold\"></i>steady state holds</span><span><i class=\"sw gnot\"></i>does not hold</span></div>\n"
        s += "<p class=\"muted\">Latency: first-attempt successes decimated to the fastest and slowest per pixel column and target; "
        s += "every other request drawn. Hover a mark for its details.</p>\n"
        return s
    }

    // MARK: - The timeline

    public static func timeline(_ run: RunData, layout: Layout = Layout()) -> String {
        let ts = timeScale(run, layout: layout)
        var s = SVGWriter()
        let x0 = layout.left, x1 = layout.left + layout.plotWidth
        var y = 8.0
        var body = ""

        // Faults: one lane each, labelled; the window is shaded over the whole timeline afterwards.
        let laneH = 18.0
        body += label("faults", y: y + 12, bold: true)
        y += laneH
        var windows: [(RunData.Fault, Double, Double)] = []
        for f in run.faults {
            let start = f.start ?? 0
            let stop = f.stop ?? start
            let xa = ts.x(start), xb = Swift.max(ts.x(stop), xa + 3)
            windows.append((f, xa, xb))
            body += "<rect class=\"fault-bar\" x=\"\(n(xa))\" y=\"\(n(y + 2))\" width=\"\(n(xb - xa))\" height=\"\(n(laneH - 4))\"/>"
            body += "<text class=\"fault-label\" data-fault=\"\(esc(f.label))\" x=\"\(n(Swift.min(xb + 4, x1 - 150)))\" y=\"\(n(y + 13))\">"
                + esc(f.label + " (" + f.kind + (f.targets.isEmpty ? "" : " " + f.targets.joined(separator: ",")) + ")"
                      + (f.error.map { " FAILED: \($0)" } ?? "")) + "</text>\n"
            y += laneH
        }

        // Governor events: a lane per process.
        let processes = orderedUnique(run.governor.map(\.process))
        if !processes.isEmpty {
            y += 6
            body += label("governor", y: y + 12, bold: true)
            y += laneH
            for p in processes {
                body += label(p, y: y + 12)
                body += "<line class=\"lane\" x1=\"\(n(x0))\" x2=\"\(n(x1))\" y1=\"\(n(y + 9))\" y2=\"\(n(y + 9))\"/>"
                // Exits last, so a restart at the same moment does not hide them.
                let exits: Set<String> = ["exited", "fatal", "start_failed"]
                let mine = run.governor.filter { $0.process == p }
                for g in mine.filter({ !exits.contains($0.event) }) + mine.filter({ exits.contains($0.event) }) {
                    let gx = ts.x(g.t)
                    body += "<g class=\"gov g-\(esc(g.event))\" data-event=\"\(esc(g.event))\" data-process=\"\(esc(p))\" data-t=\"\(n3(g.t))\">"
                        + "<title>\(n3(g.t)) s \(esc(p)) \(esc(g.event))" + (g.pid.map { " pid \($0)" } ?? "") + (g.detail.map { ": " + esc($0) } ?? "")
                        + "</title>" + govMark(g.event, x: gx, y: y + 9) + "</g>"
                }
                body += "\n"
                y += laneH
            }
        }

        // Steady state: the probes (before, after) and each fault's recovery.
        y += 6
        body += label("steady state", y: y + 12, bold: true)
        body += "<line class=\"lane\" x1=\"\(n(x0))\" x2=\"\(n(x1))\" y1=\"\(n(y + 9))\" y2=\"\(n(y + 9))\"/>"
        for p in run.probes {
            body += "<circle class=\"probe \(p.holds ? "hold" : "nothold")\" data-phase=\"\(esc(p.phase))\" data-holds=\"\(p.holds)\" "
                + "data-t=\"\(n3(p.t))\" cx=\"\(n(ts.x(p.t)))\" cy=\"\(n(y + 9))\" r=\"5\"><title>steady state \(esc(p.phase)): "
                + (p.holds ? "holds" : "does not hold") + (p.details.isEmpty ? "" : ": " + esc(p.details.joined(separator: "; "))) + "</title></circle>"
        }
        y += laneH
        for f in run.faults where f.stop != nil || f.start != nil {
            let from = f.stop ?? f.start ?? 0
            let xa = ts.x(from)
            if let at = f.recoveredAt, let ms = f.timeToRecoveryMs {
                let xb = Swift.max(ts.x(at), xa + 1)
                let tx = n(Swift.min(xb + 4, x1 - 120)), yl = n(y + 6), yt = n(y + 10)
                body += "<g class=\"recovery\" data-fault=\"\(esc(f.label))\" data-ttr-ms=\"\(n3(ms))\" data-t=\"\(n3(at))\">"
                body += "<line x1=\"\(n(xa))\" x2=\"\(n(xb))\" y1=\"\(yl)\" y2=\"\(yl)\"/>"
                body += "<line x1=\"\(n(xb))\" x2=\"\(n(xb))\" y1=\"\(n(y))\" y2=\"\(n(y + 12))\"/>"
                body += "<text x=\"\(tx)\" y=\"\(yt)\">\(esc(f.label)) recovered in \(HTMLReport.ms(ms))</text></g>\n"
            } else if f.error == nil {
                body += "<g class=\"recovery none\" data-fault=\"\(esc(f.label))\"><text x=\"\(n(Swift.min(xa + 4, x1 - 120)))\" y=\"\(n(y + 10))\">"
                    + "\(esc(f.label)) did not recover</text></g>\n"
            }
            y += 14
        }

        // Latency per target, log axis shared by all targets.
        let lat = run.requests.map(\.latencyMs).filter { $0 > 0 }
        let lo = pow(10, floor(log10(Swift.max(lat.min() ?? 0.1, 0.01))))
        let hi = Swift.max(pow(10, ceil(log10(Swift.max(lat.max() ?? 1, 0.01)))), lo * 10)
        let panelH = 120.0
        let targets = run.targets
        var byTarget: [String: [RunData.Request]] = [:]
        for q in run.requests { byTarget[q.target, default: []].append(q) }
        for target in targets {
            y += 22
            let top = y, bottom = y + panelH
            func ly(_ v: Double) -> Double {
                let c = Swift.min(Swift.max(v, lo), hi)
                return bottom - (log10(c) - log10(lo)) / (log10(hi) - log10(lo)) * panelH
            }
            body += "<g class=\"latency-panel\" data-target=\"\(esc(target))\">"
            body += "<rect class=\"panel\" x=\"\(n(x0))\" y=\"\(n(top))\" width=\"\(n(layout.plotWidth))\" height=\"\(n(panelH))\"/>"
            body += label("\(target): latency (log)", y: top - 6, bold: true)
            var d = lo
            while d <= hi * 1.0001 {
                let yy = ly(d)
                body += "<line class=\"grid\" x1=\"\(n(x0))\" x2=\"\(n(x1))\" y1=\"\(n(yy))\" y2=\"\(n(yy))\"/>"
                body += "<text class=\"tick\" x=\"\(n(x0 - 6))\" y=\"\(n(yy + 4))\" text-anchor=\"end\">\(ms(d))</text>"
                d *= 10
            }
            // Decimation: the fastest and slowest first-attempt success per pixel column.
            var columns: [Int: (RunData.Request, RunData.Request)] = [:]
            var others: [RunData.Request] = []
            for q in byTarget[target] ?? [] {
                if q.outcome == .ok {
                    let c = ts.column(q.t)
                    if let (a, b) = columns[c] {
                        columns[c] = (q.latencyMs < a.latencyMs ? q : a, q.latencyMs > b.latencyMs ? q : b)
                    } else {
                        columns[c] = (q, q)
                    }
                } else {
                    others.append(q)
                }
            }
            for c in columns.keys.sorted() {
                let (a, b) = columns[c]!
                for q in a == b ? [a] : [a, b] {
                    body += "<rect class=\"lp o-ok\" data-o=\"ok\" data-t=\"\(n3(q.t))\" x=\"\(n(ts.x(q.t) - 1))\" y=\"\(n(ly(q.latencyMs) - 1))\" width=\"2\" height=\"2\"/>"
                }
            }
            body += "\n"
            for q in others {
                let o = q.outcome
                body += "<circle class=\"lp o-\(o.rawValue)\" data-o=\"\(o.rawValue)\" data-t=\"\(n3(q.t))\" cx=\"\(n(ts.x(q.t)))\" cy=\"\(n(ly(q.latencyMs)))\" r=\"\(o == .retried ? 2.5 : 3.5)\">"
                    + "<title>\(n3(q.t)) s client \(q.client) seq \(q.seq) \(esc(q.method)): \(esc(q.kind)), \(q.attempts) attempt(s), \(ms(q.latencyMs))</title></circle>\n"
            }
            body += "</g>\n"
            y = bottom
        }

        // Outcomes: a lane per outcome; first-attempt successes as one mark per pixel column, the rest one by one.
        y += 14
        body += label("outcomes", y: y + 10, bold: true)
        y += 14
        let stripH = 14.0
        for o in RunData.Outcome.allCases {
            body += label(o.label, y: y + 10)
            body += "<line class=\"lane\" x1=\"\(n(x0))\" x2=\"\(n(x1))\" y1=\"\(n(y + stripH / 2))\" y2=\"\(n(y + stripH / 2))\"/>"
            if o == .ok {
                var counts: [Int: Int] = [:]
                for q in run.requests where q.outcome == .ok { counts[ts.column(q.t), default: 0] += 1 }
                for c in counts.keys.sorted() {
                    body += "<rect class=\"st o-ok\" data-s=\"ok\" data-n=\"\(counts[c]!)\" x=\"\(n(x0 + Double(c)))\" y=\"\(n(y + 2))\" width=\"1\" height=\"\(n(stripH - 4))\"/>"
                }
            } else {
                for q in run.requests where q.outcome == o {
                    body += "<rect class=\"st o-\(o.rawValue)\" data-s=\"\(o.rawValue)\" data-t=\"\(n3(q.t))\" x=\"\(n(ts.x(q.t) - 1))\" y=\"\(n(y + 1))\" width=\"2\" height=\"\(n(stripH - 2))\"/>"
                }
            }
            body += "\n"
            y += stripH + 2
        }

        // Time axis.
        y += 6
        body += "<line class=\"axis\" x1=\"\(n(x0))\" x2=\"\(n(x1))\" y1=\"\(n(y))\" y2=\"\(n(y))\"/>"
        let step = niceStep((ts.t1 - ts.t0) / 12)
        var t = (ts.t0 / step).rounded(.up) * step
        while t <= ts.t1 + 1e-9 {
            body += "<line class=\"axis\" x1=\"\(n(ts.x(t)))\" x2=\"\(n(ts.x(t)))\" y1=\"\(n(y))\" y2=\"\(n(y + 5))\"/>"
                + "<text class=\"tick\" x=\"\(n(ts.x(t)))\" y=\"\(n(y + 17))\" text-anchor=\"middle\">\(secs(t))</text>"
            t += step
        }
        body += "<text class=\"tick\" x=\"\(n(x1))\" y=\"\(n(y + 32))\" text-anchor=\"end\">seconds since the run started</text>\n"
        let height = y + 40

        // Fault windows shaded over everything, drawn first so the marks stay on top.
        var shade = ""
        for (f, xa, xb) in windows {
            shade += "<rect class=\"fault-window\" data-fault=\"\(esc(f.label))\" data-start=\"\(n3(f.start ?? 0))\" data-stop=\"\(n3(f.stop ?? f.start ?? 0))\" "
                + "x=\"\(n(xa))\" y=\"0\" width=\"\(n(xb - xa))\" height=\"\(n(height))\"><title>\(esc(f.label)): \(esc(f.applied ?? f.kind))</title></rect>\n"
        }
        s.open(width: layout.width, height: height, id: "timeline")
        s.raw(shade)
        s.raw(body)
        s.close()
        return s.text
    }

    static func govMark(_ event: String, x: Double, y: Double) -> String {
        switch event {
        case "exited", "fatal", "start_failed":
            return "<path d=\"M\(n(x - 5)) \(n(y - 5))L\(n(x + 5)) \(n(y + 5))M\(n(x + 5)) \(n(y - 5))L\(n(x - 5)) \(n(y + 5))\"/>"
        case "spawned", "ready":
            return "<circle cx=\"\(n(x))\" cy=\"\(n(y))\" r=\"4\"/>"
        default:
            return "<path d=\"M\(n(x)) \(n(y - 6))L\(n(x + 5)) \(n(y + 4))L\(n(x - 5)) \(n(y + 4))Z\"/>"
        }
    }

    // MARK: - Tables

    static func faultTable(_ run: RunData, into h: inout HTMLWriter) {
        guard !run.faults.isEmpty else { return }
        h.raw("<h2>Faults</h2>\n<table id=\"faults\"><tr><th>fault</th><th>kind</th><th>targets</th><th>start s</th><th>stop s</th><th>time to recovery</th><th>applied</th></tr>\n")
        for f in run.faults {
            h.raw("<tr data-fault=\"\(esc(f.label))\"><td>\(esc(f.label))</td><td>\(esc(f.kind))</td><td>\(esc(f.targets.joined(separator: ", ")))</td>"
                  + "<td class=\"num\">\(f.start.map(n3) ?? "-")</td><td class=\"num\">\(f.stop.map(n3) ?? "-")</td>"
                  + "<td class=\"num\">\(f.timeToRecoveryMs.map(ms) ?? (f.error == nil ? "not recovered" : "-"))</td>"
                  + "<td>\(esc(f.error.map { "FAILED: \($0)" } ?? f.applied ?? ""))</td></tr>\n")
        }
        h.raw("</table>\n")
    }

    static func latencyTable(_ run: RunData, into h: inout HTMLWriter) {
        guard !run.requests.isEmpty else { return }
        h.raw("<h2>Latency per target</h2>\n<table id=\"latency\"><tr><th>target</th><th>requests</th>")
        for o in RunData.Outcome.allCases { h.raw("<th>\(esc(o.label))</th>") }
        h.raw("<th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>\n")
        let rows: [String?] = run.targets.map { $0 } + [nil]
        for target in rows {
            let p = run.latency(of: target)
            h.raw("<tr data-target=\"\(esc(target ?? "all"))\"><td>\(esc(target ?? "all"))</td><td class=\"num\">\(p.count)</td>")
            for o in RunData.Outcome.allCases { h.raw("<td class=\"num\">\(run.count(o, target: target))</td>") }
            for v in [p.p50, p.p95, p.p99, p.max] { h.raw("<td class=\"num\">\(v.map(ms) ?? "-")</td>") }
            h.raw("</tr>\n")
        }
        h.raw("</table>\n")
    }

    static func linkTable(_ run: RunData, into h: inout HTMLWriter) {
        guard !run.links.isEmpty else { return }
        h.raw("<h2>Interposed links</h2>\n<table id=\"links\"><tr><th>link</th><th>requests</th><th>delivered</th><th>lost</th><th>late</th>"
              + "<th>duplicate executions</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>faults</th></tr>\n")
        for l in run.links {
            h.raw("<tr data-link=\"\(esc(l.link))\"><td>\(esc(l.link))</td><td class=\"num\">\(l.requests)</td><td class=\"num\">\(l.delivered)</td>"
                  + "<td class=\"num\">\(l.lost)</td><td class=\"num\">\(l.late)</td><td class=\"num\">\(l.duplicateExecutions)</td>")
            for v in [l.p50, l.p95, l.p99, l.max] { h.raw("<td class=\"num\">\(v.map(ms) ?? "-")</td>") }
            h.raw("<td>\(esc(l.faulted.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))</td></tr>\n")
        }
        h.raw("</table>\n")
    }

    static func governorTable(_ run: RunData, into h: inout HTMLWriter) {
        let interesting = run.governor.filter { !["spawned", "ready", "link_started", "governor_started"].contains($0.event) }
        guard !interesting.isEmpty else { return }
        h.raw("<h2>Governor events</h2>\n<table id=\"governor\"><tr><th>t s</th><th>process</th><th>event</th><th>pid</th><th>detail</th></tr>\n")
        for g in interesting.prefix(500) {
            h.raw("<tr><td class=\"num\">\(n3(g.t))</td><td>\(esc(g.process))</td><td>\(esc(g.event))</td><td class=\"num\">\(g.pid.map(String.init) ?? "")</td>"
                  + "<td>\(esc(g.detail ?? ""))</td></tr>\n")
        }
        if interesting.count > 500 { h.raw("<tr><td colspan=\"5\">\(interesting.count - 500) more in events.jsonl</td></tr>\n") }
        h.raw("</table>\n")
    }

    // MARK: - Small helpers

    static func label(_ text: String, y: Double, bold: Bool = false) -> String {
        "<text class=\"\(bold ? "head" : "lab")\" x=\"8\" y=\"\(n(y))\">\(esc(text))</text>"
    }

    static func orderedUnique(_ xs: [String]) -> [String] {
        var seen = Set<String>()
        return xs.filter { seen.insert($0).inserted }
    }

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0 else { return 1 }
        let p = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where m * p >= raw { return m * p }
        return 10 * p
    }

    static func esc(_ s: String) -> String { ExperimentReport.escape(s) }
    /// SVG coordinates: one decimal.
    static func n(_ v: Double) -> String { String(format: "%.1f", v) }
    static func n3(_ v: Double) -> String { String(format: "%.3f", v) }
    static func secs(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v) }
    static func ms(_ v: Double) -> String {
        if v >= 1000 { return String(format: "%.2f s", v / 1000) }
        if v >= 10 { return String(format: "%.0f ms", v) }
        if v >= 1 { return String(format: "%.1f ms", v) }
        return String(format: "%.2g ms", v)
    }

    static let css = """
    body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;background:#fff;max-width:1240px}
    h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:24px 0 8px}.muted{color:#6b7280;font-weight:normal}
    code{background:#f3f4f6;padding:2px 6px;border-radius:4px;font:13px ui-monospace,monospace}
    .verdict{font-size:18px;font-weight:600;padding:10px 14px;border-radius:6px;margin:8px 0}
    .verdict.pass{background:#dcfce7;color:#14532d}.verdict.fail{background:#fee2e2;color:#7f1d1d}
    table{border-collapse:collapse;margin:6px 0}td,th{border-bottom:1px solid #e5e7eb;padding:3px 10px;text-align:left;vertical-align:top}
    th{background:#f9fafb;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
    tr.pass .badge{color:#15803d;font-weight:700}tr.fail .badge{color:#b91c1c;font-weight:700}tr.fail{background:#fef2f2}
    svg{display:block;background:#fff;border:1px solid #e5e7eb;border-radius:6px}
    svg text{font:11px system-ui,sans-serif;fill:#374151}svg text.head{font-weight:700}svg text.tick{fill:#6b7280}
    .fault-window{fill:#f59e0b;fill-opacity:.13}.fault-bar{fill:#f59e0b}.fault-label{font-weight:600}
    .lane{stroke:#e5e7eb}.grid{stroke:#f1f5f9}.axis{stroke:#6b7280}.panel{fill:none;stroke:#e5e7eb}
    .gov path,.gov circle{stroke-width:2}.g-exited path,.g-fatal path,.g-start_failed path{stroke:#dc2626}
    .g-spawned circle,.g-ready circle{fill:#16a34a}.g-backoff path{fill:#f97316}.g-escalated path{fill:#7c3aed}
    .gov path{fill:#9ca3af;stroke:#6b7280}.g-exited path{fill:none}
    .probe.hold{fill:#16a34a}.probe.nothold{fill:#dc2626}
    .recovery line{stroke:#2563eb;stroke-width:2}.recovery text{fill:#1e40af}.recovery.none text{fill:#b91c1c}
    .o-ok{fill:#9ca3af}.o-retried{fill:#eab308}.o-lost{fill:#dc2626}.o-error{fill:#9333ea}.o-mismatch{fill:#0891b2}
    .legend span{margin-right:16px;white-space:nowrap}.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
    i.o-ok{background:#9ca3af}i.o-retried{background:#eab308}i.o-lost{background:#dc2626}i.o-error{background:#9333ea}
    i.o-mismatch{background:#0891b2}i.fault{background:#fcd9a0}i.rec{background:#2563eb}i.ghold{background:#16a34a}i.gnot{background:#dc2626}
    .trends{display:flex;flex-wrap:wrap;gap:12px}.trend-line{fill:none;stroke:#2563eb;stroke-width:2}
    .trend-point.pass{fill:#16a34a}.trend-point.fail{fill:#dc2626}td.pass{color:#15803d;font-weight:600}td.fail{color:#b91c1c;font-weight:600}
    """
}

/// Why a report could not be made.
public enum ReportError: Error, CustomStringConvertible, Equatable {
    case noJournal(directory: String)
    case cannotWrite(path: String, reason: String)
    public var description: String {
        switch self {
        case .noJournal(let d): "\(d): no journal.jsonl (is this an experiment's output directory?)"
        case .cannotWrite(let p, let r): "cannot write \(p): \(r)"
        }
    }
}

/// Builds an HTML page around a body.
struct HTMLWriter {
    var text = ""
    mutating func raw(_ s: String) { text += s }
    mutating func page(title: String, _ body: (inout HTMLWriter) -> Void) {
        text.reserveCapacity(1 << 20)
        raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>\(ExperimentReport.escape(title))</title>\n")
        raw("<meta name=\"generator\" content=\"szchaos\">\n<style>\n\(HTMLReport.css)\n</style></head><body>\n")
        body(&self)
        raw("</body></html>\n")
    }
}

struct SVGWriter {
    var text = ""
    mutating func raw(_ s: String) { text += s }
    mutating func open(width: Double, height: Double, id: String) {
        raw("<svg id=\"\(id)\" width=\"\(HTMLReport.n(width))\" height=\"\(HTMLReport.n(height))\" "
            + "viewBox=\"0 0 \(HTMLReport.n(width)) \(HTMLReport.n(height))\">\n")
    }
    mutating func close() { raw("</svg>\n") }
}
