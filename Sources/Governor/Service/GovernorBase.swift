// The governor's public model (upstream's GovernorBase), async throughout.
/// Upstream `get_metrics()` plus restart latency figures.
public struct GovernorMetrics: Sendable, Hashable, Codable {
    public var deployment: String
    public var running: Bool
    public var totalServices: Int
    public var healthyServices: Int
    public var totalRestarts: Int
    public var services: [String: ManagedProcessInfo]
    /// Exit of a child that died by itself -> spawn of its replacement, milliseconds, per restart.
    public var restartLatencyMs: LatencySummary
    /// Exit -> replacement ready (probe passed), milliseconds.
    public var readyLatencyMs: LatencySummary

    enum CodingKeys: String, CodingKey {
        case deployment, running, services
        case totalServices = "total_services"
        case healthyServices = "healthy_services"
        case totalRestarts = "total_restarts"
        case restartLatencyMs = "restart_latency_ms"
        case readyLatencyMs = "ready_latency_ms"
    }
}

public struct LatencySummary: Sendable, Hashable, Codable {
    public var count: Int
    public var median: Double?
    public var p95: Double?
    public var max: Double?
    public var last: Double?
    /// The sum of the samples (Prometheus' `_sum`).
    public var sum: Double

    public init(samples: [Double]) {
        count = samples.count
        sum = samples.reduce(0, +)
        let sorted = samples.sorted()
        median = sorted.isEmpty ? nil : sorted[sorted.count / 2]
        p95 = sorted.isEmpty ? nil : sorted[Swift.min(sorted.count - 1, Int(Double(sorted.count) * 0.95))]
        max = sorted.last
        last = samples.last
    }
}

/// The governor's operations.
public protocol GovernorBase: Sendable {
    /// Takes the deployment lock, reconciles stale PID files, starts the server then the handlers.
    func start() async throws
    /// Stops handlers, then the server (SIGTERM to each group, SIGKILL after `timeout` or each process's
    /// own stop timeout when nil), then releases the lock.
    func stop(timeout: Duration?) async
    func restart(timeout: Duration?) async throws
    func status() async -> [ManagedProcessInfo]
    @discardableResult func addHandler(_ config: HandlerConfig) async throws -> ManagedProcessInfo
    func removeHandler(_ id: String) async throws
    func restartHandler(_ id: String) async throws
    func handlerStatus(_ id: String) async throws -> ManagedProcessInfo
    func listHandlers() async -> [ManagedProcessInfo]
    var isRunning: Bool { get async }
    /// `{name: status == running}`.
    func healthCheck() async -> [String: Bool]
    func metrics() async -> GovernorMetrics
}
