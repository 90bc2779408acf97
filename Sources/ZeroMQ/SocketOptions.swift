import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

extension Socket {
    // MARK: Raw option access

    public func setOption(_ option: Int32, _ value: Int32) throws {
        var v = value
        try core.with("zmq_setsockopt(\(option))") { h in
            guard zmq_setsockopt(h, option, &v, MemoryLayout<Int32>.size) == 0 else {
                throw ZMQError.last("zmq_setsockopt(\(option))")
            }
        }
    }

    public func setOption(_ option: Int32, _ value: Int64) throws {
        var v = value
        try core.with("zmq_setsockopt(\(option))") { h in
            guard zmq_setsockopt(h, option, &v, MemoryLayout<Int64>.size) == 0 else {
                throw ZMQError.last("zmq_setsockopt(\(option))")
            }
        }
    }

    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        try core.with("zmq_setsockopt(\(option))") { h in
            let rc = bytes.withUnsafeBytes { zmq_setsockopt(h, option, $0.baseAddress, $0.count) }
            guard rc == 0 else { throw ZMQError.last("zmq_setsockopt(\(option))") }
        }
    }

    public func int32Option(_ option: Int32) throws -> Int32 {
        try core.with("zmq_getsockopt(\(option))") { h in
            var v: Int32 = 0
            var size = MemoryLayout<Int32>.size
            guard zmq_getsockopt(h, option, &v, &size) == 0 else { throw ZMQError.last("zmq_getsockopt(\(option))") }
            return v
        }
    }

    public func int64Option(_ option: Int32) throws -> Int64 {
        try core.with("zmq_getsockopt(\(option))") { h in
            var v: Int64 = 0
            var size = MemoryLayout<Int64>.size
            guard zmq_getsockopt(h, option, &v, &size) == 0 else { throw ZMQError.last("zmq_getsockopt(\(option))") }
            return v
        }
    }

    public func bytesOption(_ option: Int32, capacity: Int = 256) throws -> [UInt8] {
        try core.with("zmq_getsockopt(\(option))") { h in
            var buf = [UInt8](repeating: 0, count: capacity)
            var size = capacity
            let rc = buf.withUnsafeMutableBytes { zmq_getsockopt(h, option, $0.baseAddress, &size) }
            guard rc == 0 else { throw ZMQError.last("zmq_getsockopt(\(option))") }
            return Array(buf.prefix(size))
        }
    }

    // MARK: Typed options this project uses

    /// `ZMQ_LINGER`: how long unsent messages are kept after close. `nil` means forever.
    public func setLinger(_ d: Duration?) throws { try setOption(ZMQ_LINGER, d.map { Int32(clamping: $0.wholeMilliseconds) } ?? -1) }
    public var linger: Duration? { get throws { let v = try int32Option(ZMQ_LINGER); return v < 0 ? nil : .milliseconds(v) } }

    /// `ZMQ_SNDTIMEO`: how long a send may block before `EAGAIN`. `nil` means forever.
    public func setSendTimeout(_ d: Duration?) throws { try setOption(ZMQ_SNDTIMEO, d.map { Int32(clamping: $0.wholeMilliseconds) } ?? -1) }
    /// `ZMQ_RCVTIMEO`: how long a receive may block before `EAGAIN`. `nil` means forever.
    public func setReceiveTimeout(_ d: Duration?) throws { try setOption(ZMQ_RCVTIMEO, d.map { Int32(clamping: $0.wholeMilliseconds) } ?? -1) }
    public var receiveTimeout: Duration? { get throws { let v = try int32Option(ZMQ_RCVTIMEO); return v < 0 ? nil : .milliseconds(v) } }

    /// `ZMQ_REQ_RELAXED`: a REQ socket may send again without waiting for the reply.
    public func setRequestRelaxed(_ on: Bool) throws { try setOption(ZMQ_REQ_RELAXED, Int32(on ? 1 : 0)) }
    /// `ZMQ_REQ_CORRELATE`: a REQ socket tags requests and drops replies that do not match the last one.
    public func setRequestCorrelate(_ on: Bool) throws { try setOption(ZMQ_REQ_CORRELATE, Int32(on ? 1 : 0)) }

    /// `ZMQ_RECONNECT_IVL` and `ZMQ_RECONNECT_IVL_MAX` (exponential backoff up to the max when set).
    public func setReconnect(interval: Duration, max: Duration? = nil) throws {
        try setOption(ZMQ_RECONNECT_IVL, Int32(clamping: interval.wholeMilliseconds))
        try setOption(ZMQ_RECONNECT_IVL_MAX, Int32(clamping: max?.wholeMilliseconds ?? 0))
    }

    /// ZMTP heartbeats: `ZMQ_HEARTBEAT_IVL`, `ZMQ_HEARTBEAT_TIMEOUT`, `ZMQ_HEARTBEAT_TTL`.
    public func setHeartbeat(interval: Duration, timeout: Duration? = nil, ttl: Duration? = nil) throws {
        try setOption(ZMQ_HEARTBEAT_IVL, Int32(clamping: interval.wholeMilliseconds))
        if let timeout { try setOption(ZMQ_HEARTBEAT_TIMEOUT, Int32(clamping: timeout.wholeMilliseconds)) }
        if let ttl { try setOption(ZMQ_HEARTBEAT_TTL, Int32(clamping: ttl.wholeMilliseconds)) }
    }

    /// `ZMQ_MAXMSGSIZE`: a peer sending a larger message is disconnected. `nil` means no limit.
    public func setMaxMessageSize(_ bytes: Int64?) throws { try setOption(ZMQ_MAXMSGSIZE, bytes ?? -1) }

    /// `ZMQ_IMMEDIATE`: queue messages only to completed connections.
    public func setImmediate(_ on: Bool) throws { try setOption(ZMQ_IMMEDIATE, Int32(on ? 1 : 0)) }

    /// `ZMQ_ROUTER_MANDATORY`: a ROUTER sending to a peer that is not (or no longer) connected fails with
    /// EHOSTUNREACH instead of dropping the message silently.
    public func setRouterMandatory(_ on: Bool) throws { try setOption(ZMQ_ROUTER_MANDATORY, Int32(on ? 1 : 0)) }

    /// `ZMQ_ROUTING_ID`.
    public func setRoutingID(_ id: [UInt8]) throws { try setOption(ZMQ_ROUTING_ID, bytes: id) }

    /// `ZMQ_SUBSCRIBE` on a SUB socket (empty prefix: everything).
    public func subscribe(_ prefix: [UInt8] = []) throws { try setOption(ZMQ_SUBSCRIBE, bytes: prefix) }

    /// `ZMQ_LAST_ENDPOINT`: the endpoint really bound (resolves `tcp://127.0.0.1:*` to its port).
    public var lastEndpoint: String {
        get throws {
            var bytes = try bytesOption(ZMQ_LAST_ENDPOINT)
            while bytes.last == 0 { bytes.removeLast() }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// `ZMQ_RCVMORE`: more frames of the current message are waiting.
    public var hasMoreFrames: Bool { get throws { try int32Option(ZMQ_RCVMORE) != 0 } }

    /// `ZMQ_FD`: a descriptor that becomes readable (edge-triggered) when `events` may have changed. After
    /// each wake, and after each send or receive, read `events` again: it is the only truth.
    public var fileDescriptor: Int32 { get throws { try int32Option(ZMQ_FD) } }

    /// `ZMQ_EVENTS` right now.
    public var events: PollEvents { get throws { PollEvents(rawValue: try int32Option(ZMQ_EVENTS)) } }
}

/// Polls several sockets at once; returns the ready events per item, in order (all empty on timeout). To poll
/// the same sockets again and again, make a `Poller` once instead (this makes one per call).
public func poll(_ items: [(socket: Socket, events: PollEvents)], timeout: Duration) throws -> [PollEvents] {
    let poller = Poller(items)
    try poller.poll(timeout: timeout)
    return (0..<poller.count).map(poller.events)
}

/// libzmq's version, e.g. (4, 3, 4).
public var libzmqVersion: (major: Int32, minor: Int32, patch: Int32) {
    var a: Int32 = 0, b: Int32 = 0, c: Int32 = 0
    zmq_version(&a, &b, &c)
    return (a, b, c)
}
