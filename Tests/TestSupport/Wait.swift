import Foundation
import Testing

/// Why a wait ended without its condition.
public struct WaitTimedOut: Error, CustomStringConvertible {
    public let what: String
    public let after: Duration
    public var description: String { "timed out after \(after) waiting for \(what)" }
}

/// Waits until `condition` holds, checking every `pollEvery`, and fails (throws) naming `what` after `timeout`.
/// Tests wait for conditions with a deadline, never for a fixed time.
@discardableResult
public func waitUntil(
    _ what: String, timeout: Duration = .seconds(5), pollEvery: Duration = .milliseconds(5),
    _ condition: () async throws -> Bool
) async throws -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    while true {
        if try await condition() { return clock.now - start }
        if clock.now - start >= timeout { throw WaitTimedOut(what: what, after: timeout) }
        try await Task.sleep(for: pollEvery)
    }
}

/// The synchronous form, for code that runs on its own thread.
@discardableResult
public func waitUntilSync(
    _ what: String, timeout: Duration = .seconds(5), pollEvery: Duration = .milliseconds(5),
    _ condition: () throws -> Bool
) throws -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    while true {
        if try condition() { return clock.now - start }
        if clock.now - start >= timeout { throw WaitTimedOut(what: what, after: timeout) }
        Thread.sleep(forTimeInterval: Double(pollEvery.components.attoseconds) / 1e18 + Double(pollEvery.components.seconds))
    }
}

/// Runs a blocking body on a thread of its own (never on the cooperative pool) and awaits its result,
/// failing with `what` if it has not finished by `timeout`. The thread is left to finish on its own then,
/// so a hung libzmq call fails the test instead of stalling the run.
public func onThread<R: Sendable>(
    _ what: String, timeout: Duration = .seconds(10), _ body: @escaping @Sendable () throws -> R
) async throws -> R {
    try await withCheckedThrowingContinuation { (cont: CheckedContinuation<R, any Error>) in
        let once = ResumeOnce(cont)
        let t = Thread {
            do { once.resume(.success(try body())) } catch { once.resume(.failure(error)) }
        }
        t.start()
        DispatchQueue.global().asyncAfter(deadline: .now() + Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18) {
            once.resume(.failure(WaitTimedOut(what: what, after: timeout)))
        }
    }
}

final class ResumeOnce<R: Sendable>: @unchecked Sendable {
    private var cont: CheckedContinuation<R, any Error>?
    private let lock = NSLock()
    init(_ c: CheckedContinuation<R, any Error>) { cont = c }
    func resume(_ r: Result<R, any Error>) {
        lock.lock()
        let c = cont
        cont = nil
        lock.unlock()
        c?.resume(with: r)
    }
}
