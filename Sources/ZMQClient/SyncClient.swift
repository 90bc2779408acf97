import ScheduleZeroWire
import ZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// The self-healing ScheduleZero REQ client, synchronous form: the Swift counterpart of upstream `ZMQClient`.
///
/// It blocks its calling thread, so use it from a thread of its own (a command-line tool, a mock peer's
/// loop, a benchmark). From async code use `ZMQClient`, which runs one of these on a dedicated thread.
///
/// Recovery, with no help from the caller:
/// - a timeout: Lazy Pirate (close with linger 0, reopen, resend) or, with `.relaxedCorrelate`, a resend on
///   the same socket (a second timeout in a row within one call reopens it); retried `attempts` times with backoff, then `ClientError.noReply` naming endpoint,
///   method, attempts and time;
/// - an EFSM state, however it arose: the socket is reopened (or, relaxed, simply sent on) before the next
///   send, and an EFSM from libzmq is recovered the same way; it is never surfaced;
/// - a closed or broken socket (`ENOTSOCK`, `ETERM`, closed under the client): recreated, with a new context
///   when the client's own context was terminated.
public final class SyncClient {
    public let endpoint: String
    public let configuration: ClientConfiguration
    public private(set) var stats = ClientStats()

    private var context: Context?
    private let ownsContext: Bool
    private var socket: Socket?
    /// A request went out on `socket` and its reply has not been read: the REQ socket is in its EFSM state.
    private var awaitingReply = false
    private var terminated = false
    private var rng: SeededGenerator
    private let clock = ContinuousClock()

    /// - Parameter context: a context to share; by default the client makes its own and terminates it in
    ///   `terminate()`.
    public init(endpoint: String, configuration: ClientConfiguration = .init(), context: Context? = nil) throws {
        self.endpoint = endpoint
        self.configuration = configuration
        self.ownsContext = context == nil
        self.context = try context ?? Context()
        self.rng = SeededGenerator(seed: configuration.seed ?? SeededGenerator.randomSeed())
    }

    deinit { terminate() }

    /// Opens the socket now (calls open it on demand). Throws `badEndpoint` for an unusable address.
    public func connect() throws {
        _ = try ensureSocket()
    }

    /// Sends `ping` and returns the reply.
    public func ping() throws -> Reply { try call("ping") }

    public func call(_ method: String, params: [String: JSONValue] = [:]) throws -> Reply {
        try call(Request(method: method, params: params))
    }

    public func call(_ request: Request) throws -> Reply {
        let bytes = try exchange(request.encoded(), method: request.method)
        do {
            let reply = try Reply.decode(bytes)
            if reply.success { stats.replies += 1 } else { stats.errorReplies += 1 }
            return reply
        } catch {
            let e = ClientError.invalidReply(endpoint: endpoint, method: request.method, detail: error.description)
            stats.failures += 1
            stats.lastError = e.description
            throw e
        }
    }

    /// Sends one raw frame and returns the raw reply frame, with the same recovery as `call`.
    public func exchange(_ frame: [UInt8], method: String = "raw") throws -> [UInt8] {
        guard !terminated else { throw ClientError.terminated(endpoint: endpoint) }
        stats.calls += 1
        let start = clock.now
        var attempt = 0
        var timeoutsInARow = 0
        while attempt < configuration.attempts {
            attempt += 1
            if attempt > 1 {
                stats.retries += 1
                pause(before: attempt)
            }
            do {
                return try attemptOnce(frame, method: method)
            } catch let e as ZMQError where e.code == .eagain {
                stats.timeouts += 1
                timeoutsInARow += 1
                stats.lastError = "\(method) to \(endpoint): no reply within \(configuration.timeout.secondsText)"
                // Relaxed resends on the same pipe, behind the late request, and libzmq cannot take back a
                // queued request: with a peer slower than the timeout the duplicates piled up, each executed
                // and answered after its attempt had ended, until no attempt got an answer (seen: 50 of 50).
                // A second timeout in a row reopens, as Lazy Pirate does at the first: what was queued goes
                // with the old socket (linger 0) and the next request gets a fresh pipe.
                if configuration.strategy == .lazyPirate || timeoutsInARow >= Self.relaxedTimeoutsBeforeReopen {
                    recreate()
                    timeoutsInARow = 0
                }
            } catch let e as ClientError {
                stats.failures += 1
                stats.lastError = e.description
                throw e
            } catch {
                // ENOTSOCK, ETERM, a socket closed under us, or another hard libzmq error: start over.
                stats.lastError = "\(method) to \(endpoint): \(error)"
                recreate()
                timeoutsInARow = 0
                if isContextGone(error) { try renewContext(method: method) }
            }
        }
        stats.failures += 1
        let e = ClientError.noReply(endpoint: endpoint, method: method, attempts: attempt,
                                    elapsed: clock.now - start, timeout: configuration.timeout)
        stats.lastError = e.description
        throw e
    }

    /// How many timeouts in a row, within one call, the relaxed strategy takes on the same socket before it
    /// reopens (a call that gets its answer, or a new call, starts the count again).
    public static let relaxedTimeoutsBeforeReopen = 2

    /// Closes the socket (linger 0); the next call opens a new one.
    public func close() {
        socket?.close(linger: .zero)
        socket = nil
        awaitingReply = false
    }

    /// Closes the socket and terminates the client's own context. The client cannot be used afterwards.
    public func terminate() {
        guard !terminated else { return }
        terminated = true
        close()
        if ownsContext { try? context?.terminate(timeout: .seconds(2)) }
        context = nil
    }

    public var isTerminated: Bool { terminated }

    /// Runs `body` with a client and always terminates it (and its context), whatever `body` does.
    public static func with<R>(
        endpoint: String, configuration: ClientConfiguration = .init(), _ body: (SyncClient) throws -> R
    ) throws -> R {
        let client = try SyncClient(endpoint: endpoint, configuration: configuration)
        defer { client.terminate() }
        return try body(client)
    }

    // MARK: Fault hooks for tests and the fault injector

    /// Ways to break the client from outside, as the faults it must survive arise in the field.
    public enum SabotageKind: Sendable {
        /// Send a request and never read its reply: the REQ socket is left in its EFSM state.
        case leaveAwaitingReply
        /// Close the socket without telling the client (its next libzmq call sees a closed socket).
        case closeSocketUnderneath
        /// Terminate the client's context under it (its next call sees `ETERM`).
        case terminateContextUnderneath
    }

    public func sabotage(_ kind: SabotageKind) throws {
        switch kind {
        case .leaveAwaitingReply:
            let s = try ensureSocket()
            try s.send(Request(method: "ping").encoded())
            // Deliberately not recording `awaitingReply`: the client must find out from libzmq (EFSM).
        case .closeSocketUnderneath:
            _ = try ensureSocket()
            socket?.close(linger: .zero)
        case .terminateContextUnderneath:
            _ = try ensureSocket()
            try? context?.terminate(timeout: .seconds(1))
        }
    }

    // MARK: Internals

    private func attemptOnce(_ frame: [UInt8], method: String) throws -> [UInt8] {
        var s = try ensureSocket()
        if awaitingReply && configuration.strategy == .lazyPirate {
            stats.efsmRecoveries += 1
            recreate()
            s = try ensureSocket()
        }
        do {
            try s.send(frame)
        } catch let e as ZMQError where e.code == .efsm {
            // The socket was left waiting for a reply by someone we did not see: reopen and send again.
            stats.efsmRecoveries += 1
            recreate()
            s = try ensureSocket()
            try s.send(frame)
        }
        awaitingReply = true
        let frames = try s.receiveMultipart()
        awaitingReply = false
        guard frames.count == 1 else {
            throw ClientError.invalidReply(endpoint: endpoint, method: method,
                                           detail: "\(frames.count) frames where the protocol has exactly one")
        }
        return frames[0]
    }

    private func ensureSocket() throws -> Socket {
        if let s = socket, !s.isClosed { return s }
        if socket != nil {  // closed under us
            socket = nil
            stats.recreations += 1
        }
        guard let ctx = context else { throw ClientError.terminated(endpoint: endpoint) }
        if ctx.isTerminated {
            guard ownsContext else { throw ClientError.transport(endpoint: endpoint, method: "connect", error: "shared context terminated") }
            try renewContext(method: "connect")
            return try ensureSocket()
        }
        let s = try ctx.socket(.req)
        do {
            try s.setLinger(.zero)
            try s.setReceiveTimeout(configuration.timeout)
            try s.setSendTimeout(configuration.timeout)
            try s.setReconnect(interval: configuration.reconnectInterval, max: configuration.reconnectIntervalMax)
            try s.setMaxMessageSize(configuration.maxMessageSize)
            if configuration.strategy == .relaxedCorrelate {
                try s.setRequestRelaxed(true)
                try s.setRequestCorrelate(true)
            }
            try s.connect(endpoint)
        } catch let e as ZMQError {
            s.close(linger: .zero)
            switch e.code {
            case .einval, .eprotonosupport, .enodev, .enoent, .eaddrnotavail:
                throw ClientError.badEndpoint(endpoint: endpoint, reason: e.message)
            default:
                throw e
            }
        }
        socket = s
        awaitingReply = false
        return s
    }

    private func recreate() {
        socket?.close(linger: .zero)
        socket = nil
        awaitingReply = false
        stats.recreations += 1
    }

    private func isContextGone(_ error: any Error) -> Bool {
        if let e = error as? ZMQError, e.code == .eterm { return true }
        if let e = error as? ZMQUsageError, e == .contextTerminated { return true }
        return context?.isTerminated ?? true
    }

    private func renewContext(method: String) throws {
        guard ownsContext else {
            throw ClientError.transport(endpoint: endpoint, method: method, error: "shared context terminated")
        }
        try? context?.terminate(timeout: .seconds(1))
        context = try Context()
    }

    private func pause(before attempt: Int) {
        var d = configuration.baseDelay(beforeAttempt: attempt)
        guard d > .zero else { return }
        if configuration.jitter > 0 {
            let f = 1 + configuration.jitter * (2 * rng.unit() - 1)
            d = d * f
        }
        if configuration.retryDelay >= .milliseconds(100) { d = max(d, .milliseconds(100)) }
        var ts = timespec(tv_sec: Int(d.components.seconds), tv_nsec: Int(d.components.attoseconds / 1_000_000_000))
        var rest = timespec()
        while nanosleep(&ts, &rest) != 0 && errno == EINTR { ts = rest }
    }
}
