import ScheduleZeroWire
import ZeroMQ

/// The answering side of the ScheduleZero protocol: a REP socket that decodes each request, asks `handle`
/// for the reply and sends it, with the protocol's error replies for what is not a request (invalid JSON, a
/// non-object, a multipart message). Used by the mock server's registration socket, the mock handler's and
/// the governor's control endpoints.
///
/// `bind` and `serve` run on the caller's thread (a thread of the caller's own, never the cooperative pool):
/// every wait is a poll of `pollInterval`, so `shouldStop` is seen promptly, and the loop also ends when the
/// context is terminated.
public struct ReplyService {
    public var pollInterval: Duration
    public var maxMessageSize: Int64
    public var sendTimeout: Duration

    public init(pollInterval: Duration = .milliseconds(100), maxMessageSize: Int64 = 1 << 20,
                sendTimeout: Duration = .milliseconds(500)) {
        self.pollInterval = pollInterval
        self.maxMessageSize = maxMessageSize
        self.sendTimeout = sendTimeout
    }

    /// Makes and binds the REP socket; returns it with the endpoint really bound (`tcp://...:*` resolved).
    public func bind(_ endpoint: String, in context: Context) throws -> (socket: Socket, endpoint: String) {
        let socket = try context.socket(.rep)
        do {
            try socket.setLinger(.zero)
            try socket.setMaxMessageSize(maxMessageSize)
            try socket.setSendTimeout(sendTimeout)
            try socket.bind(endpoint)
            return (socket, try socket.lastEndpoint)
        } catch {
            socket.close(linger: .zero)
            throw error
        }
    }

    /// Answers requests on `socket` until `shouldStop()` or the context ends; closes the socket at the end,
    /// with `lingerOnClose` so a last reply (to a `down`, say) can still leave.
    public func serve(_ socket: Socket, in context: Context, lingerOnClose: Duration = .zero,
                      shouldStop: () -> Bool, handle: (Request) -> Reply) {
        defer { socket.close(linger: lingerOnClose) }
        while !shouldStop() {
            guard let ev = try? socket.poll(.pollIn, timeout: pollInterval), ev.contains(.pollIn) else {
                if context.isTerminated { return }
                continue
            }
            guard let frames = try? socket.receiveMultipart(flags: .dontWait) else { continue }
            _ = try? socket.send(Self.reply(to: frames, handle).encoded())
        }
    }

    /// The reply to one message: the protocol's errors for what is not a single-frame request.
    public static func reply(to frames: [[UInt8]], _ handle: (Request) -> Reply) -> Reply {
        guard frames.count == 1 else { return .failure(Wire.multipartRejected) }
        do {
            return handle(try Request.decode(frames[0]))
        } catch {
            return .failure(error.replyText)
        }
    }
}
