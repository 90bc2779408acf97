import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A serial executor that runs its jobs on one POSIX thread of its own.
///
/// Blocking libzmq calls (`zmq_msg_recv` with a timeout, `zmq_poll`, `zmq_ctx_term`) must never run on
/// Swift's cooperative pool: it has one thread per core (two here), so two blocked calls would freeze every
/// task. An actor whose `unownedExecutor` is a `DedicatedThread` runs all its methods on that thread, so its
/// blocking calls block only it. The thread ends when `shutdown()` is called (or the executor is released).
public final class DedicatedThread: SerialExecutor, @unchecked Sendable {
    private struct Queue {
        var jobs: [UnownedJob] = []
        var head = 0
        var stopping = false
    }

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>
    private var queue = Queue()  // guarded by `mutex`
    private var thread = pthread_t()
    private let finished = Atomic<Bool>(false)
    public let name: String

    /// Threads of this kind alive in the process (for leak checks).
    public static var liveCount: Int { live.load(ordering: .relaxed) }
    private static let live = Atomic<Int>(0)

    public init(name: String = "zmq") {
        self.name = name
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
        DedicatedThread.live.add(1, ordering: .relaxed)
        let retained = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<DedicatedThread>.fromOpaque(raw!).takeRetainedValue()
            me.runLoop()
            return nil
        }, retained)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(thread)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        pthread_mutex_lock(mutex)
        queue.jobs.append(unowned)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Lets the thread finish the jobs already queued, then end.
    public func shutdown() {
        pthread_mutex_lock(mutex)
        queue.stopping = true
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    public var isFinished: Bool { finished.load(ordering: .acquiring) }

    private func runLoop() {
        while true {
            pthread_mutex_lock(mutex)
            while queue.head == queue.jobs.count && !queue.stopping {
                pthread_cond_wait(cond, mutex)
            }
            if queue.head == queue.jobs.count {  // stopping and drained
                pthread_mutex_unlock(mutex)
                break
            }
            let job = queue.jobs[queue.head]
            queue.head += 1
            if queue.head > 64 && queue.head * 2 > queue.jobs.count {
                queue.jobs.removeFirst(queue.head)
                queue.head = 0
            }
            pthread_mutex_unlock(mutex)
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
        finished.store(true, ordering: .releasing)
        DedicatedThread.live.subtract(1, ordering: .relaxed)
    }
}
