// The wiring of experiments to real deployments: a `DeploymentDriver` backed by the Governor library, a
// process `FaultActuator` (kill, kill-random, pause, signal) on verified targets, and a control-channel
// `FaultActuator` for the mock handler (drop-replies, delay, force-efsm, crash, garbage).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Governor
import Interposer
import MockPeers
import ScheduleZeroWire

/// Runs deployments with an in-process `ProcessGovernor` when they are not running already.
///
/// A deployment is running when its `pids/governor.pid` verifies alive, or its lock (`governor.lock`) is
/// held. Its processes and endpoints come from the deployment file (`deploymentFile(name)`), loaded with
/// `variables` (e.g. `SZMOCK`).
public final class GovernorDeploymentDriver: DeploymentDriver, @unchecked Sendable {
    public let root: String
    public let variables: [String: String]
    public let options: GovernorOptions
    private let deploymentFile: @Sendable (String) -> String
    private let lock = NSLock()
    private var loaded: [String: Deployment] = [:]
    private var governors: [String: ProcessGovernor] = [:]

    public init(root: String, variables: [String: String], options: GovernorOptions = GovernorOptions(),
                deploymentFile: @escaping @Sendable (String) -> String = { "Fixtures/deployments/\($0).yaml" }) {
        self.root = absolute(root)
        self.variables = variables
        self.options = options
        self.deploymentFile = deploymentFile
    }

    /// `SZMOCK` (env `SZMOCK`, else `szmock` next to the running executable) and `BIN_DIR`.
    public static func defaultVariables() -> [String: String] { BuildVariables.variables() }

    public func paths(_ name: String) throws -> DeploymentPaths { try DeploymentPaths(root: root, name: name) }

    public func eventLog(_ deployment: String) async throws -> String? {
        (try paths(deployment).directory as NSString).appendingPathComponent("events.jsonl")
    }

    public func linkJournals(_ deployment: String) async throws -> [String: String] {
        LinkSummary.journals(inDeployment: try paths(deployment).directory)
    }

    /// The deployment as its file describes it (loaded once).
    public func deployment(_ name: String) throws -> Deployment {
        if let d = lock.withLock({ loaded[name] }) { return d }
        _ = try paths(name)
        let file = deploymentFile(name)
        let d = try DeploymentFile.load(path: file, variables: variables, deploymentsRoot: root)
        guard d.name == name else {
            throw SignalError("deployment file \(file) describes deployment \(d.name), not \(name)")
        }
        lock.withLock { loaded[name] = d }
        return d
    }

    /// Whether a governor runs the deployment (this process's or another's).
    public static func isRunning(_ paths: DeploymentPaths) -> Bool {
        if PidFile.verify((paths.pidsDirectory as NSString).appendingPathComponent("governor.pid")).isSafeToSignal { return true }
        return DeploymentLock.isHeld(at: (paths.directory as NSString).appendingPathComponent("governor.lock"))
    }

    public func isRunning(_ deployment: String) async throws -> Bool {
        if lock.withLock({ governors[deployment] }) != nil { return true }
        return Self.isRunning(try paths(deployment))
    }

    public func start(_ deployment: String) async throws {
        let d = try self.deployment(deployment)
        let g = try ProcessGovernor(deployment: d, deploymentsRoot: URL(fileURLWithPath: root, isDirectory: true), options: options)
        do {
            try await g.start()
        } catch {
            await g.stop()
            throw error
        }
        lock.withLock { governors[deployment] = g }
    }

    /// Stops a deployment this driver started (one it did not start is left alone).
    public func stop(_ deployment: String) async throws {
        guard let g = lock.withLock({ governors.removeValue(forKey: deployment) }) else { return }
        await g.stop()
    }

    /// Stops every deployment this driver started.
    public func stopAll() async {
        let all = lock.withLock { () -> [ProcessGovernor] in
            defer { governors = [:] }
            return Array(governors.values)
        }
        for g in all { await g.stop() }
    }

    /// The governor this driver started for `deployment`, if any.
    public func governor(_ deployment: String) -> ProcessGovernor? { lock.withLock { governors[deployment] } }

    public func targets(_ deployment: String) async throws -> [String] {
        try self.deployment(deployment).processes.map(\.id)
    }

    public func endpoint(of target: String, in deployment: String) async throws -> String? {
        try self.deployment(deployment).processes.first { $0.id == target }?.endpoint
    }

    /// The handler names (fault candidates of experiments: the server is not one).
    public func handlers(_ deployment: String) throws -> [String] {
        try self.deployment(deployment).handlers.map(\.id)
    }
}

/// kill, kill-random, pause, signal on verified processes of a deployment (`params.signal`, default SIGKILL
/// for kill and kill-random). A target whose PID file does not verify is an error of that fault, never a
/// signal. Pause: the target's governor cgroup frozen at start and thawed at stop (its whole tree), or, when
/// it is in none, SIGSTOP at start and SIGCONT at stop through the same pidfd.
public final class ProcessFaultActuator: FaultActuator, @unchecked Sendable {
    public let name = "process"
    public let kinds: Set<FaultKind> = [.kill, .killRandom, .pause, .signal]
    public let paths: DeploymentPaths
    private let candidateNames: @Sendable () async throws -> [String]
    private let lock = NSLock()
    private var paused: [Int: [ProcessHandle]] = [:]

    public init(paths: DeploymentPaths, candidates: @escaping @Sendable () async throws -> [String]) {
        self.paths = paths
        self.candidateNames = candidates
    }

    public func candidates(for kind: FaultKind) async throws -> [String] { try await candidateNames() }

    static func signal(of fault: ScheduledFault) throws -> Int32 {
        let text: String?
        switch fault.params["signal"] {
        case .string(let s)?: text = s
        case .int(let i)?: text = String(i)
        case nil, .null?: text = nil
        default: throw SignalError("fault \(fault.name): params.signal must be a signal name like SIGKILL")
        }
        guard let text else {
            if fault.kind == .signal { throw SignalError("fault \(fault.name): a signal fault needs params.signal") }
            return SIGKILL
        }
        guard let n = SignalName.number(text) else {
            throw SignalError("fault \(fault.name): unknown signal \(text) (known: \(SignalName.known))")
        }
        return n
    }

    func verified(_ fault: ScheduledFault) throws -> [VerifiedTarget] {
        try fault.targets.map { t in
            switch DeploymentTargets.verify(t, in: paths) {
            case .success(let v): return v
            case .failure(let s): throw SignalError("\(s.name) not signalled: \(s.reason)")
            }
        }
    }

    public func start(_ fault: ScheduledFault) async throws -> String {
        let targets = try verified(fault)
        let handles = try targets.map { try ProcessHandle($0) }
        if fault.kind == .pause {
            var done: [ProcessHandle] = []
            var what: [String] = []
            do {
                for h in handles { what.append("\(h.name) (pid \(h.identity.pid)): \(try h.pause())"); done.append(h) }
            } catch {
                _ = SingleFaults.resume(done, why: "pause failed")
                throw error
            }
            lock.withLock { paused[fault.index] = handles }
            return "paused " + what.joined(separator: ", ")
        }
        let sig = try Self.signal(of: fault)
        for h in handles { try h.send(sig) }
        return "\(SignalName.name(sig)) sent to " + handles.map { "\($0.name) (pid \($0.identity.pid))" }.joined(separator: ", ")
    }

    public func stop(_ fault: ScheduledFault) async throws -> String? {
        guard fault.kind == .pause, let handles = lock.withLock({ paused.removeValue(forKey: fault.index) }) else { return nil }
        let done = SingleFaults.resume(handles, why: "end of the pause")
        if let bad = done.first(where: { !$0.ok }) { throw SignalError(bad.detail) }
        return "resumed " + done.map { "\($0.target) (pid \($0.pid.map(String.init) ?? "?")): \($0.detail)" }.joined(separator: ", ")
    }

    /// SIGCONT to everything still paused (on interruption). Returns what it did.
    @discardableResult
    public func resumeAll() -> [FaultAction] {
        let all = lock.withLock { () -> [ProcessHandle] in
            defer { paused = [:] }
            return paused.values.flatMap { $0 }
        }
        return SingleFaults.resume(all, why: "interrupted")
    }
}

/// drop-replies, delay, force-efsm, crash, garbage through the mock handler's control channel
/// (`ipc://<root>/<d>/run/<name>.control`), on verified targets. Params:
/// drop-replies `{count: N}` or `{probability: p}`; delay `{ms, jitter}`; force-efsm `{count}` (default 1);
/// crash `{exit_code}` or `{signal}` (set off at once by one request, unless `on_next_request: true`);
/// garbage `{kind: bytes|wrong_shape}`. Stop = `fault.clear`, for faults with a duration (force-efsm and
/// crash act once and are not cleared).
public final class ControlFaultActuator: FaultActuator, @unchecked Sendable {
    public let name = "control"
    public let kinds: Set<FaultKind> = [.dropReplies, .delay, .forceEFSM, .crash, .garbage]
    public let paths: DeploymentPaths
    public let timeout: Duration
    private let candidateNames: @Sendable () async throws -> [String]

    public init(paths: DeploymentPaths, timeout: Duration = .seconds(2), candidates: @escaping @Sendable () async throws -> [String]) {
        self.paths = paths
        self.timeout = timeout
        self.candidateNames = candidates
    }

    public func candidates(for kind: FaultKind) async throws -> [String] { try await candidateNames() }

    /// The `fault.set` params of a fault.
    public static func faultParams(_ kind: FaultKind, _ p: [String: JSONValue]) throws -> [String: JSONValue] {
        switch kind {
        case .dropReplies:
            if let c = p["count"] { return ["drop_next": c] }
            if let pr = p["probability"] { return ["drop_probability": pr] }
            return ["drop_next": 1]
        case .delay:
            return ["delay_ms": p["ms"] ?? .int(100), "jitter_ms": p["jitter"] ?? .int(0)]
        case .forceEFSM:
            return ["swallow_next": p["count"] ?? .int(1)]
        case .crash:
            var o: [String: JSONValue] = ["crash_after": .int(0)]
            if let s = p["signal"] { o["crash_signal"] = s } else if let c = p["exit_code"] { o["crash_exit_code"] = c }
            return o
        case .garbage:
            return ["garbage": p["kind"] ?? .string("bytes")]
        default:
            throw SignalError("\(kind.rawValue) is not a control-channel fault")
        }
    }

    public func start(_ fault: ScheduledFault) async throws -> String {
        let params = try Self.faultParams(fault.kind, fault.params)
        let crashNow = fault.kind == .crash && fault.params["on_next_request"]?.boolValue != true
        let paths = self.paths, timeout = self.timeout
        let actions: [FaultAction] = try await onOwnThread("control-fault") { () -> Result<[FaultAction], SignalError> in
            var out: [FaultAction] = []
            for t in fault.targets {
                switch DeploymentTargets.verify(t, in: paths) {
                case .failure(let s): return .failure(SignalError("\(s.name) not touched: \(s.reason)"))
                case .success(let v):
                    switch paths.faultEndpoints(t, method: "fault.set", params: params) {
                    case .failure(let e): return .failure(SignalError("\(t) not touched: \(e.message)"))
                    case .success(let endpoints):
                        for ep in endpoints {
                            out.append(SingleFaults.controlOne(v, endpoint: ep, method: "fault.set", params: params,
                                                               timeout: timeout, crashNow: crashNow))
                        }
                    }
                }
            }
            return .success(out)
        }.get()
        if let bad = actions.first(where: { !$0.ok }) { throw SignalError(bad.line) }
        return actions.map(\.line).joined(separator: "; ")
    }

    public func stop(_ fault: ScheduledFault) async throws -> String? {
        guard fault.duration > .zero, fault.kind != .forceEFSM, fault.kind != .crash else { return nil }
        let paths = self.paths, timeout = self.timeout
        let errors: [String] = await onOwnThread("control-clear") {
            fault.targets.flatMap { t -> [String] in
                guard case .success(let endpoints) = paths.faultEndpoints(t, method: "fault.clear", params: [:]), !endpoints.isEmpty else {
                    return ["\(t): no interposer or control channel to clear"]
                }
                return endpoints.compactMap { ep in
                    do {
                        let r = try MockControl.clearFaults(ep, timeout: timeout)
                        return r.success ? nil : "\(t): \(r.error ?? "?")"
                    } catch {
                        return "\(t): \(error)"
                    }
                }
            }
        }
        if !errors.isEmpty { throw SignalError("fault.clear failed: " + errors.joined(separator: "; ")) }
        return "fault.clear sent to " + fault.targets.joined(separator: ", ")
    }
}
