/// How to run one process (the server or a handler) of a deployment.
public struct HandlerConfig: Sendable, Hashable {
    /// The process name: handler id (`h-1`) or `server`. Also the PID file and log file name.
    public var id: String
    public var role: ProcessRole
    /// As configured: an absolute path, a path relative to the deployment file, or a bare name that is
    /// resolved once against PATH (and the result recorded); see ExecutableResolver.
    public var executable: String
    public var arguments: [String]
    /// Where the process serves (e.g. `tcp://127.0.0.1:4245`, `ipc:///…`); used by readiness probes.
    public var endpoint: String?
    /// Per-process variables, over the deployment's global environment.
    public var environment: [String: String]
    public var restart: RestartPolicy
    /// SIGTERM to the group, then SIGKILL after this long.
    public var stopTimeout: Duration
    public var readiness: ReadinessSpec
    /// Anything else the deployment file gave (kept as text for later phases).
    public var settings: [String: String]
    /// Size rotation of `logs/<id>.log` (the file's `log: {max_size, backups}`; 50 MiB and 10 by default).
    public var log = LogRotation()

    public init(id: String, role: ProcessRole = .handler, executable: String, arguments: [String] = [],
                endpoint: String? = nil, environment: [String: String] = [:],
                restart: RestartPolicy = RestartPolicy(), stopTimeout: Duration = .seconds(5),
                readiness: ReadinessSpec = .none, settings: [String: String] = [:]) {
        self.id = id
        self.role = role
        self.executable = executable
        self.arguments = arguments
        self.endpoint = endpoint
        self.environment = environment
        self.restart = restart
        self.stopTimeout = stopTimeout
        self.readiness = readiness
        self.settings = settings
    }

    /// Upstream's `auto_restart`.
    public var autoRestart: Bool { restart.mode != .never }
    /// Upstream's `max_restarts`.
    public var maxRestarts: Int { restart.maxRestarts }
    /// Upstream's `restart_delay`: the first non-immediate backoff step.
    public var restartDelay: Duration { restart.backoff.initial }
}
