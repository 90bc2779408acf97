/// Helpers to measure and print benchmark figures.
enum Measure {
    /// Runs `body` and returns the nanoseconds it took.
    static func ns(_ body: () throws -> Void) rethrows -> Int64 {
        let clock = ContinuousClock()
        let d = try clock.measure(body)
        return d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func percentile(_ xs: [Double], _ p: Double) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
    }

    static func fmt(_ x: Double, _ digits: Int = 1) -> String {
        var p = 1.0
        for _ in 0..<digits { p *= 10 }
        let r = (x * p).rounded() / p
        return "\(r)"
    }

    /// One aligned row: label, value, unit, and an optional note.
    static func row(_ label: String, _ value: String, _ note: String = "") {
        let l = label + String(repeating: " ", count: max(0, 46 - label.count))
        let v = String(repeating: " ", count: max(0, 10 - value.count)) + value
        print("  \(l) \(v)  \(note)")
    }

    static func verdict(_ ratio: Double, goal: Double) -> String {
        ratio <= goal ? "goal <= \(fmt(goal, 2))x: met" : "goal <= \(fmt(goal, 2))x: NOT met"
    }
}
