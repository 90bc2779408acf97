// A running governor as `szgovernor up` runs it: the ProcessGovernor of one deployment file, its control
// endpoint, the preflight of fixed TCP ports, graceful and forced shutdown, and the operations a second
// process asks for (status, restart, add, remove, scale, down). The executable only parses and wires.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ScheduleZeroWire
import Synchronization

public actor GovernorService {
    public nonisolated let locator: DeploymentLocator
    public nonisolated let governor: ProcessGovernor
    public nonisolated let variables: [String: String]
    private var deployment: Deployment
    private var replicaOverrides: [String: Int] = [:]
    private var control: ControlServer?
    private var stopTask: Task<Void, Never>?
    private var stoppedWaiters: [CheckedContinuation<Void, Never>] = []
    private var stopped = false
    /// The HTTP port when `up --http-port` serves /healthz and /metrics (reported by `status`).
    public private(set) var httpPort: Int?
    public func setHTTPPort(_ port: Int?) { httpPort = port }
    public nonisolated let startedAt = Date()

    /// Loads the deployment file (errors name file, line and field) and builds the governor.
    public init(locator: DeploymentLocator, variables: [String: String] = BuildVariables.variables(),
                options: GovernorOptions = GovernorOptions()) throws {
        self.locator = locator
        self.variables = variables
        if let problem = EndpointLimits.problem(locator.controlEndpoint) {
            throw GovernorError.invalidConfig("the governor's control endpoint under --root \(locator.root): \(problem); nothing was started")
        }
        let deployment = try DeploymentFile.load(path: locator.file, variables: variables, deploymentsRoot: locator.root)
        guard deployment.name == locator.deploymentName else {
            throw GovernorError.invalidConfig("\(locator.file) defines deployment \"\(deployment.name)\", not \"\(locator.deploymentName)\"")
        }
        self.deployment = deployment
        self.governor = try ProcessGovernor(deployment: deployment, directory: locator.directory, options: options)
    }

    public var deploymentName: String { deployment.name }

    // MARK: lifecycle

    /// Checks fixed ports, starts every process (server first) and waits until all are ready, then serves
    /// the control endpoint. A failed start stops whatever started and throws, naming the process and the
    /// last lines of its log.
    public func start() async throws {
        try EndpointPreflight.check(deployment)
        do {
            try await governor.start()
        } catch let error as GovernorError {
            if case .deploymentLocked = error { throw error }
            let infos = await governor.status()
            await governor.stop()
            throw GovernorError.startFailed(name: "deployment \"\(deployment.name)\"",
                                            reason: error.description + logHints(infos))
        }
        if stopTask != nil { return }  // a signal arrived while starting: the stop is under way
        do {
            try DeploymentFolder.ensureDirectory(locator.path("run"))  // 0700: the control socket's only way in
            let events = governor.events
            control = try ControlServer(endpoint: locator.controlEndpoint, onRefused: { refusal in
                events.record("governor", .controlRefused, pid: refusal.credentials?.pid,
                              detail: "\(refusal.method ?? "a request") from \(refusal.credentials.map { "\($0)" } ?? refusal.peerAddress ?? "an unknown peer") refused: \(refusal.reason)")
            }) { [weak self] request in
                guard let self else { return .failure("the governor is stopping") }
                return await self.handle(request)
            }
        } catch {
            await governor.stop()
            throw error
        }
        if stopTask != nil { control?.stop() }  // a stop raced the bind
    }

    private func logHints(_ infos: [ManagedProcessInfo]) -> String {
        let failed = infos.filter { $0.status != .running }
        guard !failed.isEmpty else { return "" }
        return failed.map { info in
            let log = locator.path("logs/\(info.name).log")
            let tail = RotatedLog.tail(of: log, lines: 3).joined(separator: " | ")
            return "\n  \(info.name) (\(info.status.rawValue)): log \(log)" + (tail.isEmpty ? "" : ": \(tail)")
        }.joined()
    }

    /// Stops handlers then the server (each SIGTERM, SIGKILL of its group after its stop timeout), stops
    /// serving the control endpoint and releases the lock. Concurrent calls share one stop.
    public func shutdown() async {
        if stopTask == nil {
            stopTask = Task {
                await governor.stop()
                // Sockets and ready files the children left in run/ (szmock exits without waiting for
                // libzmq to unlink its ipc files); the control endpoint goes when its socket closes.
                GovernorOffline.cleanRunDirectory(locator, keeping: ["governor.control"])
                await self.finishStop()
            }
        }
        await stopTask?.value
    }

    private func finishStop() {
        control?.stop()  // non-blocking: the reply to a `down` request is still to be sent
        stopped = true
        for w in stoppedWaiters { w.resume() }
        stoppedWaiters.removeAll()
    }

    /// The control server, for `join()` from a thread of the caller's after `waitUntilStopped`.
    public var controlServer: ControlServer? { control }

    /// Suspends until `shutdown` has finished.
    public func waitUntilStopped() async {
        if stopped { return }
        await withCheckedContinuation { stoppedWaiters.append($0) }
    }

    /// The second signal: SIGKILL every process group this deployment's PID files name (verified identity
    /// only), now. Synchronous and lock-free, so a signal thread can call it while a graceful stop waits.
    public nonisolated func forceKill() -> [String] {
        let killed = Self.killVerifiedGroups(pidsDirectory: locator.path("pids"), deploymentDirectory: locator.directory.path)
        if case .cgroup(let group)? = governor.processTree {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: group)) ?? [] {
                let cg = ProcessCgroup(path: (group as NSString).appendingPathComponent(name))
                if cg.exists, cg.isPopulated { cg.kill() }
            }
        }
        return killed
    }

    static func killVerifiedGroups(pidsDirectory: String, deploymentDirectory: String) -> [String] {
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: pidsDirectory)) ?? [])
            .filter { $0.hasSuffix(".pid") && $0 != "governor.pid" }.sorted()
        var killed: [String] = []
        for file in files {
            let path = (pidsDirectory as NSString).appendingPathComponent(file)
            guard case .alive(let identity) = PidFile.verify(path),
                  processEnvironmentValue(pid: identity.pid, name: Reconciler.markerVariable) == deploymentDirectory
            else { continue }
            let pidfd = SystemCalls.pidfdOpen(identity.pid)
            guard pidfd >= 0 else { continue }
            if let again = ProcessIdentity.of(pid: identity.pid), again.matches(identity) {
                if ProcStat.read(pid: identity.pid)?.processGroup == identity.pid { kill(-identity.pid, SIGKILL) }
                _ = SystemCalls.pidfdSendSignal(pidfd, SIGKILL)
                killed.append(String(file.dropLast(4)))
            }
            close(pidfd)
        }
        return killed
    }

    // MARK: reads

    public func statusJSON() async -> JSONValue {
        let infos = await governor.status()
        return .object([
            "deployment": .string(deployment.name), "governor_pid": .int(Int64(getpid())),
            "running": .bool(await governor.isRunning), "file": .string(locator.file),
            "control": .string(locator.controlEndpoint),
            "http_port": httpPort.map { .int(Int64($0)) } ?? .null,
            "process_tree": governor.processTree.map { .object($0.json.mapValues { .string($0) }) } ?? .null,
            "processes": .array(infos.map(\.json)),
        ])
    }

    // MARK: control requests

    public func handle(_ request: Request) async -> Reply {
        do {
            return try await dispatch(request)
        } catch {
            return .failure("\(error)")
        }
    }

    private func dispatch(_ request: Request) async throws -> Reply {
        let p = request.params
        switch request.method {
        case "ping":
            return .ok(["message": "pong", "deployment": .string(deployment.name), "governor_pid": .int(Int64(getpid()))])
        case "status":
            guard case .object(var o) = await statusJSON() else { return .failure("status") }
            o["success"] = true
            return Reply(fields: o)
        case "health":
            let health = await governor.healthCheck()
            return .ok(["deployment": .string(deployment.name), "healthy": .bool(!health.isEmpty && health.values.allSatisfy { $0 }),
                        "services": .object(health.mapValues { .bool($0) })])
        case "metrics":
            let data = try JSONEncoder.sorted.encode(await governor.metrics())
            guard case .object(var o) = try JSON.parse(Array(data)) else { return .failure("metrics") }
            o["success"] = true
            return Reply(fields: o)
        case "down":
            await shutdown()
            return .ok(["deployment": .string(deployment.name), "stopped": true])
        case "restart":
            guard let pattern = p["pattern"]?.stringValue ?? p["name"]?.stringValue else {
                return .failure("restart needs {\"pattern\": NAME or GLOB}")
            }
            try await checkKnown(pattern, glob: true)
            let names = try await governor.restart(matching: pattern)
            return .ok(["restarted": .array(names.map { .string($0) })])
        case "remove":
            guard let name = p["name"]?.stringValue else { return .failure("remove needs {\"name\": NAME}") }
            try await checkKnown(name, glob: false)
            try await governor.removeHandler(name)
            return .ok(["removed": .string(name)])
        case "add":
            let info = try await add(p)
            return .ok(["added": info.json])
        case "scale":
            guard let name = p["name"]?.stringValue, let n = p["replicas"]?.intValue else {
                return .failure("scale needs {\"name\": SPEC, \"replicas\": N}")
            }
            let (added, removed) = try await scale(name, to: Int(n))
            return .ok(["added": .array(added.map { .string($0) }), "removed": .array(removed.map { .string($0) })])
        default:
            return .failure(Wire.unknownMethod(request.method))
        }
    }

    /// Handlers only: `deployment "ci" has no handler "h9" (known: h-1, h-2)`.
    private func checkKnown(_ pattern: String, glob: Bool) async throws {
        let handlers = await governor.listHandlers().map(\.name)
        let all = await governor.status().map(\.name)
        let isGlob = glob && pattern.contains(where: { "*?[".contains($0) })
        if isGlob {
            guard all.contains(where: { Names.matches($0, glob: pattern) }) else {
                throw GovernorError.invalidConfig("no process of deployment \"\(deployment.name)\" matches \"\(pattern)\" (known: \(all.joined(separator: ", ")))")
            }
        } else if !(glob ? all : handlers).contains(pattern) {
            throw GovernorError.invalidConfig("deployment \"\(deployment.name)\" has no handler \"\(pattern)\" (known: \(handlers.isEmpty ? "none" : handlers.joined(separator: ", ")))")
        }
    }

    /// `add {id, command?, endpoint?, readiness?, restart?, stop_timeout?, environment?}`. Without a command:
    /// a szmock handler on `ipc://<run>/<id>.sock`, registered with the server, ready when it answers ping.
    private func add(_ p: [String: JSONValue]) async throws -> ManagedProcessInfo {
        guard let id = p["id"]?.stringValue ?? p["name"]?.stringValue else { throw GovernorError.invalidConfig("add needs an id") }
        try Names.validateProcess(id)
        var vars = variables
        let run = locator.path("run")
        vars["DEPLOYMENT"] = deployment.name
        vars["DEPLOYMENT_DIR"] = locator.directory.path
        vars["RUN_DIR"] = run
        vars["LOG_DIR"] = locator.path("logs")
        vars["NAME"] = id
        vars["INDEX"] = "1"
        vars["READY_FILE"] = run + "/\(id).ready"
        vars["SERVER_ENDPOINT"] = deployment.server?.endpoint ?? ""
        let endpoint = try BuildVariables.expand(p["endpoint"]?.stringValue ?? "ipc://${RUN_DIR}/${NAME}.sock", vars)
        vars["ENDPOINT"] = endpoint
        var command = (p["command"]?.arrayValue ?? []).compactMap(\.stringValue)
        if command.isEmpty {
            command = ["${SZMOCK}", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}", "--control", "ipc://${RUN_DIR}/${NAME}.control"]
            if deployment.server?.endpoint != nil { command += ["--server", "${SERVER_ENDPOINT}"] }
        }
        command = try command.map { try BuildVariables.expand($0, vars) }
        let template = deployment.handlers.first
        var config = HandlerConfig(id: id, executable: command[0], arguments: Array(command.dropFirst()), endpoint: endpoint,
                                   restart: template?.restart ?? RestartPolicy(),
                                   stopTimeout: template?.stopTimeout ?? .seconds(5))
        config.log = template?.log ?? LogRotation()
        for (k, v) in p["environment"]?.objectValue ?? [:] { config.environment[k] = try BuildVariables.expand(v.stringValue ?? "", vars) }
        if let mode = p["restart"]?.stringValue {
            guard let m = RestartMode(rawValue: mode) else {
                throw GovernorError.invalidConfig("restart must be always, on-failure or never (got \"\(mode)\")")
            }
            config.restart.mode = m
        }
        if let t = p["stop_timeout"]?.stringValue {
            guard let d = DurationText.value(t), d > .zero else {
                throw GovernorError.invalidConfig("stop_timeout \"\(t)\" is not a duration longer than 0 and at most \(DurationText.maximumDescription)")
            }
            config.stopTimeout = d
        }
        switch p["readiness"]?.stringValue ?? "ping" {
        case "ping": config.readiness = .custom(kind: "ping", settings: [:], timeout: .seconds(10))
        case "none": config.readiness = .none
        case "ready-file":
            config.readiness = .readyFile(path: vars["READY_FILE"]!, timeout: .seconds(10))
        case let other: throw GovernorError.invalidConfig("readiness must be ping, none or ready-file (got \"\(other)\")")
        }
        let count = await governor.listHandlers().count + (deployment.server == nil ? 0 : 1)
        guard count < deployment.maxProcesses else {
            throw GovernorError.invalidConfig("deployment \"\(deployment.name)\" already has \(count) processes, its max_processes")
        }
        for endpoint in [config.endpoint].compactMap({ $0 }) + config.arguments {
            if let problem = EndpointLimits.problem(endpoint) { throw GovernorError.invalidConfig(problem) }
        }
        return try await governor.addHandler(config)
    }

    /// Sets the replica count of a handler spec of the deployment file: starts the missing instances
    /// (`h-4`...), stops and removes the ones above `n`.
    public func scale(_ spec: String, to n: Int) async throws -> (added: [String], removed: [String]) {
        guard n >= 0 else { throw GovernorError.invalidConfig("replicas must be >= 0 (got \(n))") }
        guard deployment.handlerSpecs[spec] != nil else {
            throw GovernorError.invalidConfig("deployment \"\(deployment.name)\" has no handler spec \"\(spec)\" (specs: \(deployment.handlerSpecs.keys.sorted().joined(separator: ", ")))")
        }
        var overrides = replicaOverrides
        overrides[spec] = n
        let wanted = try DeploymentFile.load(path: locator.file, variables: variables, deploymentsRoot: locator.root,
                                             replicas: overrides)
        func isInstance(_ name: String) -> Bool {
            guard name.hasPrefix(spec + "-") else { return false }
            return Int(name.dropFirst(spec.count + 1)) != nil
        }
        let wantedNames = Set(wanted.handlers.map(\.id).filter(isInstance))
        let current = await governor.listHandlers().map(\.name).filter(isInstance)
        var added: [String] = []
        var removed: [String] = []
        for name in current where !wantedNames.contains(name) {
            try await governor.removeHandler(name)
            removed.append(name)
        }
        for config in wanted.handlers where isInstance(config.id) && !current.contains(config.id) {
            try await governor.addHandler(config)
            added.append(config.id)
        }
        replicaOverrides = overrides
        return (added, removed)
    }

}
