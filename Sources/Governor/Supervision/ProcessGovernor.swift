// The governor of one deployment: owns the deployment lock and one ManagedProcess per name.
// Governor-level operations (start, stop, restart, add, remove) run one at a time under `operations`;
// per-process work is delegated to the ManagedProcess actors (lock order: see ManagedProcess.swift).
// Phase 2 adds the control endpoint, CLI and HTTP on top of this type's public API.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Interposer

public struct GovernorOptions: Sendable {
    /// Policy time (backoff, restart window, healthy-run reset). Tests pass a ManualGovernorClock.
    public var clock: any GovernorClock
    /// Seeds the backoff jitter of every process (mixed with its name).
    public var seed: UInt64
    public var probes: ReadinessProbes
    /// Called for every lifecycle event (after it is written to events.jsonl).
    public var eventObserver: (@Sendable (LifecycleEvent) -> Void)?
    /// The governor's own environment, source of `Deployment.inheritEnvironment`.
    public var parentEnvironment: [String: String]
    /// SIGTERM -> SIGKILL timeout for orphans found at start.
    public var orphanStopTimeout: Duration

    public init(clock: any GovernorClock = SystemGovernorClock(), seed: UInt64 = 0x5eed,
                probes: ReadinessProbes = ReadinessProbes(),
                eventObserver: (@Sendable (LifecycleEvent) -> Void)? = nil,
                parentEnvironment: [String: String] = Foundation.ProcessInfo.processInfo.environment,
                orphanStopTimeout: Duration = .seconds(5)) {
        self.clock = clock
        self.seed = seed
        self.probes = probes
        self.eventObserver = eventObserver
        self.parentEnvironment = parentEnvironment
        self.orphanStopTimeout = orphanStopTimeout
    }
}

public actor ProcessGovernor: GovernorBase {
    public nonisolated let deploymentName: String
    /// `<deployments root>/<deployment>`: holds pids/, logs/, run/, events.jsonl, governor.lock.
    public nonisolated let directory: URL
    public nonisolated let events: LifecycleLog
    public nonisolated let latency = LatencyRecorder()
    private let options: GovernorOptions
    private var deployment: Deployment
    private var processes: [String: ManagedProcess] = [:]
    private var order: [String] = []
    private var lock: DeploymentLock?
    /// The interposers of interposed processes, by process name: started before their process, kept across
    /// its restarts, stopped after it (docs/GOVERNOR.md, "Interposed links").
    private var links: [String: ChaosProxy] = [:]
    /// The server interposer's map from handlers' private endpoints to their public ones.
    private let rewriter = AddressRewriter()
    private let operations = OperationLock()
    public private(set) var lastReconcile = ReconcileReport()
    /// Cgroup or process group for every child, decided at `start` (ProcessTree.swift).
    private let tree = ProcessTreeState()
    /// The process-tree mode in force (nil before the first start).
    public nonisolated var processTree: ProcessTreeMode? { tree.mode }

    /// `directory` is the deployment folder itself (e.g. `deployments/ci`).
    public init(deployment: Deployment, directory: URL, options: GovernorOptions = GovernorOptions()) throws {
        try Names.validateDeployment(deployment.name)
        self.deploymentName = deployment.name
        self.directory = directory
        self.deployment = deployment
        self.options = options
        self.events = LifecycleLog(path: directory.appendingPathComponent("events.jsonl").path,
                               observer: options.eventObserver)
    }

    /// `<root>/<deployment.name>`.
    public init(deployment: Deployment, deploymentsRoot: URL, options: GovernorOptions = GovernorOptions()) throws {
        try Names.validateDeployment(deployment.name)
        try self.init(deployment: deployment, directory: deploymentsRoot.appendingPathComponent(deployment.name),
                      options: options)
    }

    public nonisolated func path(_ component: String) -> String { directory.appendingPathComponent(component).path }

    // MARK: GovernorBase

    public var isRunning: Bool { lock != nil }

    public func start() async throws {
        await operations.acquire()
        defer { operations.release() }
        guard lock == nil else { return }
        lock = try DeploymentLock.acquire(deployment: deploymentName, directory: directory)
        do {
            // pids/, logs/, run/ were made (0700, no symbolic link) by DeploymentLock.acquire.
            lastReconcile = await Reconciler.reconcile(pidsDirectory: path("pids"), deploymentDirectory: directory.path,
                                                       stopTimeout: options.orphanStopTimeout, events: events,
                                                       deploymentName: deploymentName)
            let mode = ProcessTree.prepare(name: deploymentName, folder: directory.path,
                                           environment: options.parentEnvironment)
            tree.mode = mode
            if case .processGroup(let reason) = mode {
                events.record("governor", .warning,
                              detail: "process trees by process group only (a descendant that calls setsid escapes it): \(reason)")
            }
            for config in deployment.processes where processes[config.id] == nil {
                try register(config)
            }
            for name in order { if let p = processes[name] { try startLink(p.config) } }
        } catch {
            if case .cgroup(let group)? = tree.mode { ProcessTree.removeDeploymentGroup(group) }
            stopLinks()
            lock?.release()
            lock = nil
            throw error
        }
        events.record("governor", .governorStarted, pid: getpid(), detail: deploymentName)
        var failures: [String] = []
        if let server = deployment.server, let process = processes[server.id] {
            do { try await process.start() } catch { failures.append("\(error)") }
        }
        let handlers = order.compactMap { name in processes[name] }.filter { $0.config.role == .handler }
        failures += await Self.startAll(handlers)
        if !failures.isEmpty {
            throw GovernorError.startFailed(name: deploymentName, reason: failures.joined(separator: "; "))
        }
    }

    public func stop(timeout: Duration? = nil) async {
        await operations.acquire()
        defer { operations.release() }
        await stopAllLocked(timeout: timeout)
    }

    public func restart(timeout: Duration? = nil) async throws {
        await stop(timeout: timeout)
        try await start()
    }

    public func status() async -> [ManagedProcessInfo] {
        var infos: [ManagedProcessInfo] = []
        for name in order { if let p = processes[name] { infos.append(await infoWithLink(p)) } }
        return infos
    }

    /// The interposer in front of `name`, if it is interposed and the governor runs.
    public func link(_ name: String) -> ChaosProxy? { links[name] }

    private func infoWithLink(_ p: ManagedProcess) async -> ManagedProcessInfo {
        var info = await p.info()
        if let l = links[info.name], let spec = p.config.interposer {
            info.link = LinkInfo(publicEndpoint: spec.publicEndpoint, privateEndpoint: spec.privateEndpoint,
                                 control: l.controlEndpoint ?? "", journal: l.configuration.journalPath ?? "",
                                 counters: l.linkCounters, faults: l.faults.isQuiet ? l.linkFaults.json : l.faults.json)
        }
        return info
    }

    /// Starts the interposer of an interposed process: binds its public endpoint, connects to the private one,
    /// serves faults on `run/<name>.link` and journals to `links/<name>.jsonl`.
    private func startLink(_ config: HandlerConfig) throws {
        guard let spec = config.interposer, links[config.id] == nil else { return }
        if config.role == .handler { rewriter.set(private: spec.privateEndpoint, public: spec.publicEndpoint) }
        let proxyConfig = ChaosProxyConfiguration(
            listen: spec.publicEndpoint, upstream: spec.privateEndpoint, control: linkControlEndpoint(config.id),
            seed: options.seed ^ fnv1a("link:" + config.id), name: config.id,
            journalPath: path("links/\(config.id).jsonl"), linkTimeout: spec.timeout,
            rewriter: config.role == .server ? rewriter : nil)
        do {
            links[config.id] = try ChaosProxy(proxyConfig)
        } catch {
            throw GovernorError.startFailed(name: config.id, reason: "its interposer: \(error)")
        }
        events.record(config.id, .linkStarted, pid: getpid(), detail: "\(spec.publicEndpoint) -> \(spec.privateEndpoint)")
    }

    private func stopLink(_ name: String) {
        guard let l = links.removeValue(forKey: name) else { return }
        let spec = processes[name]?.config.interposer
        if let spec { rewriter.remove(private: spec.privateEndpoint) }
        l.stop()
        // libzmq 4.3 leaves an ipc listener's file behind on close: remove the link's own (public, control)
        // and the private one its process bound, each only if it is a socket inside run/ (never a symlink).
        for endpoint in [spec?.publicEndpoint, spec?.privateEndpoint, l.controlEndpoint].compactMap({ $0 }) {
            removeRunSocket(endpoint)
        }
        let c = l.linkCounters
        events.record(name, .linkStopped, pid: getpid(),
                      detail: "\(c.requests) requests, \(c.lost) lost, \(c.late) late, \(c.duplicateExecutions) duplicate executions")
    }

    private func removeRunSocket(_ endpoint: String) {
        guard endpoint.hasPrefix("ipc://") else { return }
        let file = String(endpoint.dropFirst(6))
        guard (file as NSString).deletingLastPathComponent == path("run") else { return }
        var st = stat()
        if lstat(file, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK { unlink(file) }
    }

    private func stopLinks() { for name in links.keys.sorted() { stopLink(name) } }

    /// `ipc://<deployment>/run/<name>.link`: the interposer's control endpoint (szchaos finds it there).
    public nonisolated func linkControlEndpoint(_ name: String) -> String { "ipc://" + path("run/\(name).link") }

    @discardableResult
    public func addHandler(_ config: HandlerConfig) async throws -> ManagedProcessInfo {
        await operations.acquire()
        defer { operations.release() }
        try Names.validateProcess(config.id)
        guard processes[config.id] == nil else {
            throw GovernorError.duplicateProcess(deployment: deploymentName, name: config.id)
        }
        let process = try register(config)
        if isRunning {
            do { try startLink(config) } catch {
                processes[config.id] = nil
                order.removeAll { $0 == config.id }
                throw error
            }
            try await process.start()
        }
        return await infoWithLink(process)
    }

    public func removeHandler(_ id: String) async throws {
        await operations.acquire()
        defer { operations.release() }
        let process = try lookup(id)
        await process.stop()
        stopLink(id)
        processes[id] = nil
        order.removeAll { $0 == id }
    }

    public func restartHandler(_ id: String) async throws {
        try await lookup(id).restart()
    }

    public func handlerStatus(_ id: String) async throws -> ManagedProcessInfo {
        try await lookup(id).info()
    }

    public func listHandlers() async -> [ManagedProcessInfo] {
        await status().filter { $0.role == .handler }
    }

    public func healthCheck() async -> [String: Bool] {
        Dictionary(uniqueKeysWithValues: await status().map { ($0.name, $0.status == .running) })
    }

    public func metrics() async -> GovernorMetrics {
        let infos = await status()
        return GovernorMetrics(
            deployment: deploymentName, running: isRunning, totalServices: infos.count,
            healthyServices: infos.filter { $0.status == .running }.count,
            totalRestarts: infos.reduce(0) { $0 + $1.restartCount },
            services: Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) }),
            restartLatencyMs: LatencySummary(samples: latency.respawnMs),
            readyLatencyMs: LatencySummary(samples: latency.readyMs))
    }

    // MARK: pattern operations

    /// Names (in deployment order) matching a glob such as `h-*`.
    public func names(matching glob: String) -> [String] {
        order.filter { Names.matches($0, glob: glob) }
    }

    public func count(matching glob: String) -> Int { names(matching: glob).count }

    public func status(matching glob: String) async -> [ManagedProcessInfo] {
        await status().filter { Names.matches($0.name, glob: glob) }
    }

    /// Stops every process matching `glob`, concurrently. Throws `noMatch` when nothing matches.
    @discardableResult
    public func stop(matching glob: String, timeout: Duration? = nil) async throws -> [String] {
        let targets = try matched(glob)
        await withTaskGroup(of: Void.self) { group in
            for (_, p) in targets { group.addTask { await p.stop(timeout: timeout) } }
        }
        return targets.map(\.0)
    }

    /// Restarts every process matching `glob`, concurrently. Throws the first failure after all ran.
    @discardableResult
    public func restart(matching glob: String, timeout: Duration? = nil) async throws -> [String] {
        let targets = try matched(glob)
        var failures: [String] = []
        await withTaskGroup(of: String?.self) { group in
            for (_, p) in targets {
                group.addTask {
                    do { try await p.restart(timeout: timeout); return nil } catch { return "\(error)" }
                }
            }
            for await f in group { if let f { failures.append(f) } }
        }
        if !failures.isEmpty {
            throw GovernorError.startFailed(name: glob, reason: failures.sorted().joined(separator: "; "))
        }
        return targets.map(\.0)
    }

    /// Starts `count` new instances of `spec`, named `<spec.id>-<n>` with the lowest free numbers.
    /// Started at once when the governor runs.
    @discardableResult
    public func startInstances(of spec: HandlerConfig, count: Int) async throws -> [String] {
        var names: [String] = []
        var n = 1
        while names.count < count {
            let name = "\(spec.id)-\(n)"
            if processes[name] == nil {
                var config = spec
                config.id = name
                try await addHandler(config)
                names.append(name)
            }
            n += 1
        }
        return names
    }

    /// The managed process named `name` (for tests and phase-2 wiring).
    public func process(_ name: String) throws -> ManagedProcess { try lookup(name) }

    // MARK: internals

    private func lookup(_ name: String) throws -> ManagedProcess {
        guard let p = processes[name] else {
            throw GovernorError.unknownProcess(deployment: deploymentName, name: name, known: order)
        }
        return p
    }

    private func matched(_ glob: String) throws -> [(String, ManagedProcess)] {
        let names = names(matching: glob)
        guard !names.isEmpty else { throw GovernorError.noMatch(deployment: deploymentName, pattern: glob, known: order) }
        return names.compactMap { n in processes[n].map { (n, $0) } }
    }

    @discardableResult
    private func register(_ config: HandlerConfig) throws -> ManagedProcess {
        try Names.validateProcess(config.id)
        let process = ManagedProcess(config: config, context: try makeContext(for: config))
        processes[config.id] = process
        if config.role == .server { order.insert(config.id, at: 0) } else { order.append(config.id) }
        return process
    }

    /// Resolves the executable and composes the environment (inherited names, global, per process, markers).
    func makeContext(for config: HandlerConfig) throws -> ProcessContext {
        var env = deployment.childEnvironment(for: config, parent: options.parentEnvironment)
        env[Reconciler.markerVariable] = directory.path
        env["SZGOVERNOR_DEPLOYMENT"] = deploymentName
        env["SZGOVERNOR_NAME"] = config.id
        // Every child gets SIGTERM when this governor dies, even by SIGKILL (PR_SET_PDEATHSIG, spawned on the
        // event loop's thread, which lives as long as the governor); szmock also checks at start that its
        // parent is still this governor (the race with a governor that died during the spawn).
        env["SZGOVERNOR_PID"] = "\(getpid())"
        let executable = try deployment.resolvedExecutable(for: config, parent: options.parentEnvironment)
        let spawn = SpawnRequest(executable: executable, arguments: config.arguments, environment: env,
                                 logPath: path("logs/\(config.id).log"), workingDirectory: config.workingDirectory,
                                 logRotation: config.log, deathSignal: SIGTERM)
        return ProcessContext(spawn: spawn, pidFilePath: path("pids/\(config.id).pid"),
                              probe: try options.probes.probe(for: config), clock: options.clock,
                              events: events, latency: latency, seed: options.seed ^ fnv1a(config.id),
                              pidFileExtra: ["deployment": deploymentName], tree: tree)
    }

    private func stopAllLocked(timeout: Duration?) async {
        guard lock != nil else { return }
        let all = order.compactMap { processes[$0] }
        await withTaskGroup(of: Void.self) { group in
            for p in all where p.config.role == .handler { group.addTask { await p.stop(timeout: timeout) } }
        }
        for p in all where p.config.role == .server { await p.stop(timeout: timeout) }
        // The children's last lines may still be in their pipes: let the log pump write them (bounded: a
        // descendant that escaped the group kill could hold a pipe open).
        await LogPump.shared.waitDrained(Set(all.map { path("logs/\($0.config.id).log") }), timeout: .seconds(1))
        if case .cgroup(let group)? = tree.mode {
            let leftovers = await BlockingPool.shared.run { ProcessTree.removeDeploymentGroup(group) }
            if !leftovers.isEmpty {
                events.record("governor", .warning, detail: "killed what was left in the cgroups of \(leftovers.joined(separator: ", "))")
            }
        }
        stopLinks()
        events.record("governor", .governorStopped, pid: getpid(), detail: deploymentName)
        lock?.release()
        lock = nil
    }

    private static func startAll(_ processes: [ManagedProcess]) async -> [String] {
        await withTaskGroup(of: String?.self) { group in
            for p in processes {
                group.addTask {
                    do { try await p.start(); return nil } catch { return "\(error)" }
                }
            }
            var failures: [String] = []
            for await f in group { if let f { failures.append(f) } }
            return failures.sorted()
        }
    }
}

/// Stable 64-bit FNV-1a of a string (seeds per-process jitter).
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
