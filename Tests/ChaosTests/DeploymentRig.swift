import Chaos
import Foundation
import Governor
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif

/// The ci deployment (server + h-1..h-3, ipc endpoints) under an in-process `ProcessGovernor`, in a
/// temporary root of its own (`/tmp/szc-XXXXXX/d`: short, ipc paths are limited to 107 bytes), with real
/// `szmock` processes from next to the test bundle. `cleanup()` stops the governor and SIGKILLs anything a
/// governor of this rig ever spawned that is still alive; call it from `defer`.
final class CIRig: @unchecked Sendable {
    let dir = TemporaryDirectory(prefix: "szc")
    let tracker = ProcessTracker()
    let events = Locked<[LifecycleEvent]>([])
    let deploymentFile: String
    var root: String { dir.path + "/d" }
    let paths: DeploymentPaths
    let name: String
    private(set) var governor: ProcessGovernor?

    static let szmock = builtExecutable("szmock")
    static let szchaos = builtExecutable("szchaos")

    /// `autoRestart: false` writes the ci file with `policy: never`; `edit` changes its text before.
    init(autoRestart: Bool = true, edit: (String) -> String = { $0 }) throws {
        var yaml = edit(try String(contentsOfFile: Fixtures.path("deployments/ci.yaml"), encoding: .utf8))
        if !autoRestart { yaml = yaml.replacingOccurrences(of: "policy: always", with: "policy: never") }
        deploymentFile = try dir.write(yaml, to: "ci.yaml").path
        paths = try DeploymentPaths(root: dir.path + "/d", name: "ci")
        name = "ci"
    }

    /// A rig for a deployment file of the test's own (`yaml`, whose `deployment:` is `name`).
    init(yaml: String, name: String) throws {
        deploymentFile = try dir.write(yaml, to: "\(name).yaml").path
        paths = try DeploymentPaths(root: dir.path + "/d", name: name)
        self.name = name
    }

    var variables: [String: String] { ["SZMOCK": Self.szmock] }

    func options() -> GovernorOptions {
        let tracker = self.tracker, events = self.events
        return GovernorOptions(eventObserver: { e in
            if e.event == .spawned, let pid = e.pid { tracker.track(pid) }
            events.mutate { $0.append(e) }
        })
    }

    /// A driver for experiments on this rig (its governors' children are tracked too).
    func driver() -> GovernorDeploymentDriver {
        let file = deploymentFile
        return GovernorDeploymentDriver(root: root, variables: variables, options: options(), deploymentFile: { _ in file })
    }

    /// Starts the deployment under a governor in this process and waits until every process is running.
    func start() async throws {
        let d = try DeploymentFile.load(path: deploymentFile, variables: variables, deploymentsRoot: root)
        let g = try ProcessGovernor(deployment: d, deploymentsRoot: URL(fileURLWithPath: root), options: options())
        governor = g
        try await g.start()
        for n in d.processes.map(\.id) {
            try await waitUntil("\(n) verified", timeout: .seconds(15)) { self.pid(n) != nil }
        }
    }

    func cleanup() async {
        if let governor { await governor.stop(timeout: .seconds(2)) }
        tracker.killAll()
    }

    /// The PID of a verified process of the deployment, nil when its PID file does not verify.
    func pid(_ name: String) -> pid_t? {
        if case .success(let t) = DeploymentTargets.verify(name, in: paths) { return t.identity.pid }
        return nil
    }

    /// Waits until `name` runs under a PID other than `old` (restarted by the governor) and returns it.
    func waitRestarted(_ name: String, from old: pid_t) async throws -> pid_t {
        var new: pid_t?
        try await waitUntil("\(name) restarted with a new PID", timeout: .seconds(15)) {
            new = self.pid(name)
            return new != nil && new != old
        }
        return new!
    }

    func dataEndpoint(_ process: String) -> String { "ipc://\(root)/\(name)/run/\(process).sock" }
    func controlEndpoint(_ name: String) -> String { paths.controlEndpoint(name) }

    /// Runs `szchaos ARGS --deployment ci --root ROOT` to its end.
    func szchaos(_ args: [String], timeout: Duration = .seconds(30)) async throws -> SZChaosRun {
        try await SZChaosRun.run(args + ["--deployment", name, "--root", root], timeout: timeout)
    }

    /// The handler's control `status` reply.
    func status(_ name: String) async throws -> Reply {
        let ep = controlEndpoint(name)
        return try await onThread("status of \(name)") { try MockControl.status(ep, timeout: .seconds(3)) }
    }
}

/// One finished `szchaos` run: exit status, stdout lines, stderr (the test kit's `FinishedProcess`).
typealias SZChaosRun = FinishedProcess

extension FinishedProcess {
    static func run(_ args: [String], timeout: Duration = .seconds(30)) async throws -> FinishedProcess {
        try await TestProcess.run(CIRig.szchaos, args, timeout: timeout)
    }
}

/// The `/proc` state letter of `pid` (`S`, `R`, `T`...), nil when it is gone.
func processState(_ pid: pid_t) -> Character? { ProcStat.read(pid: pid)?.state }

/// The governor cgroup `pid` is in (cgroup mode), nil in the process-group mode.
func governorCgroup(_ pid: pid_t) -> ProcessCgroup? {
    guard let path = ProcessTree.cgroup(of: pid), path.contains("/\(ProcessTree.topGroup)/") else { return nil }
    return ProcessCgroup(path: path)
}

/// Paused by szchaos: stopped (state T, SIGSTOP), or its governor cgroup reports `frozen 1`.
func isPaused(_ pid: pid_t) -> Bool {
    processState(pid) == "T" || governorCgroup(pid)?.isFrozen == true
}

/// Running and not paused.
func isRunningFree(_ pid: pid_t) -> Bool { processState(pid) != nil && !isPaused(pid) }

/// What szchaos says it did to pause and resume `pid`: ("frozen", "thawed") for a cgroup, else the signals.
func pauseWords(_ pid: pid_t) -> (pause: String, resume: String) {
    governorCgroup(pid) == nil ? ("SIGSTOP sent", "SIGCONT sent") : ("frozen", "thawed")
}

/// One call through the self-healing client on a thread of its own: the reply or the error, and the stats.
func clientCall(_ endpoint: String, _ method: String = "ping", _ params: [String: JSONValue] = [:],
                timeout: Duration = .milliseconds(400), attempts: Int = 1) async throws -> (Result<Reply, ClientError>, ClientStats) {
    try await onThread("\(method) to \(endpoint)", timeout: .seconds(20)) {
        try SyncClient.with(endpoint: endpoint, configuration: ClientConfiguration(timeout: timeout, attempts: attempts)) { c in
            do { return (.success(try c.call(method, params: params)), c.stats) } catch let e as ClientError {
                return (.failure(e), c.stats)
            }
        }
    }
}

/// Runs `body` with a started ci rig and always cleans up (awaited), also when `body` throws.
func withCIRig(autoRestart: Bool = true, start: Bool = true, edit: (String) -> String = { $0 },
               _ body: (CIRig) async throws -> Void) async throws {
    let rig = try CIRig(autoRestart: autoRestart, edit: edit)
    do {
        if start { try await rig.start() }
        try await body(rig)
    } catch {
        await rig.cleanup()
        throw error
    }
    await rig.cleanup()
}
