import Foundation

/// A deployment: one optional server and its handlers, as loaded from a deployment file or built in code.
public struct Deployment: Sendable, Hashable {
    public var name: String
    public var server: HandlerConfig?
    /// Handlers with replicas expanded (`h` with `replicas: 3` -> `h-1`, `h-2`, `h-3`).
    public var handlers: [HandlerConfig]
    /// Global environment, under each process's own.
    public var environment: [String: String]
    /// Variables of the governor's environment passed on to children (nothing else is inherited).
    public var inheritEnvironment: [String]
    /// Folder that relative executables are resolved against (the deployment file's folder).
    public var baseDirectory: String?
    /// The file it came from, if any.
    public var sourcePath: String?
    /// Handler specs of the file by id, with their replica count (0: a spec without `replicas`, one process
    /// named by the id itself). `szgovernor scale` works on these.
    public var handlerSpecs: [String: Int] = [:]
    /// The ceiling on processes (server + handler instances): the file's `max_processes:`, default 1000.
    public var maxProcesses = ProcessLimits.defaultMaxProcesses
    /// Processes whose `interpose:` was left out at load (`DeploymentFile.load(interposers: false)`).
    public var interposersLeftOut: [String] = []

    /// `SZ_TEST_TMPDIR` is run_tests.sh's per-run marker: passing it on lets the runner find every process a
    /// test run started, governed children included, and fail the run if one outlives it.
    public static let defaultInherited = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SZ_TEST_TMPDIR"]

    public init(name: String, server: HandlerConfig? = nil, handlers: [HandlerConfig] = [],
                environment: [String: String] = [:], inheritEnvironment: [String] = Deployment.defaultInherited,
                baseDirectory: String? = nil, sourcePath: String? = nil) {
        self.name = name
        self.server = server
        self.handlers = handlers
        self.environment = environment
        self.inheritEnvironment = inheritEnvironment
        self.baseDirectory = baseDirectory
        self.sourcePath = sourcePath
    }

    /// Server first, then handlers in file order.
    public var processes: [HandlerConfig] { (server.map { [$0] } ?? []) + handlers }

    /// A child's environment before the governor's markers: the inherited names (from `parent`), the
    /// global environment, then the process's own.
    public func childEnvironment(for config: HandlerConfig, parent: [String: String]) -> [String: String] {
        var env: [String: String] = [:]
        for name in inheritEnvironment { env[name] = parent[name] }
        env.merge(environment) { $1 }
        env.merge(config.environment) { $1 }
        return env
    }

    /// The absolute executable the governor spawns for `config`: resolved against the file's folder and
    /// the child's PATH (ExecutableResolver).
    public func resolvedExecutable(for config: HandlerConfig, parent: [String: String]) throws(ExecutableError) -> String {
        try ExecutableResolver.resolve(config.executable, relativeTo: baseDirectory,
                                       searchPath: childEnvironment(for: config, parent: parent)["PATH"])
    }
}
