// Time for the restart policy, injectable so tests drive backoff in milliseconds deterministically.
//
// Only policy time (backoff delays, the restart window, "healthy run" resets) goes through this clock.
// Things that wait on real processes (stop timeouts, readiness deadlines) use real time.
import Synchronization

public protocol GovernorClock: Sendable {
    /// Monotonic time since an arbitrary origin.
    func now() -> Duration
    /// Suspends for `duration` of this clock's time. Throws CancellationError when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

/// Real monotonic time.
public struct SystemGovernorClock: GovernorClock {
    private let origin = ContinuousClock.now
    public init() {}
    public func now() -> Duration { ContinuousClock.now - origin }
    public func sleep(for duration: Duration) async throws { try await EventLoop.shared.sleep(for: duration) }
}

/// A clock that moves only when a test calls `advance(by:)`. Sleepers whose deadline is reached resume in
/// deadline order. `waitForSleepers(_:)` lets a test wait until the code under test has started sleeping.
public final class ManualGovernorClock: GovernorClock {
    private struct Sleeper {
        let id: UInt64
        let deadline: Duration
        let continuation: CheckedContinuation<Void, any Error>
    }
    private struct State {
        var now: Duration = .zero
        var sleepers: [Sleeper] = []
        var nextID: UInt64 = 0
        var cancelledEarly: Set<UInt64> = []
    }
    private let state = Mutex(State())

    public init(now: Duration = .zero) { state.withLock { $0.now = now } }

    public func now() -> Duration { state.withLock { $0.now } }

    /// The number of tasks sleeping on this clock now.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// The deadlines of the current sleepers, soonest first.
    public var pendingDeadlines: [Duration] { state.withLock { $0.sleepers.map(\.deadline).sorted() } }

    public func sleep(for duration: Duration) async throws {
        let id: UInt64 = state.withLock { $0.nextID += 1; return $0.nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                enum Outcome { case resume, cancel, wait }
                let outcome: Outcome = state.withLock { s in
                    if s.cancelledEarly.remove(id) != nil { return .cancel }
                    if duration <= .zero { return .resume }
                    s.sleepers.append(Sleeper(id: id, deadline: s.now + duration, continuation: c))
                    return .wait
                }
                switch outcome {
                case .resume: c.resume()
                case .cancel: c.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let sleeper: Sleeper? = state.withLock { s in
                if let i = s.sleepers.firstIndex(where: { $0.id == id }) { return s.sleepers.remove(at: i) }
                s.cancelledEarly.insert(id)
                return nil
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    public func advance(by duration: Duration) {
        let due: [Sleeper] = state.withLock { s in
            s.now += duration
            let now = s.now
            let due = s.sleepers.filter { $0.deadline <= now }.sorted { $0.deadline < $1.deadline }
            s.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Suspends (polling briefly on real time, at most `timeout`) until at least `count` tasks sleep here.
    /// Returns false on timeout.
    public func waitForSleepers(_ count: Int = 1, timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while sleeperCount < count {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }
}
