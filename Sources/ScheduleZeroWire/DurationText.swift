// The one parser of durations written as text (`250ms`, `1.5s`, `2m`, `1h`), used by every file and option
// of the project: deployment files, experiment files, szchaos options, szmock job specs. Values above
// `DurationText.maximumSeconds` are refused instead of overflowing (`Duration.milliseconds(1e21)` traps).

/// Parses durations, which always carry a unit: a bare number (`250`) is refused everywhere, with a message
/// that says so (it once meant milliseconds in deployment files and seconds in experiment files).
public enum DurationText {
    /// The longest duration accepted anywhere: 7 days. Larger values are refused, never rounded or wrapped.
    public static let maximumSeconds: Double = 604_800
    public static let maximumDescription = "7 days (604800s)"

    public enum Problem: Error, Equatable, Sendable {
        /// Not a non-negative number with one of the units.
        case malformed
        /// A number without a unit.
        case bareNumber
        /// Longer than `maximumSeconds`.
        case tooLong
    }

    /// What every message about a duration asks for.
    public static let expected = "a duration with a unit: 250ms, 2s, 1m or 1h"

    /// The message for a problem with `text` (without the field's name, which the caller adds).
    public static func message(_ problem: Problem, _ text: String) -> String {
        switch problem {
        case .malformed: return "must be \(expected) (got \"\(text)\")"
        case .bareNumber: return "must be \(expected): a number without a unit is refused (got \"\(text)\"; write \(text)ms or \(text)s)"
        case .tooLong: return "must be at most \(maximumDescription) (got \"\(text)\")"
        }
    }

    public static func parse(_ text: String) -> Result<Duration, Problem> {
        let t = text.trimmingWhitespace
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(t)
        var factor: Double?
        for (suffix, f) in units where t.hasSuffix(suffix) {
            number = t.dropLast(suffix.count)
            factor = f
            break
        }
        let digits = String(number).trimmingWhitespace
        if factor == nil, let v = Double(digits), v.isFinite { _ = v; return .failure(.bareNumber) }
        guard let factor, !digits.isEmpty, let value = Double(digits), !value.isNaN, value >= 0,
              digits.allSatisfy({ $0.isNumber || $0 == "." || $0 == "e" || $0 == "E" || $0 == "+" || $0 == "-" })
        else { return .failure(.malformed) }
        let seconds = value * factor
        guard seconds.isFinite, seconds <= maximumSeconds else { return .failure(.tooLong) }
        return .success(.nanoseconds(Int64((seconds * 1e9).rounded())))
    }

    /// The one formatter: whole seconds as `2s`, whole milliseconds as `250ms`, else milliseconds with up to
    /// three decimals (`0.5ms`). What it prints, `parse` reads back.
    public static func format(_ d: Duration) -> String {
        let (s, atto) = d.components
        if atto == 0 { return "\(s)s" }
        let totalNs = s * 1_000_000_000 + atto / 1_000_000_000
        if totalNs % 1_000_000 == 0 { return "\(totalNs / 1_000_000)ms" }
        let micros = (Double(totalNs) / 1000).rounded()
        var text = "\(Int64(micros) / 1000)." + String(String(Int64(micros) % 1000 + 1000).dropFirst())
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text + "ms"
    }

    /// nil for any problem, for callers that only need to know whether the text is a duration.
    public static func value(_ text: String) -> Duration? {
        try? parse(text).get()
    }

    /// What is wrong with a command-line option's duration, in one sentence that starts with the option.
    public struct OptionProblem: Error, Equatable, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The duration given to a command-line option (`--timeout 2s`), or what is wrong with it; `positive`
    /// refuses zero as well. The executables turn the problem into their usage error.
    public static func option(_ text: String, _ name: String, positive: Bool = true) -> Result<Duration, OptionProblem> {
        switch parse(text) {
        case .success(let d) where positive && d == .zero:
            return .failure(OptionProblem(description: "\(name) must be longer than 0 (got \"\(text)\")"))
        case .success(let d): return .success(d)
        case .failure(let problem): return .failure(OptionProblem(description: "\(name) \(message(problem, text))"))
        }
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
