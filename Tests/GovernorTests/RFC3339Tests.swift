import Foundation
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
@testable import Governor

/// The hand-written RFC 3339 formatter `status` uses for start_time against the ISO8601DateFormatter it
/// replaced: byte for byte, with and without milliseconds.
@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_RFC3339 {
    let plain = ISO8601DateFormatter()
    let fractional: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    func expectSame(_ t: TimeInterval, sourceLocation: SourceLocation = #_sourceLocation) {
        let date = Date(timeIntervalSince1970: t)
        #expect(RFC3339.string(from: date) == plain.string(from: date), "t = \(t)", sourceLocation: sourceLocation)
        #expect(RFC3339.string(from: date, milliseconds: true) == fractional.string(from: date), "t = \(t)",
                sourceLocation: sourceLocation)
    }

    @Test func knownDatesAreWrittenInUTC() {
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: 951_782_400.25), milliseconds: true) == "2000-02-29T00:00:00.250Z")
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: 1_796_152_380)) == "2026-12-01T19:13:00Z")
    }

    @Test(arguments: [
        0, 0.0004, 0.0005, 0.9994, 0.9995, 0.9996, 1.4994, 1.4996, 59.9999, 86_399.9996,
        951_782_399.9999, 951_782_400, 4_107_542_400, 4_107_542_399.9995, 13_574_563_200,  // 2000-02-29, 2100-03-01, 2400-02-29
        1_764_615_980.99949, 1_764_615_980.9995, 253_402_300_799, 253_402_300_799.999, 253_402_300_799.9996,
        -0.0004, -0.0006, -1, -86_400.5, -12_219_292_800, -62_135_596_800, 253_402_300_800,  // the fallback's side
    ] as [TimeInterval])
    func edgesMatchISO8601DateFormatter(t: TimeInterval) {
        expectSame(t)
    }

    @Test func randomDatesMatchISO8601DateFormatter() {
        var rng = SeededGenerator(seed: 0x3339)
        for _ in 0..<5_000 {
            // Whole seconds, milliseconds and sub-millisecond parts, 1970-9999 and the years around now.
            let t = Bool.random(using: &rng) ? Double.random(in: 0..<253_402_300_800, using: &rng)
                                             : Double.random(in: 1_700_000_000..<1_900_000_000, using: &rng)
            expectSame(t)
            expectSame(t.rounded(.down))
            expectSame((t * 1000).rounded(.down) / 1000)
        }
    }
}
