import CZeroMQ
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// libzmq socket types.
public enum SocketType: Int32, Sendable, CustomStringConvertible {
    case pair = 0, pub = 1, sub = 2, req = 3, rep = 4, dealer = 5, router = 6, pull = 7, push = 8
    case xpub = 9, xsub = 10, stream = 11

    public var description: String {
        switch self {
        case .pair: "PAIR"
        case .pub: "PUB"
        case .sub: "SUB"
        case .req: "REQ"
        case .rep: "REP"
        case .dealer: "DEALER"
        case .router: "ROUTER"
        case .pull: "PULL"
        case .push: "PUSH"
        case .xpub: "XPUB"
        case .xsub: "XSUB"
        case .stream: "STREAM"
        }
    }
}

/// Flags for one send or receive.
public struct MessageFlags: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// Do not block: fail with `EAGAIN` instead.
    public static let dontWait = MessageFlags(rawValue: ZMQ_DONTWAIT)
    /// More frames of this message follow.
    public static let sendMore = MessageFlags(rawValue: ZMQ_SNDMORE)
}

/// A pthread mutex that can be tried: the guard that refuses a second thread instead of letting two threads
/// into one libzmq socket.
final class TryLock: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    @inline(__always) func tryLock() -> Bool { pthread_mutex_trylock(m) == 0 }
    @inline(__always) func lock() { pthread_mutex_lock(m) }
    @inline(__always) func unlock() { pthread_mutex_unlock(m) }
}

/// The shared, lock-guarded part of a socket, reachable by its context for forced closing.
final class SocketCore: @unchecked Sendable {
    private let guardLock = TryLock()
    private var raw: UnsafeMutableRawPointer?  // guarded by guardLock
    let type: SocketType
    let label: String
    /// Keeps the context alive while the socket is open; cleared when it closes. Guarded by guardLock.
    private var context: Context?

    init(handle: UnsafeMutableRawPointer, type: SocketType, label: String, context: Context) {
        self.raw = handle
        self.type = type
        self.label = label
        self.context = context
    }

    var isClosed: Bool {
        guardLock.lock()
        defer { guardLock.unlock() }
        return raw == nil
    }

    /// Runs `body` with the raw handle, refusing (not waiting) when another thread is inside a call.
    @inline(__always)
    func with<R>(_ operation: @autoclosure () -> String, _ body: (UnsafeMutableRawPointer) throws -> R) throws -> R {
        guard guardLock.tryLock() else { throw ZMQUsageError.concurrentUse(socket: label, operation: operation()) }
        defer { guardLock.unlock() }
        guard let h = raw else { throw ZMQUsageError.closed(socket: label, operation: operation()) }
        return try body(h)
    }

    /// `with` without a closure, for a call that holds several sockets at once (`Poller`): the raw handle,
    /// the guard held until `release()`.
    func acquire(_ operation: @autoclosure () -> String) throws -> UnsafeMutableRawPointer {
        guard guardLock.tryLock() else { throw ZMQUsageError.concurrentUse(socket: label, operation: operation()) }
        guard let h = raw else {
            guardLock.unlock()
            throw ZMQUsageError.closed(socket: label, operation: operation())
        }
        return h
    }

    /// Lets go of the guard `acquire` took.
    func release() { guardLock.unlock() }

    /// Closes the socket. Idempotent.
    func close(linger: Duration?) {
        guardLock.lock()
        guard let h = raw else {
            guardLock.unlock()
            return
        }
        if let linger { Self.setLinger(h, linger) }
        zmq_close(h)
        raw = nil
        let ctx = context
        context = nil
        guardLock.unlock()
        ctx?.forget(self)
    }

    /// Used by the context's termination, before its shutdown: linger 0 unless the owner is inside a call.
    func setLingerZeroIfIdle() {
        guard guardLock.tryLock() else { return }
        if let h = raw { Self.setLinger(h, .zero) }
        guardLock.unlock()
    }

    /// Used by the context's termination: waits until the owner is out of libzmq, then closes with linger 0.
    /// Does not call back into the context (it holds the context's registry already).
    func forceClose(until deadline: ContinuousClock.Instant) -> Bool {
        while !guardLock.tryLock() {
            if ContinuousClock.now >= deadline { return false }
            usleep(500)
        }
        if let h = raw {
            Self.setLinger(h, .zero)
            zmq_close(h)
            raw = nil
        }
        context = nil
        guardLock.unlock()
        return true
    }

    private static func setLinger(_ raw: UnsafeMutableRawPointer, _ linger: Duration) {
        var ms = Int32(clamping: linger.wholeMilliseconds)
        zmq_setsockopt(raw, ZMQ_LINGER, &ms, MemoryLayout<Int32>.size)
    }
}

/// A libzmq socket. It belongs to one thread or actor at a time: the type is not `Sendable`, and a call made
/// while another thread is inside a call on the same socket is refused with `ZMQUsageError.concurrentUse`
/// instead of corrupting libzmq's state. Closing is idempotent and happens at the latest on `deinit`.
public final class Socket {
    let core: SocketCore

    init(core: SocketCore) { self.core = core }

    deinit { core.close(linger: nil) }

    public var type: SocketType { core.type }
    /// A short name for messages, e.g. `REQ#3`.
    public var label: String { core.label }
    public var isClosed: Bool { core.isClosed }

    /// Closes the socket; with `linger` it first sets `ZMQ_LINGER` (use `.zero` to drop unsent messages).
    public func close(linger: Duration? = nil) { core.close(linger: linger) }

    public func bind(_ endpoint: String) throws {
        try core.with("zmq_bind(\(endpoint))") { h in
            guard zmq_bind(h, endpoint) == 0 else { throw ZMQError.last("zmq_bind(\(endpoint))") }
        }
    }

    public func connect(_ endpoint: String) throws {
        try core.with("zmq_connect(\(endpoint))") { h in
            guard zmq_connect(h, endpoint) == 0 else { throw ZMQError.last("zmq_connect(\(endpoint))") }
        }
    }

    public func unbind(_ endpoint: String) throws {
        try core.with("zmq_unbind") { h in
            guard zmq_unbind(h, endpoint) == 0 else { throw ZMQError.last("zmq_unbind(\(endpoint))") }
        }
    }

    public func disconnect(_ endpoint: String) throws {
        try core.with("zmq_disconnect") { h in
            guard zmq_disconnect(h, endpoint) == 0 else { throw ZMQError.last("zmq_disconnect(\(endpoint))") }
        }
    }

    // MARK: Sending

    /// Sends one frame.
    public func send(_ bytes: some Collection<UInt8>, flags: MessageFlags = []) throws {
        try core.with("zmq_send") { h in
            let rc: Int32 = bytes.withContiguousStorageIfAvailable { buf in
                Self.sendRaw(h, buf.baseAddress, buf.count, flags.rawValue)
            } ?? Array(bytes).withUnsafeBufferPointer { buf in
                Self.sendRaw(h, buf.baseAddress, buf.count, flags.rawValue)
            }
            guard rc >= 0 else { throw ZMQError.last("zmq_send") }
        }
    }

    /// Sends one UTF-8 frame.
    public func send(_ text: String, flags: MessageFlags = []) throws {
        var text = text
        try text.withUTF8 { try send($0, flags: flags) }
    }

    /// Sends a multipart message (every frame but the last with `ZMQ_SNDMORE`).
    public func send(multipart frames: [[UInt8]], flags: MessageFlags = []) throws {
        precondition(!frames.isEmpty, "a message has at least one frame")
        for (i, frame) in frames.enumerated() {
            let more: MessageFlags = i < frames.count - 1 ? [.sendMore] : []
            try send(frame, flags: flags.union(more))
        }
    }

    private static func sendRaw(_ h: UnsafeMutableRawPointer, _ p: UnsafePointer<UInt8>?, _ n: Int, _ f: Int32) -> Int32 {
        var rc: Int32
        repeat { rc = zmq_send(h, p, n, f) } while rc < 0 && zmq_errno() == EINTR
        return rc
    }

    // MARK: Receiving

    /// Receives one frame. Throws `ZMQError` with code `.eagain` when `receiveTimeout` passes (or with
    /// `.dontWait` when nothing is there).
    public func receive(flags: MessageFlags = []) throws -> [UInt8] {
        try receiveFrame(flags: flags).bytes
    }

    /// Receives one frame and whether more frames of the same message follow.
    public func receiveFrame(flags: MessageFlags = []) throws -> (bytes: [UInt8], more: Bool) {
        try core.with("zmq_msg_recv") { h in try Self.receiveRaw(h, flags) { _ in } }
    }

    /// Receives every frame of one message.
    public func receiveMultipart(flags: MessageFlags = []) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var (bytes, more) = try receiveFrame(flags: flags)
        frames.append(bytes)
        while more {
            (bytes, more) = try receiveFrame()
            frames.append(bytes)
        }
        return frames
    }

    /// Receives one frame as UTF-8 text (invalid sequences are repaired).
    public func receiveString(flags: MessageFlags = []) throws -> String {
        String(decoding: try receive(flags: flags), as: UTF8.self)
    }

    // MARK: Polling

    /// Waits up to `timeout` for `events` on this socket; returns the events that are ready (empty on timeout).
    public func poll(_ events: PollEvents = .pollIn, timeout: Duration) throws -> PollEvents {
        try core.with("zmq_poll") { h in
            var item = zmq_pollitem_t(socket: h, fd: 0, events: Int16(events.rawValue), revents: 0)
            _ = try zmqPollRetryingEINTR(&item, count: 1, timeout: timeout)
            return PollEvents(rawValue: Int32(item.revents))
        }
    }
}

/// Events for `poll`.
public struct PollEvents: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let pollIn = PollEvents(rawValue: Int32(ZMQ_POLLIN))
    public static let pollOut = PollEvents(rawValue: Int32(ZMQ_POLLOUT))
    public static let pollErr = PollEvents(rawValue: Int32(ZMQ_POLLERR))
}

extension Duration {
    /// Whole milliseconds, rounded up so a short positive wait never becomes 0 (which would not wait).
    public var wholeMilliseconds: Int {
        let (s, atto) = components
        let ms = s * 1000 + atto / 1_000_000_000_000_000
        let rest = atto % 1_000_000_000_000_000
        return Int(ms + (rest > 0 ? 1 : 0))
    }
}

// MARK: Message metadata

/// The credentials of an ipc peer as libzmq reports them in a message's `Peer-Address` property
/// (`<address>:UID:GID:PID`, read by libzmq with `SO_PEERCRED` when the connection was accepted).
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var uid: uid_t
    public var gid: gid_t
    public var pid: pid_t

    public init(uid: uid_t, gid: gid_t, pid: pid_t) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
    }

    /// Parses the last three `:`-separated fields of a `Peer-Address` value; nil when they are not numbers
    /// (a TCP peer's address has no credentials).
    public init?(peerAddress: String) {
        let parts = peerAddress.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 4, let uid = uid_t(parts[parts.count - 3]), let gid = gid_t(parts[parts.count - 2]),
              let pid = pid_t(parts[parts.count - 1]) else { return nil }
        self.init(uid: uid, gid: gid, pid: pid)
    }

    public var description: String { "uid \(uid) gid \(gid) pid \(pid)" }
}

/// Every frame of one message plus the metadata properties libzmq attached to its first frame.
public struct ReceivedMessage: Sendable {
    public var frames: [[UInt8]]
    /// Property name -> value, for the names asked for that the message carries (`zmq_msg_gets`).
    public var properties: [String: String]

    /// `Peer-Address`: for ipc `<address>:UID:GID:PID`, for tcp the peer's IP address.
    public var peerAddress: String? { properties[Socket.peerAddressProperty] }
    /// The peer's credentials when it is an ipc peer (nil for tcp or when libzmq has none).
    public var peerCredentials: PeerCredentials? { peerAddress.flatMap(PeerCredentials.init(peerAddress:)) }
}

extension Socket {
    /// The libzmq metadata property naming the peer (and, over ipc, its uid, gid and pid).
    public static let peerAddressProperty = "Peer-Address"

    /// Receives every frame of one message and reads `properties` (`zmq_msg_gets`) from its first frame,
    /// e.g. `Peer-Address` for the credentials of an ipc peer.
    public func receiveMessage(flags: MessageFlags = [], properties: [String] = [Socket.peerAddressProperty]) throws -> ReceivedMessage {
        var found: [String: String] = [:]
        var frames: [[UInt8]] = []
        var (bytes, more) = try core.with("zmq_msg_recv") { h in
            try Self.receiveRaw(h, flags) { msg in
                for name in properties {
                    if let value = zmq_msg_gets(msg, name) { found[name] = String(cString: value) }
                }
            }
        }
        frames.append(bytes)
        while more {
            (bytes, more) = try receiveFrame()
            frames.append(bytes)
        }
        return ReceivedMessage(frames: frames, properties: found)
    }

    /// One `zmq_msg_recv` on a raw handle into a frame of its own, copied out; `inspect` sees the message
    /// before it is closed.
    static func receiveRaw(_ h: UnsafeMutableRawPointer, _ flags: MessageFlags,
                           inspect: (UnsafeMutablePointer<zmq_msg_t>) -> Void) throws -> (bytes: [UInt8], more: Bool) {
        var msg = zmq_msg_t()
        zmq_msg_init(&msg)
        defer { zmq_msg_close(&msg) }
        try receiveRaw(h, &msg, flags)
        let count = zmq_msg_size(&msg)
        let bytes: [UInt8]
        if count == 0 {
            bytes = []
        } else {
            let src = zmq_msg_data(&msg)!.assumingMemoryBound(to: UInt8.self)
            bytes = Array(UnsafeBufferPointer(start: src, count: count))
        }
        inspect(&msg)
        return (bytes, zmq_msg_more(&msg) != 0)
    }
}
