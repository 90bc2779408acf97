import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// One frame as libzmq holds it: a `zmq_msg_t` of its own, received into and sent from without a copy, the
/// way `zmq_proxy` forwards. A message is reusable: a receive into it releases what it held, a send gives
/// its content to libzmq and leaves it empty (`zmq_msg_send`), so one `Message` can carry frame after frame
/// without an allocation. Closed once, on `deinit`; every other step leaves it a valid (maybe empty) message.
///
/// Like a `Socket`, a message belongs to one thread at a time (it is not `Sendable`). `data` points into
/// libzmq's buffer and is valid until the message next changes (a receive into it, a send of it, `move`,
/// `copy`, `reset`, `set`, its end).
public final class Message {
    /// The `zmq_msg_t`, at an address of its own that never moves (libzmq keeps small frames inline).
    let raw: UnsafeMutablePointer<zmq_msg_t>

    /// An empty frame.
    public init() {
        raw = .allocate(capacity: 1)
        zmq_msg_init(raw)
    }

    /// A frame holding a copy of `bytes`.
    public convenience init(_ bytes: some Collection<UInt8>) {
        self.init()
        set(bytes)
    }

    deinit {
        let rc = zmq_msg_close(raw)
        assert(rc == 0, "zmq_msg_close: the message was not valid (closed twice?)")
        raw.deallocate()
    }

    /// The frame's size in bytes.
    public var count: Int { zmq_msg_size(raw) }
    public var isEmpty: Bool { count == 0 }

    /// The frame's bytes, in libzmq's buffer: valid until the message next changes.
    public var data: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: UnsafeRawPointer(zmq_msg_data(raw)), count: zmq_msg_size(raw))
    }

    /// A copy of the bytes, as an array.
    public var bytes: [UInt8] { count == 0 ? [] : Array(data) }

    /// After a receive: more frames of the same message follow.
    public var more: Bool { zmq_msg_more(raw) != 0 }

    /// Releases the content: the message is empty again (`zmq_msg_close`, then `zmq_msg_init`).
    public func reset() {
        zmq_msg_close(raw)
        zmq_msg_init(raw)
    }

    /// Replaces the content with a copy of `bytes`.
    public func set(_ bytes: some Collection<UInt8>) {
        zmq_msg_close(raw)
        let n = bytes.count
        guard zmq_msg_init_size(raw, n) == 0 else {
            zmq_msg_init(raw)
            fatalError("zmq_msg_init_size(\(n)): out of memory")
        }
        guard n > 0 else { return }
        let dst = UnsafeMutableRawBufferPointer(start: zmq_msg_data(raw), count: n)
        if bytes.withContiguousStorageIfAvailable({ dst.copyMemory(from: UnsafeRawBufferPointer($0)) }) == nil {
            _ = dst.initializeMemory(as: UInt8.self, from: bytes)
        }
    }

    /// Takes `other`'s content (`zmq_msg_move`), releasing its own; `other` is left empty.
    public func move(from other: Message) {
        guard other !== self else { return }
        zmq_msg_move(raw, other.raw)
    }

    /// Shares `other`'s content (`zmq_msg_copy`: a large frame's buffer is reference-counted, not copied),
    /// releasing its own; `other` keeps its content. Neither may be changed in place afterwards.
    public func copy(from other: Message) {
        guard other !== self else { return }
        zmq_msg_copy(raw, other.raw)
    }

    /// A new message sharing this one's content (see `copy(from:)`).
    public func copy() -> Message {
        let m = Message()
        m.copy(from: self)
        return m
    }

    /// A metadata property libzmq attached to a received frame (`zmq_msg_gets`), e.g. `Peer-Address`.
    public func property(_ name: String) -> String? {
        zmq_msg_gets(raw, name).map { String(cString: $0) }
    }
}

extension Socket {
    // MARK: Frames without copies

    /// Receives one frame into `message`, releasing what it held; returns whether more frames follow.
    /// Throws `ZMQError` (`.eagain` on a timeout or with `.dontWait` when nothing is there); the message is
    /// then empty.
    @discardableResult
    public func receive(into message: Message, flags: MessageFlags = []) throws -> Bool {
        do {
            try core.with("zmq_msg_recv") { h in try Self.receiveRaw(h, message.raw, flags) }
        } catch {
            message.reset()
            throw error
        }
        return message.more
    }

    /// Receives every frame of one message into `messages` (reusing the `Message`s there, adding more when
    /// the message has more frames than `messages` holds); returns how many frames it received. Frames past
    /// that count keep whatever they held.
    public func receiveMultipart(into messages: inout [Message], flags: MessageFlags = []) throws -> Int {
        var n = 0
        var f = flags
        repeat {
            if n == messages.count { messages.append(Message()) }
            let more = try receive(into: messages[n], flags: f)
            n += 1
            f = []  // the rest of a message is there with its first frame
            if !more { break }
        } while true
        return n
    }

    /// Sends `message`, giving its content to libzmq (`zmq_msg_send`: no copy): on success the message is
    /// empty, ready for the next receive. On failure it keeps its content and the call throws.
    public func send(_ message: Message, flags: MessageFlags = []) throws {
        try core.with("zmq_msg_send") { h in
            var rc: Int32
            repeat { rc = zmq_msg_send(message.raw, h, flags.rawValue) } while rc < 0 && zmq_errno() == EINTR
            guard rc >= 0 else { throw ZMQError.last("zmq_msg_send") }
        }
    }

    /// Sends the frames as one message (every frame but the last with `ZMQ_SNDMORE`), each given to libzmq
    /// as `send(_:flags:)` does: the frames sent are empty afterwards.
    public func send(multipart messages: ArraySlice<Message>, flags: MessageFlags = []) throws {
        precondition(!messages.isEmpty, "a message has at least one frame")
        let last = messages.endIndex - 1
        for i in messages.indices {
            try send(messages[i], flags: i < last ? flags.union(.sendMore) : flags)
        }
    }

    /// Sends the frames as one message; see `send(multipart:flags:)` for an `ArraySlice`.
    public func send(multipart messages: [Message], flags: MessageFlags = []) throws {
        try send(multipart: messages[...], flags: flags)
    }

    /// One `zmq_msg_recv` into an initialised `zmq_msg_t` on a raw handle (the one receive of the binding).
    static func receiveRaw(_ h: UnsafeMutableRawPointer, _ msg: UnsafeMutablePointer<zmq_msg_t>, _ flags: MessageFlags) throws {
        var n: Int32
        repeat { n = zmq_msg_recv(msg, h, flags.rawValue) } while n < 0 && zmq_errno() == EINTR
        guard n >= 0 else { throw ZMQError.last("zmq_msg_recv") }
    }
}

/// A poll set made once and polled many times without allocating: `zmq_poll` on `zmq_pollitem_t`s kept
/// between calls, each socket's guard held during the wait (as every call on a socket does). Belongs to one
/// thread at a time, like its sockets.
///
/// It may also poll plain file descriptors, after the sockets: for instance a socket's own `ZMQ_FD`
/// (`Socket.fileDescriptor`), which costs less per poll than the socket (no `ZMQ_EVENTS` query for it) but
/// signals only a change: its owner must then read `events` and receive until no `.pollIn` is left.
public final class Poller {
    private let sockets: [Socket]
    private let items: UnsafeMutablePointer<zmq_pollitem_t>
    /// How many items it polls: the sockets, then the file descriptors.
    public let count: Int

    public init(_ items: [(socket: Socket, events: PollEvents)], fileDescriptors: [Int32] = []) {
        sockets = items.map(\.socket)
        count = items.count + fileDescriptors.count
        self.items = .allocate(capacity: max(1, count))
        for (i, it) in items.enumerated() {
            self.items.advanced(by: i).initialize(to: zmq_pollitem_t(socket: nil, fd: 0, events: Int16(it.events.rawValue), revents: 0))
        }
        for (i, fd) in fileDescriptors.enumerated() {
            self.items.advanced(by: items.count + i).initialize(to: zmq_pollitem_t(socket: nil, fd: fd, events: Int16(ZMQ_POLLIN), revents: 0))
        }
    }

    deinit {
        items.deinitialize(count: count)
        items.deallocate()
    }

    /// Waits up to `timeout` for the events asked for; returns how many sockets are ready (0 on timeout).
    /// Read each one's with `events(_:)`.
    @discardableResult
    public func poll(timeout: Duration) throws -> Int {
        var held = 0
        defer { for i in 0..<held { sockets[i].core.release() } }
        for i in 0..<sockets.count {
            items[i].socket = try sockets[i].core.acquire("zmq_poll")
            items[i].revents = 0
            held += 1
        }
        for i in sockets.count..<count { items[i].revents = 0 }
        return Int(try zmqPollRetryingEINTR(items, count: Int32(count), timeout: timeout))
    }

    /// The events item `i` (in the order given, sockets first) had at the last `poll`.
    public func events(_ i: Int) -> PollEvents {
        precondition(i >= 0 && i < count, "poll item \(i) out of 0..<\(count)")
        return PollEvents(rawValue: Int32(items[i].revents))
    }
}

/// `zmq_poll` over `count` items for up to `timeout`, resumed with the time left when a signal interrupts it
/// (EINTR); the number of ready items. The one poll loop of `Socket.poll` and `Poller.poll`.
func zmqPollRetryingEINTR(_ items: UnsafeMutablePointer<zmq_pollitem_t>, count: Int32, timeout: Duration) throws -> Int32 {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    var remaining = timeout.wholeMilliseconds
    while true {
        let rc = zmq_poll(items, count, remaining)
        if rc >= 0 { return rc }
        guard zmq_errno() == EINTR else { throw ZMQError.last("zmq_poll") }
        remaining = max(0, (deadline - ContinuousClock.now).wholeMilliseconds)
    }
}
