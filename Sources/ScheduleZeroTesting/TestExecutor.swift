import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the tests of a `.leakChecked` suite run: a task executor of a fixed number of threads (48 by
/// default, `SZ_TEST_THREADS` to change), instead of Swift's cooperative pool: more than the tests
/// `run_tests.sh` lets run at once (8 per core), so that bodies that each block still leave threads for
/// their child tasks, their sleeps' continuations and the suites' leak checks.
///
/// The cooperative pool has one thread per core, two on the machines this suite runs on. It is sized for
/// work that computes, and a test process does other work: synchronous test bodies that compute for seconds
/// (a 100,000-request report, a scan of every test source), blocking reads of /proc, folder removals. Two such
/// bodies at once took both threads, and every other test of the process waited: stacks taken by
/// `PoolWatchdog` showed 6-17 s stalls in a busy run, which ran out the 4-10 s windows of tests that measure
/// how fast something answers (docs/TESTING.md, flake 23). On this executor such a body holds one thread of
/// 48, and the kernel shares the cores among all of them, as it does among the processes under test.
///
/// The suite's tests are child tasks of the suite's scope, so they inherit the preference
/// (`withTaskExecutorPreference`); so do their own child tasks. Detached and other unstructured tasks,
/// Dispatch queues, `@MainActor` code and actors with an executor of their own still run where they would.
/// Jobs run first in, first out; priorities are not looked at. Threads have the default stack (8 MiB): test
/// bodies in debug builds recurse deeply (the JSON codec's 256 levels).
public final class TestExecutor: TaskExecutor, @unchecked Sendable {
    /// The executor `.leakChecked` suites run on.
    public static let shared = TestExecutor(threads: {
        let asked = ProcessInfo.processInfo.environment["SZ_TEST_THREADS"].flatMap { Int($0) } ?? 48
        return min(max(asked, 1), 256)
    }())

    public let threadCount: Int
    private let lock = NSCondition()
    private var queue: [UnownedJob] = []
    private var head = 0
    private var stopping = false
    private var threads: Set<pthread_t> = []

    /// True on one of this executor's threads.
    public var isCurrent: Bool { lock.lock(); defer { lock.unlock() }; return threads.contains(pthread_self()) }
    private var running = 0

    public init(threads: Int) {
        threadCount = threads
        running = threads
        for k in 0..<threads {
            let t = Thread { [unowned self] in
                self.lock.lock()
                self.threads.insert(pthread_self())
                self.lock.unlock()
                self.serve()
            }
            t.start()
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        lock.lock()
        precondition(!stopping || running > 0, "a job enqueued on a TestExecutor that has shut down would never run")
        queue.append(unowned)
        lock.signal()
        lock.unlock()
    }

    /// How many jobs wait for a thread now.
    public var waiting: Int { lock.lock(); defer { lock.unlock() }; return queue.count - head }

    /// Lets the threads end once no job is left; returns when they have. The shared executor is never
    /// shut down.
    public func shutDown() {
        precondition(!isCurrent, "TestExecutor.shutDown() on one of its own threads would wait for itself")
        lock.lock()
        stopping = true
        lock.broadcast()
        while running > 0 { lock.wait() }
        lock.unlock()
    }

    private func serve() {
        while true {
            lock.lock()
            while head == queue.count && !stopping { lock.wait() }
            if head == queue.count {
                running -= 1
                lock.broadcast()
                lock.unlock()
                return
            }
            let job = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            lock.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
