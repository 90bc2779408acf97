import Chaos
import Foundation
import ScheduleZeroTesting
import Testing

/// A journal as the runner writes it: a start, `requests` requests spread over `seconds` on three targets,
/// every `failEvery`-th request failing in turn (lost, error reply, mismatch, retried success), two faults,
/// two probes, checks and an end. Times are exact to the millisecond.
func syntheticJournal(requests: Int, seconds: Double = 20, failEvery: Int = 100, spike: (index: Int, ms: Double)? = nil,
                      wallStart: Double = 1_700_000_000) -> String {
    var out = ""
    out.reserveCapacity(requests * 170)
    out += #"{"event":"experiment_start","t":0,"title":"synthetic","file":"Fixtures/experiments/synthetic.yaml","seed":"42","duration_ms":\#(Int(seconds * 1000)),"plan":[],"wall_start":\#(wallStart),"command":"szchaos run Fixtures/experiments/synthetic.yaml --seed 42"}"# + "\n"
    out += #"{"event":"steady_state","t":0.1,"phase":"before","holds":true,"details":[]}"# + "\n"
    out += #"{"event":"faults_clock_start","t":0.2}"# + "\n"
    let kinds = ["lost", "error_reply", "mismatch", "ok"]
    for i in 0..<requests {
        let t = 0.2 + Double(i) * (seconds - 0.4) / Double(max(requests, 1))
        let target = "h-\(i % 3 + 1)"
        var kind = "ok", attempts = 1, latency = 1.0 + Double(i % 17) * 0.25
        if i % failEvery == failEvery - 1 {
            kind = kinds[(i / failEvery) % 4]
            attempts = kind == "ok" ? 2 : 5
            latency = kind == "lost" ? 2500 : 600
        }
        if let spike, spike.index == i { latency = spike.ms }
        out += #"{"event":"request","t":\#(String(format: "%.3f", t)),"client":\#(i % 3 + 1),"seq":\#(i / 3 + 1),"method":"heartbeat","target":"\#(target)","outcome":"\#(kind)","attempts":\#(attempts),"latency_ms":\#(latency)}"# + "\n"
    }
    out += #"{"event":"fault_start","t":3.2,"index":0,"fault":"kill-a-handler","kind":"kill-random","targets":["h-2"],"actuator":"process","applied":"SIGKILL h-2 pid 123"}"# + "\n"
    out += #"{"event":"fault_stop","t":3.2,"index":0,"fault":"kill-a-handler","kind":"kill-random","targets":["h-2"],"actuator":"process"}"# + "\n"
    out += #"{"event":"fault_recovered","t":3.9,"index":0,"fault":"kill-a-handler","kind":"kill-random","targets":["h-2"],"actuator":"process","time_to_recovery_ms":700}"# + "\n"
    out += #"{"event":"fault_start","t":8.2,"index":1,"fault":"drop-replies","kind":"drop-replies","targets":["h-2"],"actuator":"control","applied":"drop 3 replies"}"# + "\n"
    out += #"{"event":"fault_stop","t":10.2,"index":1,"fault":"drop-replies","kind":"drop-replies","targets":["h-2"],"actuator":"control"}"# + "\n"
    out += #"{"event":"fault_recovered","t":10.5,"index":1,"fault":"drop-replies","kind":"drop-replies","targets":["h-2"],"actuator":"control","time_to_recovery_ms":250.5}"# + "\n"
    out += #"{"event":"steady_state","t":20.1,"phase":"after","holds":false,"details":["h-3: no pong within 50 ms"]}"# + "\n"
    out += #"{"event":"link_summary","t":20.2,"link":"h-1","requests":90,"delivered":89,"lost":1,"late":0,"duplicate_executions":2,"latency":{"count":89,"p50_ms":1.5,"p95_ms":3,"p99_ms":9,"max_ms":12},"faulted":{"drop":1}}"# + "\n"
    out += #"{"event":"check","t":20.3,"name":"steady_state_restored","passed":false,"message":"not restored within 8000 ms: h-3: no pong within 50 ms"}"# + "\n"
    out += #"{"event":"check","t":20.3,"name":"max_lost_requests","passed":true,"message":"0 lost of 10 (allowed 0)"}"# + "\n"
    out += #"{"event":"experiment_end","t":20.4,"passed":false,"load":{"sent":\#(requests),"ok":0,"retried":0,"lost":0,"error_replies":0,"invalid_replies":0,"mismatched":0,"failed":0}}"# + "\n"
    return out
}

/// The governor's events of a run, as `events.jsonl` lines, `seconds` after `wallStart`.
func syntheticGovernorEvents(wallStart: Double, _ events: [(Double, String, String)]) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return events.map { t, p, e in
        #"{"event":"\#(e)","pid":77,"process":"\#(p)","time":"\#(f.string(from: Date(timeIntervalSince1970: wallStart + t)))"}"#
    }.joined(separator: "\n") + "\n"
}

func occurrences(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

/// The attribute `name` of every element whose opening tag contains `marker`.
func attributes(_ name: String, ofTagsWith marker: String, in text: String) -> [String] {
    var out: [String] = []
    for piece in text.components(separatedBy: "<").dropFirst() {
        guard let end = piece.firstIndex(of: ">") else { continue }
        let tag = piece[..<end]
        guard tag.contains(marker), let r = tag.range(of: " \(name)=\"") else { continue }
        let rest = tag[r.upperBound...]
        out.append(String(rest[..<(rest.firstIndex(of: "\"") ?? rest.endIndex)]))
    }
    return out
}

@Suite(.tags(.unit), .leakChecked)
struct unit_HTMLReport {
    @Test func journalIsReadIntoRequestsFaultsProbesChecksAndLinks() {
        let run = RunData.parse(journal: syntheticJournal(requests: 400))
        #expect(run.title == "synthetic" && run.seed == "42")
        #expect(run.command == "szchaos run Fixtures/experiments/synthetic.yaml --seed 42")
        #expect(run.requests.count == 400)
        #expect(run.targets == ["h-1", "h-2", "h-3"])
        #expect(run.count(.lost) == 1 && run.count(.error) == 1 && run.count(.mismatch) == 1 && run.count(.retried) == 1)
        #expect(run.faults.map(\.label) == ["kill-a-handler#0", "drop-replies#1"])
        #expect(run.faults[1].start == 8.2 && run.faults[1].stop == 10.2 && run.faults[1].timeToRecoveryMs == 250.5)
        #expect(run.faults[1].recoveredAt.map { abs($0 - 10.4505) < 1e-9 } == true)
        #expect(run.probes.map(\.holds) == [true, false])
        #expect(run.checks.map(\.passed) == [false, true])
        #expect(run.links.first?.duplicateExecutions == 2)
        #expect(run.duplicates == 3)
        #expect(run.allPassed == false)
    }

    @Test func everyRequestOutcomeFaultWindowProbeAndRecoveryIsDrawnWhereTheJournalPutsIt() throws {
        var run = RunData.parse(journal: syntheticJournal(requests: 800))
        let html = HTMLReport.html(run)
        // Every request that is not a first-attempt success is drawn once in its latency panel and once in the strip.
        for o in [RunData.Outcome.lost, .error, .mismatch, .retried] {
            #expect(occurrences("data-o=\"\(o.rawValue)\"", in: html) == run.count(o), "latency marks of \(o)")
            #expect(occurrences("data-s=\"\(o.rawValue)\"", in: html) == run.count(o), "strip marks of \(o)")
        }
        // The ok strip: one mark per pixel column, its counts add up to every first-attempt success.
        let okCounts = attributes("data-n", ofTagsWith: "data-s=\"ok\"", in: html).compactMap(Int.init)
        #expect(okCounts.reduce(0, +) == run.count(.ok))
        // x positions from the journal's times.
        let ts = HTMLReport.timeScale(run)
        let lostX = attributes("cx", ofTagsWith: "data-o=\"lost\"", in: html).compactMap(Double.init)
        let lostT = run.requests.filter { $0.outcome == .lost }.map(\.t)
        #expect(lostX.count == lostT.count)
        for (x, t) in zip(lostX, lostT) { #expect(abs(x - ts.x(t)) <= 0.051, "lost request at \(t) s drawn at x \(x)") }
        // Fault windows: one per fault, labelled, from its start to its stop (a zero-length fault 3 px wide).
        #expect(attributes("data-fault", ofTagsWith: "class=\"fault-window\"", in: html) == ["kill-a-handler#0", "drop-replies#1"])
        let xs = attributes("x", ofTagsWith: "class=\"fault-window\"", in: html).compactMap(Double.init)
        let ws = attributes("width", ofTagsWith: "class=\"fault-window\"", in: html).compactMap(Double.init)
        #expect(xs.count == 2 && ws.count == 2)
        #expect(abs(xs[1] - ts.x(8.2)) <= 0.051 && abs(xs[1] + ws[1] - ts.x(10.2)) <= 0.11)
        #expect(abs(ws[0] - 3) <= 0.051)
        #expect(html.contains("drop-replies#1 (drop-replies h-2)"))
        // Recoveries and probes.
        #expect(attributes("data-ttr-ms", ofTagsWith: "class=\"recovery\"", in: html) == ["700.000", "250.500"])
        #expect(html.contains("drop-replies#1 recovered in 250 ms"))
        #expect(attributes("data-holds", ofTagsWith: "class=\"probe", in: html) == ["true", "false"])
        // The verdict first, with the seed and the command.
        let verdict = try #require(html.range(of: "id=\"verdict\""))
        let timeline = try #require(html.range(of: "id=\"timeline\""))
        #expect(verdict.lowerBound < timeline.lowerBound)
        #expect(html.contains("data-passed=\"false\">FAILED: 1 of 2 check(s) failed"))
        #expect(attributes("data-passed", ofTagsWith: "class=\"check", in: html) == ["false", "true"])
        #expect(html.contains("<code id=\"command\">szchaos run Fixtures/experiments/synthetic.yaml --seed 42</code>"))
        // Tables: per target and per link.
        #expect(attributes("data-target", ofTagsWith: "tr data-target", in: html) == ["h-1", "h-2", "h-3", "all"])
        #expect(attributes("data-link", ofTagsWith: "tr data-link", in: html) == ["h-1"])
        // Self-contained: no script, nothing fetched.
        for banned in ["<script", "src=", "href=", "http:", "https:", "@import", "url("] {
            #expect(!html.lowercased().contains(banned), "\(banned) in the report")
        }
        // Governor events, placed by the journal's wall_start.
        run.addGovernorEvents(syntheticGovernorEvents(wallStart: 1_700_000_000, [(3.25, "h-2", "exited"), (3.5, "h-2", "backoff"), (3.75, "h-2", "spawned")]))
        let withGov = HTMLReport.html(run)
        #expect(attributes("data-event", ofTagsWith: "class=\"gov", in: withGov) == ["backoff", "spawned", "exited"])
        #expect(attributes("data-t", ofTagsWith: "class=\"gov", in: withGov) == ["3.500", "3.750", "3.250"])
    }

    /// Slow: about 4 s of CPU in a debug build; `slow` (and so `.ci/run`) runs it, `ci` and `quick` do not.
    @Test(.tags(.slow)) func slow_aHundredThousandRequestsStaySmallAndKeepEveryFailureAndExtreme() throws {
        let n = 100_000
        let spikeIndex = 50_001  // a first-attempt success, the slowest of the run
        let run = RunData.parse(journal: syntheticJournal(requests: n, failEvery: 250, spike: (spikeIndex, 9_000)))
        #expect(run.requests.count == n)
        let clock = ContinuousClock()
        let t0 = clock.now
        let html = HTMLReport.html(run)
        let took = clock.now - t0
        let bytes = html.utf8.count
        print("report of \(n) requests: \(bytes) bytes in \(took)")
        #expect(bytes < 3_000_000, "\(bytes) bytes")
        for o in [RunData.Outcome.lost, .error, .mismatch, .retried] {
            #expect(run.count(o) == n / 250 / 4)
            #expect(occurrences("data-o=\"\(o.rawValue)\"", in: html) == run.count(o))
            #expect(occurrences("data-s=\"\(o.rawValue)\"", in: html) == run.count(o))
        }
        // At most the fastest and slowest success per pixel column and target.
        let okMarks = occurrences("data-o=\"ok\"", in: html)
        #expect(okMarks <= 2 * Int(HTMLReport.Layout().plotWidth + 1) * 3)
        #expect(okMarks > 1000)
        // The spike is drawn, at the top of the log axis.
        let spikeT = String(format: "%.3f", run.requests[spikeIndex].t)
        #expect(attributes("data-t", ofTagsWith: "data-o=\"ok\"", in: html).contains(spikeT))
        #expect(html.contains(">10.00 s</text>"))
    }

    @Test func aComparisonShowsChecksRecoveriesCountsAndATrendPerRun() {
        let a = RunData.parse(journal: syntheticJournal(requests: 400), directory: "/tmp/run-a")
        let b = RunData.parse(journal: syntheticJournal(requests: 800, failEvery: 50), directory: "/tmp/run-b")
        let html = ComparisonReport.html([a, b])
        #expect(attributes("data-run", ofTagsWith: "th data-run", in: html) == ["0", "1"])
        #expect(html.contains("#1 run-a") && html.contains("#2 run-b"))
        #expect(html.contains("<tr data-row=\"check:steady_state_restored\"><th>steady_state_restored</th><td class=\"fail\">"))
        #expect(html.contains("<tr data-row=\"ttr:drop-replies#1\"><th>time to recovery: drop-replies#1</th><td class=\"num\">250 ms</td><td class=\"num\">250 ms</td></tr>"))
        #expect(html.contains("<tr data-row=\"lost\"><th>lost requests</th><td class=\"num\">1</td><td class=\"num\">4</td></tr>"))
        #expect(occurrences("class=\"trend-point", in: html) == 2 * ComparisonReport.metrics.count)
        #expect(attributes("data-v", ofTagsWith: "class=\"trend-point", in: html).prefix(2) == ["1.000", "4.000"])
        #expect(occurrences("<polyline class=\"trend-line\"", in: html) == ComparisonReport.metrics.count)
        for banned in ["<script", "src=", "href=", "http:", "https:"] { #expect(!html.lowercased().contains(banned)) }
    }

    @Test func governorEventsOfTheRunsWindowOnlyAndCommandsQuoted() throws {
        let text = syntheticGovernorEvents(wallStart: 1000, [(-5, "h-1", "spawned"), (0.5, "h-2", "exited"), (9, "h-2", "spawned"), (30, "h-1", "stopped")])
        let dir = TemporaryDirectory(prefix: "sz-report")
        defer { dir.remove() }
        let path = try dir.write(text, to: "events.jsonl").path
        let lines = GovernorEventsWindow.lines(ofFile: path, from: Date(timeIntervalSince1970: 1000), to: Date(timeIntervalSince1970: 1020))
        #expect(lines.count == 2 && lines[0].contains("exited") && lines[1].contains("spawned"))
        #expect(ExperimentRunner.reproduceCommand(file: "my exp.yaml", seed: 7, output: "out", root: "/tmp/r") ==
                "szchaos run 'my exp.yaml' --seed 7 --output out --root /tmp/r")
    }

    @Test func aDirectoryWithoutAJournalIsAClearError() throws {
        let dir = TemporaryDirectory(prefix: "sz-report")
        defer { dir.remove() }
        #expect(throws: ReportError.noJournal(directory: dir.url.path)) { try HTMLReport.write(directory: dir.url.path) }
    }
}
