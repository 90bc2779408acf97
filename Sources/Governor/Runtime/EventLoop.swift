// The governor's event loop: ONE thread, one epoll set, for everything the governor waits on (issue 15):
// children's exits (their pidfds: readable once the child has exited), the control socket (its ZMQ_FD,
// edge-triggered), the handled signals (a signalfd), and timers (restart backoff, stop timeouts, liveness
// periods: a table of deadlines whose soonest one is the epoll_wait timeout). Nothing wakes it when nothing
// happens: no poll interval anywhere, the wait is -1 (forever) while no timer is due.
//
// - Callbacks run on the loop thread, one at a time, and must not block: a blocking call (a ping or HTTP
//   check, waiting for a cgroup to empty) goes to `BlockingPool` (a fixed number of threads).
// - Other threads hand work to the loop with `post` (an eventfd wakes the wait); `perform` awaits it.
// - Children are spawned here (`perform { Spawner.spawn(...) }`): the loop thread lives as long as the
//   process, so a `PR_SET_PDEATHSIG` set in the child is sent when the governor dies, not when some
//   thread of the cooperative pool happens to exit (docs/ARCHITECTURE.md, "Threads").
// - Lock: `lock` guards the tables only; no callback runs under it.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

public final class EventLoop: @unchecked Sendable {
    /// The one loop of this process, started on first use.
    public static let shared = EventLoop()

    /// A registered descriptor or timer, to cancel it.
    public struct Token: Hashable, Sendable { let id: UInt64 }

    private struct Watch {
        let fd: CInt
        let callback: (UInt32) -> Void
    }

    private struct Timer {
        let deadline: ContinuousClock.Instant
        let callback: () -> Void
    }

    private let lock = NSLock()
    private var watches: [UInt64: Watch] = [:]
    private var timers: [UInt64: Timer] = [:]
    private var jobs: [() -> Void] = []
    private var nextID: UInt64 = 1
    private var wakePending = false
    private let epollFD: CInt
    private let wakeFD: CInt
    private static let wakeID: UInt64 = 0
    private let tid = Atomic<Int32>(0)
    private var thread: pthread_t?

    private init() {
        epollFD = Epoll.create()
        wakeFD = Epoll.eventFD()
        precondition(epollFD >= 0 && wakeFD >= 0, "the governor's event loop needs epoll and eventfd")
        _ = Epoll.add(epollFD, wakeFD, id: Self.wakeID, events: Epoll.inEvent)
        let started = DispatchSemaphore(value: 0)
        let t = Thread { [self] in
            lock.withLock { thread = pthread_self() }
            tid.store(Self.currentThreadID(), ordering: .releasing)
            let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if comm >= 0 { _ = Glibc.write(comm, "governor-loop", 13); close(comm) }
            started.signal()
            run()
        }
        t.name = "governor-loop"
        t.stackSize = 512 * 1024
        t.start()
        started.wait()
    }

    /// The loop thread's kernel id (its /proc/self/task entry).
    public var threadID: Int32 { tid.load(ordering: .acquiring) }

    /// The kernel id of the calling thread (the last part of /proc/thread-self's target: PID/task/TID).
    static func currentThreadID() -> Int32 {
        var buffer = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/thread-self", &buffer, buffer.count - 1)
        guard n > 0 else { return 0 }
        let text = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Int32(text.split(separator: "/").last ?? "") ?? 0
    }

    /// Whether the caller runs on the loop thread.
    public var isCurrent: Bool {
        guard let t = lock.withLock({ thread }) else { return false }
        return pthread_equal(t, pthread_self()) != 0
    }

    // MARK: registering

    /// Watches `fd` for `events` (Epoll.inEvent, | Epoll.edgeTriggered ...); `callback` runs on the loop thread
    /// with the events seen. nil when epoll refuses the descriptor. The caller keeps the descriptor open until
    /// after `unwatch`.
    func watch(_ fd: CInt, events: UInt32 = Epoll.inEvent, _ callback: @escaping (UInt32) -> Void) -> Token? {
        let id: UInt64 = lock.withLock {
            defer { nextID += 1 }
            watches[nextID] = Watch(fd: fd, callback: callback)
            return nextID
        }
        guard Epoll.add(epollFD, fd, id: id, events: events) else {
            _ = lock.withLock { watches.removeValue(forKey: id) }
            return nil
        }
        return Token(id: id)
    }

    /// Stops watching (events already collected for it are dropped). Any thread.
    func unwatch(_ token: Token) {
        guard let watch = lock.withLock({ watches.removeValue(forKey: token.id) }) else { return }
        Epoll.remove(epollFD, watch.fd)
    }

    /// Runs `callback` on the loop thread once `delay` has passed (unless cancelled first). Any thread.
    @discardableResult
    public func schedule(after delay: Duration, _ callback: @escaping () -> Void) -> Token {
        let deadline = ContinuousClock.now + delay
        let id: UInt64 = lock.withLock {
            defer { nextID += 1 }
            timers[nextID] = Timer(deadline: deadline, callback: callback)
            return nextID
        }
        if !isCurrent { wake() }
        return Token(id: id)
    }

    /// Cancels a timer; false when it has already run (or is running).
    @discardableResult
    public func cancel(_ token: Token) -> Bool {
        lock.withLock { timers.removeValue(forKey: token.id) != nil }
    }

    /// Runs `job` on the loop thread, soon. Any thread.
    public func post(_ job: @escaping () -> Void) {
        lock.withLock { jobs.append(job) }
        wake()
    }

    /// Runs `body` on the loop thread and returns its result. It must not block for long.
    public func perform<T: Sendable>(_ body: @escaping () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            nonisolated(unsafe) let c = c
            nonisolated(unsafe) let body = body
            post { c.resume(with: Result { try body() }) }
        }
    }

    /// Suspends for `duration` on the loop's timers; throws CancellationError when the task is cancelled.
    public func sleep(for duration: Duration) async throws {
        let once = OneShot<Void>()
        let token = Mutex<Token?>(nil)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                guard once.arm(c) else { return }
                let t = schedule(after: duration) { once.fire(.success(())) }
                token.withLock { $0 = t }
                if once.isDone { cancel(t) }  // cancelled meanwhile
            }
        } onCancel: {
            once.fire(.failure(CancellationError()))
            if let t = token.withLock({ $0 }) { cancel(t) }
        }
    }

    /// Suspends until `fd` is readable (true) or `timeout` has passed (false).
    public func waitReadable(_ fd: CInt, timeout: Duration) async -> Bool {
        let once = OneShot<Bool>()
        let result: Bool? = try? await withCheckedThrowingContinuation { (c: CheckedContinuation<Bool, any Error>) in
            guard once.arm(c) else { return }
            post { [self] in
                let holder = Mutex<(Token?, Token?)>((nil, nil))
                let finish: (Bool) -> Void = { [self] readable in
                    let (w, t) = holder.withLock { $0 }
                    if let w { unwatch(w) }
                    if let t { cancel(t) }
                    once.fire(.success(readable))
                }
                guard let w = watch(fd, events: Epoll.inEvent, { _ in finish(true) }) else {
                    once.fire(.success(Self.pollNow(fd)))
                    return
                }
                let t = schedule(after: timeout) { finish(false) }
                holder.withLock { $0 = (w, t) }
            }
        }
        return result ?? false
    }

    private static func pollNow(_ fd: CInt) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 1
    }

    // MARK: the loop

    private func wake() {
        let needed: Bool = lock.withLock {
            if wakePending { return false }
            wakePending = true
            return true
        }
        guard needed else { return }
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Milliseconds until the soonest timer (rounded up, so a wake is never early), -1 when there is none.
    private func timeoutMs() -> CInt {
        lock.withLock {
            guard !jobs.isEmpty || !timers.isEmpty else { return -1 }
            if !jobs.isEmpty { return 0 }
            let soonest = timers.values.map(\.deadline).min()!
            let left = soonest - ContinuousClock.now
            if left <= .zero { return 0 }
            let (s, atto) = left.components
            let ms = Double(s) * 1000 + Double(atto) / 1e15
            return CInt(min(ms.rounded(.up), Double(Int32.max)))
        }
    }

    private func run() {
        while true {
            guard let ready = Epoll.waitEvents(epollFD, max: 64, timeoutMs: timeoutMs()) else {
                usleep(1_000)  // EBADF/EINVAL cannot happen with our own set; do not spin if it does
                continue
            }
            for (id, events) in ready {
                if id == Self.wakeID {
                    var value: UInt64 = 0
                    lock.withLock {
                        _ = Glibc.read(wakeFD, &value, 8)
                        wakePending = false
                    }
                    continue
                }
                // Looked up per event: an earlier callback of this round may have unwatched it.
                guard let watch = lock.withLock({ watches[id] }) else { continue }
                watch.callback(events)
            }
            let now = ContinuousClock.now
            let due: [(ContinuousClock.Instant, UInt64, () -> Void)] = lock.withLock {
                let ids = timers.filter { $0.value.deadline <= now }
                for id in ids.keys { timers[id] = nil }
                return ids.map { ($0.value.deadline, $0.key, $0.value.callback) }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
            }
            for (_, _, callback) in due { callback() }
            let work: [() -> Void] = lock.withLock {
                defer { jobs.removeAll(keepingCapacity: true) }
                return jobs
            }
            for job in work { job() }
        }
    }
}

/// A continuation resumed exactly once, by whichever comes first (a timer, a cancellation, an event);
/// a result that comes before the continuation is armed resumes it as soon as it is.
final class OneShot<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var early: Result<T, any Error>?
    private var done = false

    var isDone: Bool { lock.withLock { done } }

    /// Stores the continuation; false when a result came first (then it has been resumed with it).
    func arm(_ c: CheckedContinuation<T, any Error>) -> Bool {
        let pending: Result<T, any Error>? = lock.withLock {
            if let e = early { early = nil; return e }
            continuation = c
            return nil
        }
        if let pending { c.resume(with: pending); return false }
        return true
    }

    func fire(_ result: Result<T, any Error>) {
        let c: CheckedContinuation<T, any Error>? = lock.withLock {
            if done { return nil }
            done = true
            guard let c = continuation else { early = result; return nil }
            continuation = nil
            return c
        }
        c?.resume(with: result)
    }
}

/// A fixed number of threads for the governor's blocking calls (one ping or HTTP check, waiting for a
/// cgroup to empty, removing cgroups), whatever the number of children: all started on first use and kept,
/// each asleep on a condition while there is nothing to do.
public final class BlockingPool: @unchecked Sendable {
    public static let shared = BlockingPool(threads: 4)
    public let threads: Int
    private let condition = NSCondition()
    private var queue: [() -> Void] = []
    private var started = false

    init(threads: Int) { self.threads = threads }

    public func submit(_ job: @escaping () -> Void) {
        condition.lock()
        queue.append(job)
        let start = !started
        started = true
        condition.signal()
        condition.unlock()
        if start {
            for i in 0..<threads {
                let t = Thread { [self] in
                    let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
                    if comm >= 0 { _ = Glibc.write(comm, "governor-pool", 13); close(comm) }
                    work()
                }
                t.name = "governor-pool-\(i)"
                t.stackSize = 512 * 1024
                t.start()
            }
        }
    }

    /// Runs `body` on a pool thread and suspends the task until it returns.
    public func run<T: Sendable>(_ body: @escaping () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            nonisolated(unsafe) let c = c
            nonisolated(unsafe) let body = body
            submit { c.resume(returning: body()) }
        }
    }

    private func work() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let job = queue.removeFirst()
            condition.unlock()
            job()
        }
    }
}
