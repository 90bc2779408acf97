#if canImport(Glibc)
import Glibc
#endif
import ScheduleZeroWire
import ZeroMQ

/// Who may talk to a control channel, checked on every request from the credentials libzmq reads from an
/// ipc connection (`SO_PEERCRED`, the message's `Peer-Address`). A tcp peer has no credentials: the policy
/// cannot apply there (control channels that need it bind ipc).
public struct PeerPolicy: Sendable {
    /// The uids allowed (besides root when `allowRoot`).
    public var allowedUIDs: Set<uid_t>
    public var allowRoot: Bool

    public init(allowedUIDs: Set<uid_t>, allowRoot: Bool = true) {
        self.allowedUIDs = allowedUIDs
        self.allowRoot = allowRoot
    }

    /// This process's own (effective) uid, and root.
    public static var ownerOrRoot: PeerPolicy { PeerPolicy(allowedUIDs: [geteuid()]) }

    /// Nil when `message` may be answered; else why not. An ipc message without credentials is refused.
    public func refusal(of message: ReceivedMessage, endpoint: String) -> String? {
        guard let creds = message.peerCredentials else {
            return endpoint.hasPrefix("ipc://") ? "the peer's credentials are unknown (Peer-Address \(message.peerAddress ?? "missing"))" : nil
        }
        if allowRoot && creds.uid == 0 { return nil }
        if allowedUIDs.contains(creds.uid) { return nil }
        return "uid \(creds.uid) is not allowed (allowed: \((allowedUIDs.sorted().map { "\($0)" } + (allowRoot ? ["0 (root)"] : [])).joined(separator: ", ")))"
    }
}

/// A request refused by the peer policy, for the owner's log.
public struct PeerRefusal: Sendable {
    public var endpoint: String
    public var credentials: PeerCredentials?
    public var peerAddress: String?
    public var reason: String
    /// The request's method when it decodes, else nil.
    public var method: String?
}

/// The answering side of the ScheduleZero protocol: a REP socket that decodes each request, asks `handle`
/// for the reply and sends it, with the protocol's error replies for what is not a request (invalid JSON, a
/// non-object, a multipart message). `serve` is used by the mock server's registration socket and the mock
/// handler's control endpoint; the governor's control endpoint, served by its event loop, binds here and
/// uses the same per-message steps (`refusalReply(to:endpoint:)`, `request(from:)`).
///
/// `bind` and `serve` run on the caller's thread (a thread of the caller's own, never the cooperative pool):
/// every wait is a poll of `pollInterval`, so `shouldStop` is seen promptly, and the loop also ends when the
/// context is terminated.
public struct ReplyService: Sendable {
    public var pollInterval: Duration
    public var maxMessageSize: Int64
    public var sendTimeout: Duration
    /// Control channels: every request's peer is checked (ipc credentials); refused ones get an error
    /// reply and are reported to `onRefused`. Nil: anyone who can connect is answered.
    public var peerPolicy: PeerPolicy?
    /// The mode an ipc socket file gets right after `bind` (libzmq creates it from the umask). Nil: as made.
    public var ipcFileMode: mode_t?
    public var onRefused: (@Sendable (PeerRefusal) -> Void)?

    public init(pollInterval: Duration = .milliseconds(100), maxMessageSize: Int64 = 1 << 20,
                sendTimeout: Duration = .milliseconds(500), peerPolicy: PeerPolicy? = nil,
                ipcFileMode: mode_t? = nil, onRefused: (@Sendable (PeerRefusal) -> Void)? = nil) {
        self.pollInterval = pollInterval
        self.maxMessageSize = maxMessageSize
        self.sendTimeout = sendTimeout
        self.peerPolicy = peerPolicy
        self.ipcFileMode = ipcFileMode
        self.onRefused = onRefused
    }

    /// What a control channel uses: 1 MiB requests at most, its owner's uid or root only, socket file 0600.
    public static func control(pollInterval: Duration = .milliseconds(100),
                               onRefused: (@Sendable (PeerRefusal) -> Void)? = nil) -> ReplyService {
        ReplyService(pollInterval: pollInterval, maxMessageSize: controlMaxMessageSize, peerPolicy: .ownerOrRoot,
                     ipcFileMode: 0o600, onRefused: onRefused)
    }

    /// The largest request a control channel accepts (`ZMQ_MAXMSGSIZE`): a larger one drops the connection.
    public static let controlMaxMessageSize: Int64 = 1 << 20

    /// Makes and binds the REP socket; returns it with the endpoint really bound (`tcp://...:*` resolved).
    public func bind(_ endpoint: String, in context: Context) throws -> (socket: Socket, endpoint: String) {
        let socket = try context.socket(.rep)
        do {
            try socket.setLinger(.zero)
            try socket.setMaxMessageSize(maxMessageSize)
            try socket.setSendTimeout(sendTimeout)
            try socket.bind(endpoint)
            let bound = try socket.lastEndpoint
            if let mode = ipcFileMode, bound.hasPrefix("ipc://"), !bound.hasPrefix("ipc://@") {  // @: abstract, no file
                // The socket's folder is owner-only (0700) where the project binds control sockets, so the
                // moment between bind and chmod gives no one else a way in.
                let path = String(bound.dropFirst(6))
                guard chmod(path, mode) == 0 else {
                    let e = errno
                    throw ZMQError(errno: e, operation: "chmod(\(path), \(String(mode, radix: 8)))")
                }
            }
            return (socket, bound)
        } catch {
            socket.close(linger: .zero)
            throw error
        }
    }

    /// Answers requests on `socket` until `shouldStop()` or the context ends; closes the socket at the end,
    /// with `lingerOnClose` so a last reply (to a `down`, say) can still leave.
    /// `endpoint` names the socket in refusals (the one bound).
    public func serve(_ socket: Socket, in context: Context, endpoint: String = "", lingerOnClose: Duration = .zero,
                      shouldStop: () -> Bool, handle: (Request) -> Reply) {
        defer { socket.close(linger: lingerOnClose) }
        while !shouldStop() {
            guard let ev = try? socket.poll(.pollIn, timeout: pollInterval), ev.contains(.pollIn) else {
                if context.isTerminated { return }
                continue
            }
            guard let message = try? socket.receiveMessage(flags: .dontWait) else { continue }
            if let refused = refusalReply(to: message, endpoint: endpoint) {
                _ = try? socket.send(refused.encoded())
                continue
            }
            _ = try? socket.send(Self.reply(to: message.frames, handle).encoded())
        }
    }

    /// The error reply to a message the peer policy refuses (reported to `onRefused`), nil when it may be
    /// answered. What `serve` does per message; the governor's event loop does the same.
    public func refusalReply(to message: ReceivedMessage, endpoint: String) -> Reply? {
        guard let policy = peerPolicy, let reason = policy.refusal(of: message, endpoint: endpoint) else { return nil }
        let method = message.frames.count == 1 ? (try? Request.decode(message.frames[0]))?.method : nil
        onRefused?(PeerRefusal(endpoint: endpoint, credentials: message.peerCredentials,
                               peerAddress: message.peerAddress, reason: reason, method: method))
        return Reply.failure("permission denied: \(reason)")
    }

    /// The request of a message, or the protocol's error reply for what is not a single-frame request.
    public static func request(from frames: [[UInt8]]) -> Result<Request, ReplyError> {
        guard frames.count == 1 else { return .failure(ReplyError(reply: .failure(Wire.multipartRejected))) }
        do {
            return .success(try Request.decode(frames[0]))
        } catch {
            return .failure(ReplyError(reply: .failure(error.replyText)))
        }
    }

    /// The reply to one message: the protocol's errors for what is not a single-frame request.
    public static func reply(to frames: [[UInt8]], _ handle: (Request) -> Reply) -> Reply {
        switch request(from: frames) {
        case .success(let r): return handle(r)
        case .failure(let e): return e.reply
        }
    }
}

/// The error reply to what is not a request (see `ReplyService.request(from:)`).
public struct ReplyError: Error, Sendable {
    public var reply: Reply
}
