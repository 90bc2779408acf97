import Foundation
import Testing
import ScheduleZeroTesting

/// The executor `.leakChecked` suites run their tests on (flake 23 in docs/TESTING.md): tests run on its
/// threads, not on the cooperative pool, and bodies that block or compute for seconds leave it free.
@Suite(.tags(.regression, .unit), .leakChecked)
struct regression_unit_TestExecutor {
    static func onTestThread() -> Bool { TestExecutor.shared.isCurrent }

    @Test func aSynchronousTestBodyRunsOnTheTestExecutor() {
        #expect(Self.onTestThread())
    }

    @Test func anAsyncTestBodyAndItsChildTasksStayOnTheTestExecutorAcrossSuspensions() async throws {
        #expect(Self.onTestThread())
        try await Task.sleep(for: .milliseconds(5))
        #expect(Self.onTestThread(), "after a sleep")
        let children = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 { group.addTask { Self.onTestThread() } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(children == [true, true, true, true])
    }

    /// Two bodies that held their threads for seconds took the whole cooperative pool (one thread per core,
    /// two here) and everything else in the process waited 6-17 s. On an executor of 8 threads (the class
    /// `TestExecutor.shared` is; its own size follows SZ_TEST_THREADS), all of them but the two this test needs
    /// (its own body, which waits for the holders, and the short job) can be held while the short job still
    /// starts at once.
    @Test func bodiesHoldingAllButTwoThreadsLeaveAShortJobStartingAtOnce() async throws {
        let executor = TestExecutor(threads: 8)
        defer { executor.shutDown() }
        let held = executor.threadCount - 2
        let release = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        let clock = ContinuousClock()
        let outcome = await withTaskExecutorPreference(executor) {
            await withTaskGroup(of: Duration?.self) { group in
                for _ in 0..<held {
                    group.addTask {
                        holding.signal()
                        _ = release.wait(timeout: .now() + 10)  // a body that blocks its thread
                        return nil
                    }
                }
                // Every holder on a thread of its own (bounded: a broken executor fails here, not hangs).
                let deadline = DispatchTime.now() + 20
                let allHolding = (0..<held).allSatisfy { _ in holding.wait(timeout: deadline) == .success }
                let asked = clock.now
                group.addTask { clock.now - asked }
                var started: Duration?
                for await r in group {
                    if let r {
                        started = r
                        for _ in 0..<held { release.signal() }
                    }
                }
                return allHolding ? started : nil
            }
        }
        let started = try #require(outcome, "the holders never all held a thread")
        #expect(started < .seconds(5), "the short job started after \(started), once a holder gave up its thread")
    }
}
