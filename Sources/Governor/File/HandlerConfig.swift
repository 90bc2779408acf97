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
    /// Set when an interposer sits on the process's link: `endpoint` is then the public endpoint (the
    /// interposer binds it) and the process itself binds `interposer.privateEndpoint`.
    public var interposer: InterposerSpec?
    /// Where the child starts (`working_dir:`; absolute, checked to be a directory at load). nil: the
    /// governor's current directory.
    public var workingDirectory: String?
    /// Checks after readiness (`liveness:`); nil: none.
    public var liveness: LivenessSpec?
    /// Size rotation of `logs/<id>.log` (the file's `log: {max_size, backups}`; 50 MiB and 10 by default).
    public var log = LogRotation()
    /// The handler spec of the file it was expanded from (`h` for `h-2`) and its replica index (nil: a spec
    /// without `replicas`, or the server).
    public var specID: String?
    public var replicaIndex: Int?
    /// The per-process variables it was expanded with (NAME, INDEX, PORT, ENDPOINT, READY_FILE, ...; those
    /// that differ between replicas of one spec), as `${...}` gave them: `szgovernor export` maps them.
    public var instanceVariables: [String: String] = [:]

    /// The variables that differ between processes of one spec.
    public static let instanceVariableNames = ["NAME", "INDEX", "PORT", "ENDPOINT", "PUBLIC_PORT", "PUBLIC_ENDPOINT", "READY_FILE"]

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

    /// Where the process itself answers: its private endpoint when interposed, else `endpoint`. Readiness
    /// and liveness probes go here, so a fault on the link does not fail the process's own start.
    public var directEndpoint: String? { interposer?.privateEndpoint ?? endpoint }

    /// Upstream's `auto_restart`.
    public var autoRestart: Bool { restart.mode != .never }
    /// Upstream's `max_restarts`.
    public var maxRestarts: Int { restart.maxRestarts }
    /// Upstream's `restart_delay`: the first non-immediate backoff step.
    public var restartDelay: Duration { restart.backoff.initial }
}

/// An interposed link in front of one process (`interpose:` in the deployment file; docs/GOVERNOR.md).
public struct InterposerSpec: Sendable, Hashable {
    /// What clients use and the interposer binds (the deployment file's `endpoint`).
    public var publicEndpoint: String
    /// What the process binds (`${ENDPOINT}` / `${PORT}` in its command and environment).
    public var privateEndpoint: String
    /// A request forwarded and not answered within this is a lost request.
    public var timeout: Duration

    public init(publicEndpoint: String, privateEndpoint: String, timeout: Duration = .seconds(10)) {
        self.publicEndpoint = publicEndpoint
        self.privateEndpoint = privateEndpoint
        self.timeout = timeout
    }
}
