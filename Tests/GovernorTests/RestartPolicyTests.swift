import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
@testable import Governor

@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_RestartPolicy {
    let crash = ExitStatus.signaled(signal: 9, coreDumped: false)

    func noJitter(_ immediate: Int = 1) -> BackoffPolicy {
        BackoffPolicy(initial: .milliseconds(100), multiplier: 2, cap: .milliseconds(1000), jitter: 0,
                      immediateRestarts: immediate)
    }

    @Test func backoffDoublesFromInitialUpToTheCap() {
        let delays = (0..<8).map { noJitter().baseDelay(attempt: $0) }
        #expect(delays == [0, 100, 200, 400, 800, 1000, 1000, 1000].map { Duration.milliseconds($0) })
    }

    @Test func zeroImmediateRestartsBacksOffFromTheFirst() {
        #expect(noJitter(0).baseDelay(attempt: 0) == .milliseconds(100))
    }

    @Test func hugeAttemptCountsStayAtTheCap() {
        #expect(noJitter().baseDelay(attempt: 10_000) == .milliseconds(1000))
    }

    @Test func jitterStaysWithinItsBandAndIsReproducibleFromTheSeed() {
        let policy = BackoffPolicy(initial: .milliseconds(1000), multiplier: 1, cap: .seconds(10), jitter: 0.2,
                                   immediateRestarts: 0)
        var a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42), c = SeededGenerator(seed: 43)
        let first = (0..<50).map { _ in policy.delay(attempt: 3, using: &a) }
        let second = (0..<50).map { _ in policy.delay(attempt: 3, using: &b) }
        let other = (0..<50).map { _ in policy.delay(attempt: 3, using: &c) }
        #expect(first == second)
        #expect(first != other)
        #expect(first.allSatisfy { $0 >= .milliseconds(800) && $0 <= .milliseconds(1200) })
        #expect(Set(first).count > 10, "jitter must actually spread the delays")
    }

    @Test func jitterNeverExceedsTheCap() {
        let policy = BackoffPolicy(initial: .milliseconds(1000), multiplier: 2, cap: .milliseconds(1000), jitter: 0.5,
                                   immediateRestarts: 0)
        var rng = SeededGenerator(seed: 1)
        #expect((0..<100).allSatisfy { _ in policy.delay(attempt: 5, using: &rng) <= .milliseconds(1000) })
    }

    @Test func givesUpAfterMaxRestartsWithinTheWindow() {
        let clock = ManualGovernorClock()
        var tracker = RestartTracker(policy: RestartPolicy(mode: .always, maxRestarts: 3, window: .seconds(10),
                                                           backoff: noJitter()))
        var decisions: [RestartDecision] = []
        for _ in 0..<4 {
            decisions.append(tracker.decide(exit: crash, ranFor: .milliseconds(5), now: clock.now()))
            clock.advance(by: .milliseconds(500))
        }
        #expect(decisions.prefix(3) == [.restart(after: .zero, attempt: 0),
                                        .restart(after: .milliseconds(100), attempt: 1),
                                        .restart(after: .milliseconds(200), attempt: 2)])
        guard case .giveUp(let reason) = decisions[3] else {
            Issue.record("expected giveUp, got \(decisions[3])"); return
        }
        #expect(reason == "3 restarts within 10s (max_restarts 3)")
    }

    @Test func restartsOlderThanTheWindowNoLongerCount() {
        let clock = ManualGovernorClock()
        var tracker = RestartTracker(policy: RestartPolicy(mode: .always, maxRestarts: 2, window: .seconds(10),
                                                           backoff: noJitter()))
        _ = tracker.decide(exit: crash, ranFor: nil, now: clock.now())
        clock.advance(by: .milliseconds(9_000))
        _ = tracker.decide(exit: crash, ranFor: nil, now: clock.now())
        clock.advance(by: .milliseconds(999))
        // At 9_999 ms the first restart (t = 0) is still inside the window: the window is full.
        guard case .giveUp = tracker.decide(exit: crash, ranFor: nil, now: clock.now()) else {
            Issue.record("two restarts within 10 s must give up"); return
        }
        clock.advance(by: .milliseconds(1))
        // At 10_000 ms it has left the window: one slot is free again.
        guard case .restart = tracker.decide(exit: crash, ranFor: nil, now: clock.now()) else {
            Issue.record("a restart older than the window must not count"); return
        }
    }

    @Test func giveUpHappensExactlyAtTheWindowEdge() {
        let clock = ManualGovernorClock()
        var tracker = RestartTracker(policy: RestartPolicy(mode: .always, maxRestarts: 1, window: .milliseconds(100),
                                                           backoff: noJitter()))
        #expect(tracker.decide(exit: crash, ranFor: nil, now: clock.now()) == .restart(after: .zero, attempt: 0))
        clock.advance(by: .milliseconds(99))
        guard case .giveUp = tracker.decide(exit: crash, ranFor: nil, now: clock.now()) else {
            Issue.record("99 ms after the first restart the window is still full"); return
        }
    }

    @Test func aHealthyRunResetsTheBackoff() {
        let clock = ManualGovernorClock()
        var tracker = RestartTracker(policy: RestartPolicy(mode: .always, maxRestarts: 100, window: .seconds(1),
                                                           backoff: noJitter(), resetAfter: .seconds(5)))
        for _ in 0..<4 { _ = tracker.decide(exit: crash, ranFor: .milliseconds(10), now: clock.now()) }
        #expect(tracker.attempt == 4)
        clock.advance(by: .seconds(5))
        #expect(tracker.decide(exit: crash, ranFor: .milliseconds(4_999), now: clock.now())
                == .restart(after: .milliseconds(800), attempt: 4))
        #expect(tracker.decide(exit: crash, ranFor: .seconds(5), now: clock.now())
                == .restart(after: .zero, attempt: 0))
    }

    @Test func onFailureLeavesACleanExitDown() {
        var tracker = RestartTracker(policy: RestartPolicy(mode: .onFailure))
        #expect(tracker.decide(exit: .exited(code: 0), ranFor: nil, now: .zero) == .leaveDown)
        #expect(tracker.decide(exit: .exited(code: 1), ranFor: nil, now: .zero) == .restart(after: .zero, attempt: 0))
    }

    @Test func onFailureRestartsAFailedStart() {
        var tracker = RestartTracker(policy: RestartPolicy(mode: .onFailure))
        #expect(tracker.decide(exit: nil, ranFor: nil, now: .zero) == .restart(after: .zero, attempt: 0))
    }

    @Test func alwaysRestartsACleanExitAndNeverRestartsNothing() {
        var always = RestartTracker(policy: RestartPolicy(mode: .always))
        var never = RestartTracker(policy: .never)
        #expect(always.decide(exit: .exited(code: 0), ranFor: nil, now: .zero) == .restart(after: .zero, attempt: 0))
        #expect(never.decide(exit: crash, ranFor: nil, now: .zero) == .leaveDown)
    }
}

@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_ManualClock {
    @Test func sleepersWakeOnlyWhenTheirDeadlineIsReached() async throws {
        let clock = ManualGovernorClock()
        let woke = ManualClockLog()
        let task = Task {
            try await clock.sleep(for: .milliseconds(250))
            await woke.mark(clock.now())
        }
        #expect(await clock.waitForSleepers(1))
        clock.advance(by: .milliseconds(249))
        #expect(clock.sleeperCount == 1)
        clock.advance(by: .milliseconds(1))
        try await task.value
        #expect(await woke.times == [.milliseconds(250)])
    }

    @Test func cancellingASleeperThrowsAndRemovesIt() async throws {
        let clock = ManualGovernorClock()
        let task = Task { try await clock.sleep(for: .seconds(1)) }
        #expect(await clock.waitForSleepers(1))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(clock.sleeperCount == 0)
    }
}

actor ManualClockLog {
    var times: [Duration] = []
    func mark(_ t: Duration) { times.append(t) }
}
