import Foundation
import ScheduleZeroTesting
import Testing

/// Selection that cannot lie: every suite and test name spells exactly its tags, every test has a category,
/// and only regression tests carry the word `regression`. Reads the test sources; starts nothing.
@Suite(.tags(.unit), .leakChecked)
struct unit_TestSelectionLint {
    static let categories: Set<String> = ["unit", "integration"]
    static let known: Set<String> = ["unit", "integration", "regression", "zmq", "governor", "network", "slow"]

    @Test func everySuiteAndTestNameSpellsItsTags() throws {
        let decls = try TestSourceScanner.scanAll()
        #expect(decls.filter { $0.kind == .test }.count > 10, "the scanner found almost no tests: is it broken?")
        var problems: [String] = []
        for d in decls {
            let unknown = d.tags.subtracting(Self.known)
            if !unknown.isEmpty { problems.append("\(d.place): unknown tag(s) \(unknown.sorted())") }
            if d.tokens != d.tags {
                problems.append("\(d.place): \(d.kind) \(d.name) has tags \(d.tags.sorted()) but its name spells \(d.tokens.sorted())")
            }
            if d.kind == .test {
                let effective = d.tags.union(d.suiteTags)
                if effective.isDisjoint(with: Self.categories) {
                    problems.append("\(d.place): test \(d.name) has no category tag (unit or integration)")
                }
                if d.suite == nil { problems.append("\(d.place): test \(d.name) is outside a @Suite struct") }
                if effective.contains("unit") && effective.contains("integration") {
                    problems.append("\(d.place): test \(d.name) is both unit and integration")
                }
            }
            if d.name.contains("regression") && !d.tags.contains("regression") && !d.suiteTags.contains("regression") {
                problems.append("\(d.place): \(d.name) says 'regression' but is not tagged so")
            }
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    /// `quick` runs the unit tests and promises no process and no socket outside the test process: files that
    /// hold only unit suites may not start processes, peers or sockets.
    @Test func unitSuitesStartNoProcessAndOpenNoSocket() throws {
        let forbidden = ["TestProcess(", "TestPeer(", "Spawner.spawn", "posix_spawn", ".socket(.", "startAndWait(",
                         ".start()", "SyncClient(", "ZMQClient(", "ProcessGovernor(", "ChaosProxy("]
        var problems: [String] = []
        for (file, decls) in try TestSourceScanner.scanFiles() {
            let suites = decls.filter { $0.kind == .suite }
            guard !suites.isEmpty, suites.allSatisfy({ $0.tags.contains("unit") }) else { continue }
            let text = TestSourceScanner.withoutStrings(try TestSourceScanner.source(file))
            for f in forbidden where text.contains(f) { problems.append("\(file): a unit-only file uses \(f)") }
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    /// Every suite checks, when its last test is done, that it left no process, folder, PID file or socket
    /// file behind (`LeakCheckedTrait`), so a leak is named with the suite that made it.
    @Test func everySuiteIsLeakChecked() throws {
        let suites = try TestSourceScanner.scanAll().filter { $0.kind == .suite }
        #expect(suites.count > 20, "the scanner found almost no suites: is it broken?")
        let unchecked = suites.filter { !$0.arguments.contains(".leakChecked") }.map { "\($0.place): suite \($0.name) lacks .leakChecked" }
        #expect(unchecked.isEmpty, "\(unchecked.joined(separator: "\n"))")
    }

    /// Exit tests keep a cooperative-pool thread busy while their child runs; two at once stall the process.
    @Test func everyExitTestGoesThroughTheGate() throws {
        var problems: [String] = []
        for (file, _) in try TestSourceScanner.scanFiles() where !file.hasPrefix("TestSupport/") {
            let text = TestSourceScanner.withoutStrings(try TestSourceScanner.source(file))
            for line in text.split(separator: "\n") where line.contains("processExitsWith") && !line.contains("oneExitTestAtATime") {
                problems.append("\(file): an exit test outside oneExitTestAtATime: \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test func theScannerCatchesAMismatch() {
        let bad = """
        @Suite(.tags(.unit, .zmq))
        struct unit_Foo {
            @Test(.tags(.slow)) func quick() {}
            @Test func fine() {}
        }
        """
        let decls = TestSourceScanner.scan(bad, file: "inline.swift", stripExamples: false)
        #expect(decls.count == 3)
        #expect(decls[0].tokens == ["unit"] && decls[0].tags == ["unit", "zmq"])
        #expect(decls[1].tags == ["slow"] && decls[1].tokens.isEmpty && decls[1].suiteTags == ["unit", "zmq"])
        #expect(decls[2].tokens == decls[2].tags)
    }
}

/// Finds `@Suite`/`@Test` declarations and their `.tags(...)` in test sources.
enum TestSourceScanner {
    struct Decl {
        enum Kind: String { case suite, test }
        var kind: Kind
        var name: String
        var tags: Set<String>
        var suite: String?
        var suiteTags: Set<String>
        var place: String
        /// The attribute's arguments, `(.tags(.unit), .leakChecked)`.
        var arguments = ""
        /// The lowercase `word_` tokens that start the name.
        var tokens: Set<String> {
            var out: Set<String> = []
            var rest = Substring(name)
            while let u = rest.firstIndex(of: "_") {
                let word = rest[..<u]
                guard !word.isEmpty, word.allSatisfy({ $0.isLowercase && $0.isLetter }) else { break }
                out.insert(String(word))
                rest = rest[rest.index(after: u)...]
            }
            return out
        }
    }

    static var testsRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Declarations per test source file (paths relative to Tests/).
    /// Every test source, read and scanned once for all the lint tests (a scan costs about 0.4 s of CPU in a
    /// debug build; four tests each scanning everything took four times that, at the busiest moment of a run).
    struct ScannedFile: Sendable {
        let path: String
        let text: String
        let decls: [Decl]
    }
    static let scanned: Result<[ScannedFile], any Error> = Result {
        let fm = FileManager.default
        guard let e = fm.enumerator(at: testsRoot, includingPropertiesForKeys: nil) else { return [] }
        var out: [ScannedFile] = []
        for case let url as URL in e where url.pathExtension == "swift" {
            let rel = url.path.replacingOccurrences(of: testsRoot.path + "/", with: "")
            let text = try String(contentsOf: url, encoding: .utf8)
            out.append(ScannedFile(path: rel, text: text, decls: scan(text, file: rel)))
        }
        return out.sorted { $0.path < $1.path }
    }

    static func scanFiles() throws -> [(String, [Decl])] { try scanned.get().map { ($0.path, $0.decls) } }

    static func scanAll() throws -> [Decl] { try scanned.get().flatMap(\.decls) }

    /// The text of one scanned file (a path from `scanFiles`).
    static func source(_ file: String) throws -> String {
        try scanned.get().first { $0.path == file }?.text ?? String(contentsOf: testsRoot.appendingPathComponent(file), encoding: .utf8)
    }

    /// Blanks out comments and multi-line string literals (keeping line breaks), so examples are not scanned.
    static func code(_ text: String) -> String {
        var t = text.replacing(/"""[\s\S]*?"""/) { m in String(m.output.map { $0 == "\n" ? "\n" : " " }) }
        t = t.replacing(/\/\/[^\n]*/) { m in String(repeating: " ", count: m.output.count) }
        return t
    }

    /// `code(text)` with ordinary string literals emptied too.
    static func withoutStrings(_ text: String) -> String {
        code(text).replacing(/"(?:[^"\\\n]|\\.)*"/) { _ in "\"\"" }
    }

    static func scan(_ text: String, file: String, stripExamples: Bool = true) -> [Decl] {
        let chars = Array(stripExamples ? code(text) : text)
        var out: [Decl] = []
        var currentSuite: (name: String, tags: Set<String>)?
        var i = 0
        func line(_ at: Int) -> Int { chars[0..<at].filter { $0 == "\n" }.count + 1 }
        while i < chars.count {
            guard chars[i] == "@" else { i += 1; continue }
            let start = i
            var j = i + 1
            while j < chars.count, chars[j].isLetter { j += 1 }
            let attr = String(chars[(i + 1)..<j])
            guard attr == "Suite" || attr == "Test" else { i = j; continue }
            // Balanced parentheses of the attribute, skipping string literals.
            var args = ""
            if j < chars.count, chars[j] == "(" {
                var depth = 0, k = j, inString = false
                while k < chars.count {
                    let c = chars[k]
                    if c == "\"" && (k == 0 || chars[k - 1] != "\\") { inString.toggle() }
                    if !inString {
                        if c == "(" { depth += 1 }
                        if c == ")" { depth -= 1; if depth == 0 { break } }
                    }
                    k += 1
                }
                args = String(chars[j...min(k, chars.count - 1)])
                j = k + 1
            }
            // The declaration that follows: `struct NAME` or `func NAME`.
            let after = String(chars[j..<min(chars.count, j + 400)])
            guard let m = after.firstMatch(of: /(struct|func)\s+([A-Za-z_][A-Za-z0-9_]*)/) else { i = j; continue }
            let name = String(m.output.2)
            var tags: Set<String> = []
            if let t = args.firstMatch(of: /\.tags\(([^)]*)\)/) {
                for tag in t.output.1.matches(of: /\.([a-zA-Z]+)/) { tags.insert(String(tag.output.1)) }
            }
            let place = "\(file):\(line(start))"
            if attr == "Suite" {
                currentSuite = (name, tags)
                out.append(Decl(kind: .suite, name: name, tags: tags, suite: nil, suiteTags: [], place: place, arguments: args))
            } else {
                out.append(Decl(kind: .test, name: name, tags: tags, suite: currentSuite?.name,
                                suiteTags: currentSuite?.tags ?? [], place: place, arguments: args))
            }
            i = j
        }
        return out
    }
}
