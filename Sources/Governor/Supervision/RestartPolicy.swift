import ScheduleZeroWire
// Restart policy: when a process that exited on its own is started again, after how long, and when the
// governor gives up (`fatal`). Pure values; `RestartTracker` is the per-process decision state.

/// always / on-failure / never.
public enum RestartMode: String, Sendable, Hashable, Codable, CaseIterable {
    case always
    case onFailure = "on-failure"
    case never
}

/// Exponential backoff with a cap and jitter. Attempt n (0-based, counted since the last healthy run) waits
/// 0 for the first `immediateRestarts` attempts, then `initial * multiplier^(n - immediateRestarts)`, capped at
/// `cap`, then scaled by a random factor in [1 - jitter, 1 + jitter] and capped again.
public struct BackoffPolicy: Sendable, Hashable {
    public var initial: Duration
    public var multiplier: Double
    public var cap: Duration
    /// 0...1: the relative spread of the random factor.
    public var jitter: Double
    /// How many restarts happen at once before backing off (a lone crash is restarted in ~1 ms).
    public var immediateRestarts: Int

    public init(initial: Duration = .milliseconds(100), multiplier: Double = 2, cap: Duration = .seconds(30),
                jitter: Double = 0.2, immediateRestarts: Int = 1) {
        self.initial = initial
        self.multiplier = multiplier
        self.cap = cap
        self.jitter = jitter
        self.immediateRestarts = immediateRestarts
    }

    /// The delay before attempt `attempt` without jitter.
    public func baseDelay(attempt: Int) -> Duration {
        if attempt < immediateRestarts { return .zero }
        let exponent = Double(attempt - immediateRestarts)
        let ms = initial.msDouble * pow2(multiplier, exponent)
        return min(cap, ms.isFinite ? .milliseconds(ms) : cap)
    }

    /// The delay before attempt `attempt`, jittered with `random`.
    public func delay<R: RandomNumberGenerator>(attempt: Int, using random: inout R) -> Duration {
        let base = baseDelay(attempt: attempt)
        guard base > .zero, jitter > 0 else { return base }
        let factor = Double.random(in: (1 - jitter)...(1 + jitter), using: &random)
        return min(cap, .milliseconds((base.msDouble * factor).rounded()))
    }

    private func pow2(_ base: Double, _ exponent: Double) -> Double {
        var result = 1.0
        for _ in 0..<Int(min(exponent, 1000)) { result *= base; if result > 1e12 { return .infinity } }
        return result
    }
}

public struct RestartPolicy: Sendable, Hashable {
    public var mode: RestartMode
    /// At most this many restarts within `window`; one more makes the process `fatal`.
    public var maxRestarts: Int
    public var window: Duration
    public var backoff: BackoffPolicy
    /// A run at least this long counts as healthy and resets the backoff.
    public var resetAfter: Duration

    public init(mode: RestartMode = .onFailure, maxRestarts: Int = 5, window: Duration = .seconds(60),
                backoff: BackoffPolicy = BackoffPolicy(), resetAfter: Duration = .seconds(10)) {
        self.mode = mode
        self.maxRestarts = maxRestarts
        self.window = window
        self.backoff = backoff
        self.resetAfter = resetAfter
    }

    public static let never = RestartPolicy(mode: .never)
}

/// What to do after a process ended without being asked to.
public enum RestartDecision: Sendable, Hashable {
    /// Start again after `delay` (attempt is 0-based since the last healthy run).
    case restart(after: Duration, attempt: Int)
    /// Leave it down: the policy does not restart this exit (never; on-failure and exit 0).
    case leaveDown
    /// Give up: too many restarts within the window.
    case giveUp(reason: String)
}

/// Per-process restart bookkeeping, driven by clock readings passed in (so tests use a manual clock).
public struct RestartTracker: Sendable {
    public let policy: RestartPolicy
    /// Restarts decided within the current window (their clock times).
    public private(set) var recentRestarts: [Duration] = []
    /// Consecutive attempts since the last healthy run: the backoff exponent.
    public private(set) var attempt = 0
    /// All restarts ever decided.
    public private(set) var totalRestarts = 0
    private var random: SeededGenerator

    public init(policy: RestartPolicy, seed: UInt64 = 0x5eed) {
        self.policy = policy
        self.random = SeededGenerator(seed: seed)
    }

    /// Decides after an exit (or a failed start, `exit == nil`). `ranFor` is how long the process had been
    /// running (ready) before it ended, nil if it never became ready.
    public mutating func decide(exit: ExitStatus?, ranFor: Duration?, now: Duration) -> RestartDecision {
        if let ranFor, ranFor >= policy.resetAfter { attempt = 0 }
        switch policy.mode {
        case .never: return .leaveDown
        case .onFailure: if let exit, exit.isSuccess { return .leaveDown }
        case .always: break
        }
        recentRestarts.removeAll { now - $0 >= policy.window }
        if recentRestarts.count >= policy.maxRestarts {
            return .giveUp(reason: "\(recentRestarts.count) restarts within \(DurationText.format(policy.window))"
                           + " (max_restarts \(policy.maxRestarts))")
        }
        let delay = policy.backoff.delay(attempt: attempt, using: &random)
        let decided = RestartDecision.restart(after: delay, attempt: attempt)
        attempt += 1
        totalRestarts += 1
        recentRestarts.append(now)
        return decided
    }

    /// Forgets the history (an operator's explicit start).
    public mutating func reset() {
        attempt = 0
        recentRestarts.removeAll()
    }
}

extension Duration {
    /// Fractional milliseconds.
    var msDouble: Double {
        let (s, atto) = components
        return Double(s) * 1000 + Double(atto) / 1e15
    }
}
