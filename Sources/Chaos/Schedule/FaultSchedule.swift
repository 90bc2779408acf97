import ScheduleZeroWire

/// When a fault fires: after `initialDelay`, then every `interval` +- `jitter` (uniform), each time staying on
/// for `duration`, `count` times or until `window` ends.
///
/// The first fault fires at `initialDelay`, never at once unless that is 0 (Pumba #162), and intervals
/// carry jitter (Pumba #53).
public struct ScheduleSpec: Sendable, Equatable {
    public var initialDelay: Duration
    public var interval: Duration
    public var jitter: Duration
    /// How long each fault stays on (0: it acts once, as a kill).
    public var duration: Duration
    /// How many faults; `nil`: as many as fit in `window`.
    public var count: Int?

    public init(initialDelay: Duration = .seconds(1), interval: Duration = .seconds(5), jitter: Duration = .zero,
                duration: Duration = .zero, count: Int? = 1) {
        self.initialDelay = initialDelay
        self.interval = interval
        self.jitter = jitter
        self.duration = duration
        self.count = count
    }
}

/// One fault of a schedule: when (from the start of the run), what, on whom, for how long.
public struct ScheduledFault: Sendable, Equatable, CustomStringConvertible {
    /// Position in the whole plan (time order), from 0.
    public var index: Int
    /// The experiment's name of the fault this comes from.
    public var name: String
    public var kind: FaultKind
    public var targets: [String]
    public var offset: Duration
    public var duration: Duration
    public var params: [String: JSONValue]

    public init(index: Int, name: String, kind: FaultKind, targets: [String], offset: Duration,
                duration: Duration, params: [String: JSONValue] = [:]) {
        self.index = index
        self.name = name
        self.kind = kind
        self.targets = targets
        self.offset = offset
        self.duration = duration
        self.params = params
    }

    public var description: String {
        let d = duration > .zero ? " for \(duration.millisText)" : ""
        return "at \(offset.millisText): \(kind.rawValue) \(targets.joined(separator: ","))\(d) [\(name)]"
    }

    public var json: JSONValue {
        .object([
            "index": .int(Int64(index)), "name": .string(name), "kind": .string(kind.rawValue),
            "targets": .array(targets.map { .string($0) }), "offset_ms": .int(Int64(offset.wholeMilliseconds)),
            "duration_ms": .int(Int64(duration.wholeMilliseconds)), "params": .object(params),
        ])
    }
}

/// Makes deterministic fault lists: the same seed and inputs give the same times and targets.
public enum FaultSchedule {
    /// The faults of one spec, in time order. `window` bounds the start times (faults starting at or after it
    /// are not made); a spec with no `count` needs a window.
    public static func make(
        seed: UInt64, name: String = "fault", kind: FaultKind, spec: ScheduleSpec, targets selector: TargetSelector,
        candidates: [String], window: Duration? = nil, params: [String: JSONValue] = [:]
    ) throws(ScheduleError) -> [ScheduledFault] {
        guard spec.initialDelay >= .zero else { throw .invalid(field: "initial_delay", reason: "must not be negative") }
        guard spec.jitter >= .zero else { throw .invalid(field: "jitter", reason: "must not be negative") }
        guard spec.duration >= .zero else { throw .invalid(field: "duration", reason: "must not be negative") }
        if let c = spec.count, c < 1 { throw .invalid(field: "count", reason: "must be at least 1") }
        guard spec.count != nil || window != nil else { throw .unbounded }
        let repeats = spec.count.map { $0 > 1 } ?? true
        if repeats && spec.interval <= .zero { throw .invalid(field: "interval", reason: "must be positive when a fault repeats") }
        _ = try selector.matching(candidates)  // nothing matching fails now, not at the first fault

        var rng = SeededGenerator(seed: seed)
        var out: [ScheduledFault] = []
        var t = spec.initialDelay
        while true {
            if let c = spec.count, out.count >= c { break }
            if let w = window, t >= w { break }
            let chosen = try selector.choose(from: candidates, using: &rng)
            out.append(ScheduledFault(index: out.count, name: name, kind: kind, targets: chosen, offset: t,
                                      duration: spec.duration, params: params))
            t = t + step(spec, &rng)
        }
        return out
    }

    /// The time from one fault's start to the next: interval +- jitter (uniform, whole milliseconds: plans read
    /// and compare well), never before this fault ends, at least 1 ms. Used by plans and by the command-line
    /// loops (`szchaos kill-random --interval 5s --jitter 1s`).
    public static func step(_ spec: ScheduleSpec, _ rng: inout SeededGenerator) -> Duration {
        var step = spec.interval
        if spec.jitter > .zero {
            step = step + spec.jitter * (2 * rng.unit() - 1)
            step = .milliseconds(Int64((step.secondsValue * 1000).rounded()))
        }
        return max(step, spec.duration, .milliseconds(1))
    }

    /// One seed per fault entry of an experiment, so adding a fault does not move the others.
    public static func seed(_ experimentSeed: UInt64, entry: Int) -> UInt64 {
        var g = SeededGenerator(seed: experimentSeed &+ UInt64(entry) &* 0x9E37_79B9_7F4A_7C15)
        return g.next()
    }
}

extension Duration {
    /// `1500 ms` style, for plans and journals.
    public var millisText: String {
        let ms = Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
        return ms.rounded() == ms ? "\(Int(ms)) ms" : "\((ms * 10).rounded() / 10) ms"
    }

    /// Seconds as a Double.
    public var secondsValue: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
