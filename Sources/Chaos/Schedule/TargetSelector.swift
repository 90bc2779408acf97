import Governor
import ScheduleZeroWire

/// Which targets a fault may hit: names or fnmatch globs to include, globs to exclude, how many at most, and
/// whether they are drawn at random (seeded) or taken in name order.
///
/// Selecting nothing is an error, never "everything" (Pumba #290 killed every container when no name was
/// given): an empty `include` is refused, and so is a selection that matches no candidate.
public struct TargetSelector: Sendable, Equatable {
    public var include: [String]
    public var exclude: [String]
    /// At most this many targets per fault; `nil` means 1 when `random`, every match otherwise.
    public var limit: Int?
    public var random: Bool

    public init(include: [String], exclude: [String] = [], limit: Int? = nil, random: Bool = true) {
        self.include = include
        self.exclude = exclude
        self.limit = limit
        self.random = random
    }

    /// Whether `name` matches the fnmatch(3) glob `pattern` (`h-*`, `h-[12]`, `?`): the governor's matching.
    public static func matches(_ name: String, _ pattern: String) -> Bool { Names.matches(name, glob: pattern) }

    /// The candidates this selector allows, in name order. Throws when none is named or none matches.
    public func matching(_ candidates: [String]) throws(ScheduleError) -> [String] {
        guard !include.isEmpty else { throw .noTargetNamed }
        let hit = Set(candidates).filter { c in
            include.contains { Self.matches(c, $0) } && !exclude.contains { Self.matches(c, $0) }
        }
        guard !hit.isEmpty else { throw .noTargetMatches(include: include, exclude: exclude, candidates: candidates.sorted()) }
        return hit.sorted()
    }

    /// The targets of one fault: `limit` of the matches, drawn with `rng` when `random`.
    public func choose(from candidates: [String], using rng: inout SeededGenerator) throws(ScheduleError) -> [String] {
        let pool = try matching(candidates)
        let n = Swift.max(1, Swift.min(pool.count, limit ?? (random ? 1 : pool.count)))
        guard random else { return Array(pool.prefix(n)) }
        // A seeded partial Fisher-Yates: the first n of a shuffle.
        var p = pool
        for i in 0..<n {
            let j = i + Int(rng.next() % UInt64(p.count - i))
            p.swapAt(i, j)
        }
        return Array(p.prefix(n)).sorted()
    }
}

/// Why a schedule cannot be made.
public enum ScheduleError: Error, Equatable, Sendable, CustomStringConvertible {
    case noTargetNamed
    case noTargetMatches(include: [String], exclude: [String], candidates: [String])
    /// Neither a count nor a window bounds the schedule.
    case unbounded
    case invalid(field: String, reason: String)

    public var description: String {
        switch self {
        case .noTargetNamed:
            "no target named: name targets or globs with include (a fault never hits every target by default)"
        case let .noTargetMatches(inc, exc, cands):
            "no target matches include \(inc)" + (exc.isEmpty ? "" : " exclude \(exc)")
                + " (known: \(cands.isEmpty ? "none" : cands.joined(separator: ", ")))"
        case .unbounded: "the schedule has neither a count nor a window: it would never end"
        case let .invalid(f, r): "\(f): \(r)"
        }
    }
}
