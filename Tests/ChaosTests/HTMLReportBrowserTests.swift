import Chaos
import Foundation
import ScheduleZeroTesting
import Testing

/// Debian's chromium, when installed (`scripts/install-deps.sh slow` or `all` installs it).
let chromiumPath: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

@Suite(.tags(.integration), .leakChecked)
struct integration_HTMLReportBrowser {
    /// Runs headless chromium on `url` with `arguments`, its profile in `dir`; returns stdout and stderr.
    func chromium(_ arguments: [String], url: String, dir: TemporaryDirectory) async throws -> (String, String) {
        let p = try TestProcess(chromiumPath!, ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                                                "--user-data-dir=\(dir.file("profile"))", "--enable-logging=stderr", "--v=0"] + arguments + [url])
        defer { p.stop() }
        let status = try await p.waitExit(timeout: .seconds(90))
        try await waitUntil("chromium's output closed", timeout: .seconds(10)) { p.outputClosed }
        #expect(status == .exited(0), "chromium \(arguments): \(status); stderr: \(p.stderrText.suffix(2000))")
        return (p.lines.joined(separator: "\n"), p.stderrText)
    }

    @Test(.tags(.slow), .enabled(if: chromiumPath != nil, "chromium is not installed: `apt-get install chromium` (scripts/install-deps.sh slow|all does)"))
    func slow_reportLoadsInHeadlessChromiumWithoutConsoleErrorsAndDrawsAScreenshot() async throws {
        let dir = TemporaryDirectory(prefix: "sz-browser")
        defer { dir.remove() }
        let out = dir.file("run")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try syntheticJournal(requests: 3_000, failEvery: 40).write(toFile: out + "/journal.jsonl", atomically: true, encoding: .utf8)
        try syntheticGovernorEvents(wallStart: 1_700_000_000, [(3.25, "h-2", "exited"), (3.5, "h-2", "backoff"), (3.75, "h-2", "spawned")])
            .write(toFile: out + "/events.jsonl", atomically: true, encoding: .utf8)
        let report = try HTMLReport.write(directory: out)
        let url = URL(fileURLWithPath: report).absoluteString

        // The DOM as the browser built it: the verdict, the timeline and its marks are there.
        let (dom, domErr) = try await chromium(["--dump-dom"], url: url, dir: dir)
        #expect(dom.contains("id=\"verdict\"") && dom.contains("<svg id=\"timeline\""), "DOM: \(dom.prefix(500))")
        #expect(dom.contains("data-o=\"lost\""))
        let consoleLines = domErr.split(separator: "\n").filter { $0.contains("CONSOLE") || $0.contains("Uncaught") }
        #expect(consoleLines.isEmpty, "console: \(consoleLines)")

        // The screenshot: a PNG of the window's size with more than one colour in it.
        let shot = dir.file("shot.png")
        let clock = ContinuousClock()
        let t0 = clock.now
        let (_, shotErr) = try await chromium(["--screenshot=\(shot)", "--window-size=1400,2000", "--hide-scrollbars"], url: url, dir: dir)
        print("chromium screenshot of the report: \(clock.now - t0)")
        #expect(shotErr.split(separator: "\n").filter { $0.contains("CONSOLE") || $0.contains("Uncaught") }.isEmpty)
        let png = try Data(contentsOf: URL(fileURLWithPath: shot))
        #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), "not a PNG")
        try #require(png.count > 33)
        func be32(_ at: Int) -> Int { png[at..<at + 4].reduce(0) { $0 << 8 | Int($1) } }
        #expect(String(decoding: png[12..<16], as: UTF8.self) == "IHDR")
        #expect(be32(16) == 1400 && be32(20) == 2000, "screenshot is \(be32(16))x\(be32(20))")
        // Not blank: the image's scanlines (zlib-inflated IDAT) differ from each other; a blank page has one kind.
        let script = """
        import sys, zlib, struct
        d = open(sys.argv[1], 'rb').read(); i = 8; idat = b''; w = h = bpp = 0
        while i < len(d):
            n, t = struct.unpack('>I4s', d[i:i+8]); c = d[i+8:i+8+n]; i += 12 + n
            if t == b'IHDR': w, h = struct.unpack('>II', c[:8]); bpp = {2: 3, 6: 4, 0: 1, 4: 2}[c[9]] * c[8] // 8
            if t == b'IDAT': idat += c
        raw = zlib.decompress(idat); stride = 1 + w * bpp
        print(len({raw[r*stride:(r+1)*stride] for r in range(h)}), len(set(raw)))
        """
        let py = try dir.write(script, to: "png.py")
        let p = try TestProcess("/usr/bin/python3", [py.path, shot])
        defer { p.stop() }
        #expect(try await p.waitExit(timeout: .seconds(60)) == .exited(0), "png.py: \(p.stderrText)")
        try await waitUntil("png.py's output", timeout: .seconds(10)) { p.outputClosed }
        let figures = (p.lines.first ?? "").split(separator: " ").compactMap { Int($0) }
        try #require(figures.count == 2, "png.py printed \(p.lines)")
        #expect(figures[0] > 100, "only \(figures[0]) different scanlines: a blank screenshot?")
        #expect(figures[1] > 16, "only \(figures[1]) different byte values")
    }
}

@Suite(.tags(.integration), .leakChecked)
struct integration_SZChaosReportCommand {
    @Test func reportComparesRunsAndNamesADirectoryWithoutAJournal() async throws {
        let dir = TemporaryDirectory(prefix: "sz-report-cli")
        defer { dir.remove() }
        for (name, fails) in [("a", 100), ("b", 20)] {
            try FileManager.default.createDirectory(atPath: dir.file(name), withIntermediateDirectories: true)
            try syntheticJournal(requests: 300, failEvery: fails).write(toFile: dir.file(name) + "/journal.jsonl", atomically: true, encoding: .utf8)
        }
        let out = dir.file("cmp.html")
        let p = try TestProcess(builtExecutable("szchaos"), ["report", dir.file("a"), dir.file("b"), "--output", out])
        defer { p.stop() }
        #expect(try await p.waitExit(timeout: .seconds(30)) == .exited(0), "\(p.stderrText)")
        try await waitUntil("szchaos report's output", timeout: .seconds(5)) { p.outputClosed }
        #expect(p.lines == ["comparison: \(out)"])
        let html = try String(contentsOfFile: out, encoding: .utf8)
        #expect(html.contains("#1 a") && html.contains("#2 b"))
        #expect(occurrences("class=\"trend-point", in: html) == 2 * ComparisonReport.metrics.count)

        // One directory: its report.html again.
        let one = try TestProcess(builtExecutable("szchaos"), ["report", dir.file("a")])
        defer { one.stop() }
        #expect(try await one.waitExit(timeout: .seconds(30)) == .exited(0), "\(one.stderrText)")
        #expect(FileManager.default.fileExists(atPath: dir.file("a") + "/report.html"))

        let bad = try TestProcess(builtExecutable("szchaos"), ["report", dir.file("a"), dir.file("nothing-here")])
        defer { bad.stop() }
        #expect(try await bad.waitExit(timeout: .seconds(30)) == .exited(1))
        try await waitUntil("szchaos report's error", timeout: .seconds(5)) { bad.outputClosed }
        #expect(bad.stderrText.contains("\(dir.file("nothing-here")): no journal.jsonl"), "\(bad.stderrText)")
    }
}
