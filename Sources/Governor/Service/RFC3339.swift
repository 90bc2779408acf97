// RFC 3339 timestamps in UTC ("2026-12-01T19:06:20Z", or "...20.123Z" with milliseconds), written by hand:
// an ISO8601DateFormatter costs about 45 us to create and a few us per string, and `status` wrote one per
// process per call. The result is byte for byte what ISO8601DateFormatter writes with `.withInternetDateTime`
// (and `.withFractionalSeconds`) in GMT: the time rounded to the nearest millisecond, then truncated, as
// CFDateFormatter and ICU do (unit_governor_RFC3339 compares the two over many dates). Written by hand for
// 1970-9999; other dates (ICU's Julian calendar before 1582) go to ISO8601DateFormatter.
import Foundation

public enum RFC3339 {
    /// `date` in UTC; `milliseconds` adds ".SSS" as `.withFractionalSeconds` does.
    public static func string(from date: Date, milliseconds: Bool = false) -> String {
        // As CFDateFormatter hands the time to ICU: milliseconds since 1970 plus 0.5, which ICU floors.
        let ms = ((date.timeIntervalSinceReferenceDate + Date.timeIntervalBetween1970AndReferenceDate) * 1000 + 0.5).rounded(.down)
        guard ms >= 0, ms < 253_402_300_800_000 else {  // outside 1970-01-01 ..< 10000-01-01
            let options: ISO8601DateFormatter.Options = milliseconds ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
            return ISO8601DateFormatter.string(from: date, timeZone: TimeZone(identifier: "GMT")!, formatOptions: options)
        }
        let total = Int64(ms)
        let (secs, milli) = floorDivMod(total, 1000)
        let (days, daySecs) = floorDivMod(secs, 86_400)
        let (y, m, d) = civil(fromDays: days)
        var out = [UInt8]()
        out.reserveCapacity(24)
        digits(&out, y, 4); out.append(UInt8(ascii: "-"))
        digits(&out, m, 2); out.append(UInt8(ascii: "-"))
        digits(&out, d, 2); out.append(UInt8(ascii: "T"))
        digits(&out, daySecs / 3600, 2); out.append(UInt8(ascii: ":"))
        digits(&out, daySecs / 60 % 60, 2); out.append(UInt8(ascii: ":"))
        digits(&out, daySecs % 60, 2)
        if milliseconds {
            out.append(UInt8(ascii: "."))
            digits(&out, milli, 3)
        }
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    private static func floorDivMod(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let q = a / b, r = a % b
        return r < 0 ? (q - 1, r + b) : (q, r)
    }

    /// Days since 1970-01-01 -> proleptic Gregorian (year, month, day) (H. Hinnant's civil_from_days).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    private static func digits(_ out: inout [UInt8], _ value: Int64, _ width: Int) {
        var buffer: (UInt8, UInt8, UInt8, UInt8) = (48, 48, 48, 48)
        var v = value
        withUnsafeMutableBytes(of: &buffer) { b in
            var i = 3
            while v > 0 && i >= 0 { b[i] = UInt8(48 + v % 10); v /= 10; i -= 1 }
            for j in (4 - width)..<4 { out.append(b[j]) }
        }
    }
}
