import ZeroMQ

/// How a client recovers a REQ socket that did not get its reply.
public enum RecoveryStrategy: String, Sendable, CaseIterable {
    /// zguide "Lazy Pirate": on a timeout or error, close the REQ socket with linger 0, open a new one,
    /// resend. A reply to the old socket can never reach the new one.
    case lazyPirate = "lazy-pirate"
    /// Keep one socket with `ZMQ_REQ_RELAXED` + `ZMQ_REQ_CORRELATE`: resend on the same socket, libzmq drops
    /// replies to earlier sends. Reopens after a second timeout in a row within one call (what was queued on
    /// the old socket goes with it) and after a hard socket error.
    case relaxedCorrelate = "relaxed"
}

/// Settings of a self-healing client. Every timeout and count is a parameter with a default.
public struct ClientConfiguration: Sendable, Equatable {
    /// How long one attempt waits for its reply.
    public var timeout: Duration
    /// Attempts per call (1 = no retry). Upstream's server uses 3.
    public var attempts: Int
    /// Delay before the second attempt; doubled (`backoffMultiplier`) for each further one, capped.
    public var retryDelay: Duration
    public var backoffMultiplier: Double
    public var maxRetryDelay: Duration
    /// +- this fraction of random jitter on each retry delay (upstream: 0.5).
    public var jitter: Double
    public var strategy: RecoveryStrategy
    /// libzmq reconnect interval and its maximum (exponential when set).
    public var reconnectInterval: Duration
    public var reconnectIntervalMax: Duration?
    /// Largest reply accepted (`ZMQ_MAXMSGSIZE`); `nil` for no limit.
    public var maxMessageSize: Int64?
    /// Seed for the jitter; `nil` takes one from the system.
    public var seed: UInt64?

    public init(
        timeout: Duration = .milliseconds(2500),
        attempts: Int = 3,
        retryDelay: Duration = .zero,
        backoffMultiplier: Double = 2,
        maxRetryDelay: Duration = .seconds(30),
        jitter: Double = 0,
        strategy: RecoveryStrategy = .lazyPirate,
        reconnectInterval: Duration = .milliseconds(100),
        reconnectIntervalMax: Duration? = nil,
        maxMessageSize: Int64? = 64 << 20,
        seed: UInt64? = nil
    ) {
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.retryDelay = retryDelay
        self.backoffMultiplier = backoffMultiplier
        self.maxRetryDelay = maxRetryDelay
        self.jitter = jitter
        self.strategy = strategy
        self.reconnectInterval = reconnectInterval
        self.reconnectIntervalMax = reconnectIntervalMax
        self.maxMessageSize = maxMessageSize
        self.seed = seed
    }

    /// The retry rule of the ScheduleZero server: 10 s per call, 3 attempts, 1 s base delay doubling with
    /// +-50 % jitter, at least 0.1 s.
    public static var upstreamServer: ClientConfiguration {
        ClientConfiguration(timeout: .seconds(10), attempts: 3, retryDelay: .seconds(1), jitter: 0.5)
    }

    /// The delay before attempt `n` (n >= 2), without jitter.
    public func baseDelay(beforeAttempt n: Int) -> Duration {
        guard n >= 2, retryDelay > .zero else { return .zero }
        var d = retryDelay
        for _ in 2..<n {
            d = d * backoffMultiplier
            if d >= maxRetryDelay { return maxRetryDelay }
        }
        return min(d, maxRetryDelay)
    }
}

/// What a client has done so far; read it with `stats`.
public struct ClientStats: Sendable, Equatable {
    public var calls = 0
    public var replies = 0
    public var errorReplies = 0
    public var timeouts = 0
    public var retries = 0
    /// Sockets closed and opened again (Lazy Pirate steps and hard-error recoveries).
    public var recreations = 0
    /// Calls that found the socket in an EFSM state (or got EFSM from libzmq) and recovered.
    public var efsmRecoveries = 0
    /// Replies dropped because they answered an earlier request.
    public var staleRepliesDropped = 0
    public var failures = 0
    public var lastError: String?
    public init() {}
}

/// Why a call failed after everything the client could do.
public enum ClientError: Error, Equatable, CustomStringConvertible, Sendable {
    /// No reply after every attempt.
    case noReply(endpoint: String, method: String, attempts: Int, elapsed: Duration, timeout: Duration)
    /// The peer answered bytes that are not a ScheduleZero reply.
    case invalidReply(endpoint: String, method: String, detail: String)
    /// `terminate()` was called; the client cannot be used again.
    case terminated(endpoint: String)
    /// The endpoint is unusable (bad address, unsupported transport).
    case badEndpoint(endpoint: String, reason: String)
    /// A libzmq failure the client could not recover from.
    case transport(endpoint: String, method: String, error: String)

    public var description: String {
        switch self {
        case let .noReply(e, m, a, el, t):
            "\(m) to \(e): no reply after \(a) attempt\(a == 1 ? "" : "s") in \(el.secondsText) (timeout \(t.secondsText) each)"
        case let .invalidReply(e, m, d): "\(m) to \(e): invalid reply: \(d)"
        case let .terminated(e): "client for \(e) is terminated"
        case let .badEndpoint(e, r): "cannot use endpoint \(e): \(r)"
        case let .transport(e, m, err): "\(m) to \(e): \(err)"
        }
    }
}

extension Duration {
    public var seconds: Double {
        let (s, a) = components
        return Double(s) + Double(a) / 1e18
    }
    /// `2.5 s`, `120 ms`.
    public var secondsText: String {
        let s = seconds
        if s < 1 { return "\(Int((s * 1000).rounded())) ms" }
        return "\((s * 100).rounded() / 100) s"
    }
}
