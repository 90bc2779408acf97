import CZeroMQ
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A libzmq context: the owner of I/O threads and of every socket made from it.
///
/// A context is thread-safe (libzmq's contexts are), so it is `Sendable`. Sockets made from it are not.
///
/// Termination cannot hang forever, unlike a bare `zmq_ctx_term`: `terminate(timeout:)` first shuts the
/// context down (every blocking call on its sockets returns `ETERM`), then closes each socket still open
/// with linger 0, then terminates. Sockets default to linger 0 (`ZMQ_BLOCKY` off) instead of libzmq's
/// infinite linger; a socket that wants to flush sets `linger` itself.
public final class Context: @unchecked Sendable {
    struct State {
        var handle: UnsafeMutableRawPointer?
        var sockets: [ObjectIdentifier: SocketCore] = [:]
        var nextSocketNumber = 0
    }

    private let state: Mutex<State>
    /// How many contexts of this process are alive (created and not yet terminated).
    public static var liveCount: Int { live.load(ordering: .relaxed) }
    private static let live = Atomic<Int>(0)
    /// Contexts whose termination is still finishing on a thread of its own, because a socket's owner was
    /// inside libzmq past the deadline (see `terminate(timeout:)`). Non-zero at exit means a leak.
    public static var terminatingCount: Int { terminating.load(ordering: .relaxed) }
    private static let terminating = Atomic<Int>(0)
    /// Labels of the contexts still terminating, for leak reports.
    public let label: String
    /// Set when libzmq's `zmq_ctx_term` has returned (on `terminate`'s own thread).
    private let termination = Completion()
    /// Whether libzmq has finished the termination. `terminate` returning normally implies it; after
    /// `terminationTimedOut` it becomes true once the last socket's owner or lingering message lets go.
    public var terminationFinished: Bool { termination.isDone }

    /// - Parameters:
    ///   - ioThreads: libzmq I/O threads for this context.
    ///   - blocky: `false` (the default) makes new sockets linger 0; `true` keeps libzmq's infinite linger.
    public init(ioThreads: Int32 = 1, blocky: Bool = false, label: String = #fileID + ":" + String(#line)) throws {
        self.label = label
        guard let h = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        if zmq_ctx_set(h, ZMQ_IO_THREADS, ioThreads) != 0 || zmq_ctx_set(h, ZMQ_BLOCKY, blocky ? 1 : 0) != 0 {
            let e = ZMQError.last("zmq_ctx_set")
            zmq_ctx_term(h)
            throw e
        }
        state = Mutex(State(handle: h))
        Context.live.add(1, ordering: .relaxed)
    }

    deinit {
        try? terminate(timeout: .seconds(5))
    }

    /// Whether `terminate` has run.
    public var isTerminated: Bool { state.withLock { $0.handle == nil } }

    /// How many sockets of this context are open.
    public var openSocketCount: Int { state.withLock { $0.sockets.count } }

    /// Makes a socket of this context. The socket belongs to the caller's thread or actor.
    public func socket(_ type: SocketType) throws -> Socket {
        try state.withLock { s in
            guard let h = s.handle else { throw ZMQUsageError.contextTerminated }
            guard let sh = zmq_socket(h, type.rawValue) else { throw ZMQError.last("zmq_socket") }
            s.nextSocketNumber += 1
            let core = SocketCore(handle: sh, type: type, label: "\(type)#\(s.nextSocketNumber)", context: self)
            s.sockets[ObjectIdentifier(core)] = core
            return Socket(core: core)
        }
    }

    func forget(_ core: SocketCore) {
        _ = state.withLock { $0.sockets.removeValue(forKey: ObjectIdentifier(core)) }
    }

    /// Terminates the context. Idempotent; safe from any thread.
    ///
    /// Shuts the context down so blocked calls on its sockets return `ETERM`, closes every socket still open
    /// with linger 0, then calls `zmq_ctx_term`. Throws `terminationTimedOut` if a socket's owner kept it
    /// busy past `timeout` (the context is then left to be finished by the last socket's close).
    public func terminate(timeout: Duration = .seconds(10)) throws {
        let taken: (UnsafeMutableRawPointer, [SocketCore])? = state.withLock { s in
            guard let h = s.handle else { return nil }
            s.handle = nil
            let open = Array(s.sockets.values)
            s.sockets.removeAll()
            return (h, open)
        }
        guard let (handle, open) = taken else { return }
        // Linger 0 before the shutdown, on every socket nobody is inside: after it, libzmq may refuse the
        // option with ETERM, and a socket closed with infinite linger and a message pending keeps
        // zmq_ctx_term waiting for a peer that may never come.
        for core in open { core.setLingerZeroIfIdle() }
        zmq_ctx_shutdown(handle)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var stillOpen = 0
        for core in open where !core.forceClose(until: deadline) {
            stillOpen += 1
        }
        Context.live.subtract(1, ordering: .relaxed)
        if stillOpen > 0 {
            // The owners still hold those sockets inside a libzmq call that ETERM will end; finish the
            // termination on a thread of its own so this caller is not held hostage.
            finishTermination(handle)
            throw ZMQUsageError.terminationTimedOut(openSockets: stillOpen, after: timeout)
        }
        // Every socket is closed now. With linger 0 zmq_ctx_term only waits for libzmq's reaper, but a socket
        // whose owner was inside a call at the shutdown kept the linger it had (libzmq refuses options with
        // ETERM after it), and one with infinite linger and a message for an absent peer would hold
        // zmq_ctx_term for good. So it runs on a thread of its own, awaited until the deadline: the caller (a
        // deinit on the cooperative pool, say) is never held beyond it.
        finishTermination(handle)
        let remaining = deadline - clock.now
        if !termination.wait(timeout: max(remaining, .milliseconds(200))) {
            throw ZMQUsageError.terminationTimedOut(openSockets: 0, after: timeout)
        }
    }

    /// Runs `zmq_ctx_term` on a thread of its own; `termination` completes when it returns. Captures no
    /// `self`: `terminate` also runs from `deinit`.
    private func finishTermination(_ handle: UnsafeMutableRawPointer) {
        let box = UnsafeSendableHandle(handle)
        let finished = termination
        Context.terminating.add(1, ordering: .relaxed)
        Thread.detach {
            while zmq_ctx_term(box.pointer) != 0 && zmq_errno() == EINTR {}
            Context.terminating.subtract(1, ordering: .relaxed)
            finished.complete()
        }
    }
}

/// A one-shot flag another thread can wait on with a timeout.
final class Completion: Sendable {
    private let done = Atomic<Bool>(false)
    private let signal = DispatchSemaphore(value: 0)

    var isDone: Bool { done.load(ordering: .acquiring) }

    func complete() {
        done.store(true, ordering: .releasing)
        signal.signal()
    }

    /// True if completed within `timeout`.
    func wait(timeout: Duration) -> Bool {
        isDone || signal.wait(timeout: .now() + .milliseconds(Int(timeout.wholeMilliseconds))) == .success
    }
}

struct UnsafeSendableHandle: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ p: UnsafeMutableRawPointer) { pointer = p }
}

enum Thread {
    /// Runs `body` on a new detached POSIX thread.
    static func detach(_ body: @escaping @Sendable () -> Void) {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            let b = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            b.body()
            return nil
        }, box)
        if rc == 0 { pthread_detach(tid) } else { Unmanaged<Box>.fromOpaque(box).takeRetainedValue().body() }
    }
}
