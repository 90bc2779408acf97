import Foundation
@testable import Interposer
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing

/// The link journal writes its numbers and strings by hand (no Foundation formatter on the proxy's hot path):
/// byte for byte what `String(format: "%.3f")`, `String(Int)` and `JSON.encode` write.
@Suite(.tags(.unit), .leakChecked)
struct unit_JournalFieldFormat {
    @Test func numbersAreExactlyPercentPoint3fAndStringsExactlyJSONEncode() throws {
        let dir = TemporaryDirectory(prefix: "sz-journal-format")
        defer { dir.remove() }
        do {
            var rng = SeededGenerator(seed: 7)
            var numbers: [Double] = [0, -0.0, 0.0005, 0.0015, 0.0025, -0.0001, 1.2345, 2.5e-4, 999.9995, 1e15, 4.6e12, -17.25,
                                     1_796_000_000.0005, .nan, .infinity, -.infinity, Double.ulpOfOne, 0.1 + 0.2]
            for _ in 0..<20_000 { numbers.append(rng.unit() * 20_000) }
            for _ in 0..<5_000 { numbers.append(1_796_000_000 + rng.unit() * 1e7) }
            for _ in 0..<5_000 { numbers.append(Double(Int(rng.next() % 10_000_000)) / 1000 + 0.0005) }
            let strings = ["ping", "increment_counter", "a \"quoted\" \\ name", "tab\tnew\nline\u{1}", "é ü ✓", ""]
            let path = dir.file("j.jsonl")
            let w = try JournalWriter(path: path)
            for v in numbers { w.line { $0.field("v", v) } }
            for s in strings { w.line { $0.field("s", s) } }
            let ints = [0, 7, -7, 9, 10, 99, 100, 1_000_000, Int.max, Int.min, Int.min + 1] + (0..<2_000).map { _ in Int(truncatingIfNeeded: rng.next()) >> Int(rng.next() % 63) }
            for n in ints { w.line { $0.field("n", n); $0.field("b", n % 2 == 0) } }
            // Past the buffer's flush size in one field: written through, in order.
            let long = String(repeating: "x", count: 300_000)
            w.line { $0.field("s", long) }
            w.close()
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == numbers.count + strings.count + ints.count + 1)
            for (v, line) in zip(numbers, lines) {
                let value = line.split(separator: ",").last.map { $0.dropFirst(4).dropLast() }.map(String.init)
                #expect(value == String(format: "%.3f", v), "\(v)")
            }
            for (s, line) in zip(strings, lines.dropFirst(numbers.count)) {
                #expect(line.hasSuffix(",\"s\":" + JSON.string(.string(s)) + "}"), "\(s)")
            }
            for (n, line) in zip(ints, lines.dropFirst(numbers.count + strings.count)) {
                #expect(line.hasSuffix(",\"n\":\(n),\"b\":\(n % 2 == 0)}"), "\(n)")
            }
            #expect(lines.last?.hasSuffix(",\"s\":\"" + long + "\"}") == true)
        }
    }
}
