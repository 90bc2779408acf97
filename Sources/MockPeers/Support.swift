import Foundation
import ScheduleZeroWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A POSIX thread that can be joined with a deadline. Every blocking loop of the mock peers runs on one of
/// these, never on Swift's cooperative pool.
public final class LoopThread: @unchecked Sendable {
    private var tid = pthread_t()
    private let done = Latch()
    public let name: String

    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        final class Box { let body: @Sendable () -> Void; let done: Latch
            init(_ b: @escaping @Sendable () -> Void, _ d: Latch) { body = b; done = d } }
        let box = Unmanaged.passRetained(Box(body, done)).toOpaque()
        let rc = pthread_create(&tid, nil, { raw in
            let b = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            b.body()
            b.done.open()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(tid)
    }

    /// Waits until the thread's body returned; `false` when `timeout` passed first.
    @discardableResult
    public func join(timeout: Duration) -> Bool { done.wait(timeout: timeout) }
    public var isFinished: Bool { done.isOpen }
}

/// A one-way gate: closed until `open()`, then open for good. Waits have deadlines (on the monotonic clock).
/// The mutex and the condition are allocated, not stored properties passed by `&`, which Swift does not
/// keep at one address.
public final class Latch: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var opened = false

    public init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func open() {
        pthread_mutex_lock(mutex)
        opened = true
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }

    public var isOpen: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return opened
    }

    /// Waits until open or `timeout`; returns whether it is open.
    @discardableResult
    public func wait(timeout: Duration) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let (s, atto) = timeout.components
        var sec = now.tv_sec + Int(max(0, s))
        var nsec = now.tv_nsec + Int(max(0, atto) / 1_000_000_000)
        if nsec >= 1_000_000_000 { sec += 1; nsec -= 1_000_000_000 }
        var deadline = timespec(tv_sec: sec, tv_nsec: nsec)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !opened {
            if pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT { break }
        }
        return opened
    }
}

/// Where a peer's event lines go: each event is one JSON object on one line, `"event"` first.
public final class EventLog: Sendable {
    public typealias Sink = @Sendable (String) -> Void
    private let sinks: [Sink]

    public init(_ sinks: [Sink]) { self.sinks = sinks }
    public static let none = EventLog([])

    /// Writes whole lines to a file descriptor with one `write` each (lines under PIPE_BUF never interleave).
    public static func fileDescriptor(_ fd: Int32) -> Sink {
        { line in
            var bytes = Array(line.utf8)
            bytes.append(0x0A)
            var off = 0
            while off < bytes.count {
                let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }
    }

    /// Appends lines to a file (created if missing).
    public static func appending(to path: String) throws -> Sink {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PeerError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        final class FD: @unchecked Sendable { let fd: Int32; init(_ f: Int32) { fd = f }; deinit { close(fd) } }
        let holder = FD(fd)
        let w = fileDescriptor(fd)
        return { line in withExtendedLifetime(holder) { w(line) } }
    }

    /// Collects lines in memory (for in-process tests).
    public final class Memory: Sendable {
        private let lines = Mutex<[String]>([])
        public init() {}
        public var sink: Sink { { [self] line in lines.withLock { $0.append(line) } } }
        public var all: [String] { lines.withLock { $0 } }
        /// The events parsed back, in order.
        public var events: [[String: JSONValue]] { all.compactMap { (try? JSON.parse($0))?.objectValue } }
    }

    public var isEnabled: Bool { !sinks.isEmpty }

    public func emit(_ event: String, _ fields: [String: JSONValue] = [:]) {
        guard !sinks.isEmpty else { return }
        let line = EventLog.line(event, fields)
        for s in sinks { s(line) }
    }

    /// `{"event":"<event>",<other fields sorted>}`.
    public static func line(_ event: String, _ fields: [String: JSONValue]) -> String {
        var f = fields
        f["event"] = nil
        var rest = JSON.encode(.object(f))
        rest.removeFirst()  // "{"
        var out = Array("{\"event\":".utf8) + JSON.encode(.string(event))
        if rest.count > 1 { out.append(UInt8(ascii: ",")) }
        out += rest
        return String(decoding: out, as: UTF8.self)
    }
}

/// Errors of the mock peers, worded to say what to do.
public enum PeerError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidFault(String)
    case invalidJob(String)
    case bind(endpoint: String, reason: String)
    case io(String)
    case startTimedOut(String)

    public var description: String {
        switch self {
        case .invalidFault(let s): "invalid fault: \(s)"
        case .invalidJob(let s): "invalid job: \(s)"
        case .bind(let e, let r): "cannot bind \(e): \(r)"
        case .io(let s): s
        case .startTimedOut(let s): s
        }
    }
}

/// Seconds since the Unix epoch, for event timestamps.
func unixTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Sleeps `d`, waking early (returning `true`) when `stop` opens.
@discardableResult
func sleep(_ d: Duration, unless stop: Latch) -> Bool {
    guard d > .zero else { return stop.isOpen }
    return stop.wait(timeout: d)
}

/// Writes `text` to `path` atomically (temporary file in the same folder, then rename).
public func writeFileAtomically(_ path: String, _ text: String) throws {
    let tmp = "\(path).tmp.\(getpid())"
    try Data(text.utf8).write(to: URL(fileURLWithPath: tmp))
    guard rename(tmp, path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(tmp)
        throw PeerError.io("cannot rename \(tmp) to \(path): \(reason)")
    }
}

extension Duration {
    static func ms(_ v: Int64) -> Duration { .milliseconds(v) }
    var wholeMilliseconds: Int64 {
        let (s, a) = components
        return s * 1000 + a / 1_000_000_000_000_000
    }
}
