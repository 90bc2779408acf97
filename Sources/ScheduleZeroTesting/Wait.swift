import Foundation
import Testing

/// Thrown by `waitUntil` when its deadline passes; names what it was waiting for.
public struct WaitTimedOut: Error, CustomStringConvertible {
    public let what: String
    public let after: Duration
    public var description: String { "timed out after \(after) waiting for \(what)" }
}

/// Polls `condition` every `pollEvery` until it holds, or records an issue naming `what` and throws
/// `WaitTimedOut` after `timeout`. Tests wait for conditions with a deadline, never for a fixed time.
/// Returns how long the wait took.
@discardableResult
public func waitUntil(
    _ what: String, timeout: Duration = .seconds(30), pollEvery: Duration = .milliseconds(5),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    while true {
        if try await condition() { return clock.now - start }
        if clock.now - start >= timeout {
            let error = WaitTimedOut(what: what, after: timeout)
            Issue.record("\(error)", sourceLocation: sourceLocation)
            throw error
        }
        try await Task.sleep(for: pollEvery)
    }
}

/// The form with the timeout first, as in `waitUntil(timeout: .seconds(2), "the pid file") { ... }`.
@discardableResult
public func waitUntil(
    timeout: Duration, pollEvery: Duration = .milliseconds(5), _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws -> Duration {
    try await waitUntil(what, timeout: timeout, pollEvery: pollEvery, sourceLocation: sourceLocation, condition)
}

/// Measures how long `body` takes on the monotonic clock.
public func measure<T>(_ body: () async throws -> T) async rethrows -> (T, Duration) {
    let clock = ContinuousClock()
    let start = clock.now
    let value = try await body()
    return (value, clock.now - start)
}

extension Duration {
    /// The duration in (fractional) milliseconds.
    public var inMilliseconds: Double {
        let (s, atto) = components
        return Double(s) * 1000 + Double(atto) / 1e15
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
    _ what: String, timeout: Duration = .seconds(60), _ body: @escaping @Sendable () throws -> R
) async throws -> R {
    try await withCheckedThrowingContinuation { (cont: CheckedContinuation<R, any Error>) in
        let once = ResumeOnce(cont)
        let scope = SuiteLeakScope.current  // what the body makes still counts for the suite's leak check
        let t = Thread {
            SuiteLeakScope.$current.withValue(scope) {
                do { once.resume(.success(try body())) } catch { once.resume(.failure(error)) }
            }
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

/// Lets one body run at a time, suspending (never blocking) the others.
public actor SerialGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    public init() {}
    public func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }
    public func release() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }
}

private let exitTestGate = SerialGate()

/// Runs an exit test (`#expect(processExitsWith:)`) so that it cannot stall the other tests, and returns
/// what its child wrote with `ExitTestReport.line`.
///
/// Swift Testing 6.3 waits for an exit test's child with one blocking `readToEnd()` task per pipe (the back
/// channel, plus standard output and error when observed), each holding a thread of the cooperative pool
/// until the child exits. The pool of the default priority has one thread per core: two here, so one exit
/// test observing its output stopped every other test of the process for as long as its child ran (seen as
/// 10-19 s stalls in busy runs). The body therefore runs in a task of `.background` priority, whose jobs go
/// to a queue of their own, and is awaited through a continuation, which does not escalate that task's
/// priority back to the caller's. The gate keeps to one exit test at a time.
public func oneExitTestAtATime<R: Sendable>(_ body: @escaping @Sendable () async -> R) async -> String {
    await exitTestGate.acquire()
    _ = ExitTestReport.take()  // nothing left over from an earlier child
    _ = await withCheckedContinuation { (c: CheckedContinuation<R, Never>) in
        Task(priority: .background) { c.resume(returning: await body()) }
    }
    // Read inside the gate: the next exit test's child writes to the same file.
    let report = ExitTestReport.take()
    await exitTestGate.release()
    return report
}

/// What an exit test's child has to say, passed through a file: Swift Testing 6.3 wraps the observed
/// standard output and error in barrier values of its own and was seen returning them empty for a child
/// that had written to both before exiting 1, so a failing child's reason was lost. Exit tests run one at a
/// time per test process, so the file is named after that process (the child's parent).
public enum ExitTestReport {
    static func path(forTestProcess pid: pid_t) -> String {
        let base = ProcessInfo.processInfo.environment["SZ_TEST_TMPDIR"] ?? "/tmp"
        return "\(base)/exit-test-report-\(pid).txt"
    }

    /// In the child: appends a line (unbuffered, so it survives any way the child ends).
    public static func line(_ text: String) {
        let fd = open(path(forTestProcess: getppid()), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// In the test process, after the exit test: what the child wrote (and the file is gone).
    public static func take() -> String {
        let p = path(forTestProcess: getpid())
        defer { unlink(p) }
        return (try? String(contentsOfFile: p, encoding: .utf8)) ?? ""
    }
}

/// A small thread-safe box, for a value a test shares with a thread or a task of its own.
public final class Locked<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    public init(_ v: T) { value = v }
    public func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    public func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    public func mutate(_ f: (inout T) -> Void) { lock.lock(); f(&value); lock.unlock() }
    /// Reads and changes the value in one critical section (take a flag, count up), returning what `body` returns.
    public func withLock<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
}
