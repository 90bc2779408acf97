import Foundation
import ScheduleZeroWire
import Testing
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif

/// One deployment file under a real `szgovernor up --detach`, in a temporary folder of its own (its own
/// deployments root), for one test: started and ready before the body runs, stopped (`szgovernor down`)
/// after it, and checked to have left no process, PID file or socket file behind, also when the body throws.
///
/// ```swift
/// try await withDeployment(file: "deployments/app.yaml", name: "app") { d in
///     let old = try #require(try await d.pid("h-1"))
///     try await d.kill("h-1")
///     let new = try await d.waitUntilRestarted("h-1", from: old)
///     #expect(new != old)
///     try await d.dropReplies("h-1", count: 1)   // needs `interpose: true` on h-1, or an szmock handler
///     let r = try await d.call(endpoint, "ping")
///     #expect(r.reply.success && r.stats.retries == 1)
/// }
/// ```
///
/// Faults go through the real `szchaos` (`-d NAME --root ROOT`); the governor and szchaos are found with
/// `builtExecutable(_:)`. A package that depends on this one lists the `szgovernor` and `szchaos` products
/// in its test target's dependencies so `swift test` builds them next to its test bundle (docs/TESTING.md,
/// "The test kit"), or sets `SZ_BIN_DIR` to a folder holding them.
public final class DeploymentFixture: Sendable {
    /// The deployment's name (`deployment:` of its file; `-d NAME` of every command).
    public let name: String
    /// The deployment file it was started from.
    public let file: String
    /// The deployments root and its commands (`run`, `szchaos`, `pids`, `events`, ...).
    public let governor: GovernorRoot
    /// Added to the environment of `szgovernor up` (and so of every process it starts: `${env:VAR}`).
    public let environment: [String: String]

    /// The deployment's folder: `pids/`, `logs/`, `links/`, `events.jsonl`, `work/`.
    public var folder: String { governor.deploymentDir(name) }

    private init(name: String, file: String, environment: [String: String], prefix: String) {
        self.name = name
        self.file = file
        self.environment = environment
        governor = GovernorRoot(prefix: prefix)
    }

    /// Starts `file` as deployment `name` (`szgovernor up --detach -d NAME -f FILE --root ROOT EXTRA`, which
    /// returns when every process is ready) and checks that `status` then reports every process running.
    /// On failure everything started is stopped and the error says what `up` printed.
    public static func start(file: String, name: String, environment: [String: String] = [:],
                             upArguments: [String] = [], readyTimeout: Duration = .seconds(90),
                             prefix: String = "szd") async throws -> DeploymentFixture {
        try requireExecutables()
        let d = DeploymentFixture(name: name, file: file, environment: environment, prefix: prefix)
        do {
            let up = try await d.governor.run(["up", "--detach", "--deployment", name, "--file", file] + upArguments,
                                              timeout: readyTimeout + .seconds(30), environment: environment)
            guard up.ok else { throw DeploymentFixtureError.upFailed(name: name, run: up) }
            let st = try await d.governor.run(["status", "--json", "--deployment", name])
            guard st.ok else { throw DeploymentFixtureError.notReady(name: name, run: st) }
        } catch {
            _ = try? await d.stop()
            throw error
        }
        return d
    }

    /// The executables the fixture runs, or a clear error saying how to get them built.
    static func requireExecutables() throws {
        for exe in ["szgovernor", "szchaos"] where !FileManager.default.isExecutableFile(atPath: builtExecutable(exe)) {
            throw DeploymentFixtureError.executableMissing(name: exe, looked: builtExecutable(exe))
        }
    }

    // MARK: Stopping

    /// `szgovernor down -d NAME`, then waits (within `grace`) for every process it tracked to be gone and
    /// checks that no PID file and no socket file is left under the root. Whatever is left is killed and
    /// removed, and reported as `DeploymentFixtureError.leftBehind`. The temporary folder is removed.
    public func stop(grace: Duration = .seconds(10)) async throws {
        var problems: [String] = []
        defer { governor.dir.remove() }
        let down = try? await governor.run(["down", "--deployment", name], timeout: .seconds(60))
        if let down, !down.ok, FileManager.default.fileExists(atPath: folder + "/pids") {
            problems.append("down -d \(name): \(down)")
        }
        do {
            try await waitUntilQuiet(grace: grace)
        } catch {}
        let alive = governor.tracker.alive
        if !alive.isEmpty { problems.append("processes still running after down: \(alive.map(String.init).joined(separator: ", "))") }
        let pidFiles = governor.pidFiles(name)
        if !pidFiles.isEmpty { problems.append("PID files left in \(folder)/pids: \(pidFiles.joined(separator: ", "))") }
        let sockets = governor.socketFiles()
        if !sockets.isEmpty { problems.append("socket files left under \(governor.root): \(sockets.joined(separator: ", "))") }
        governor.cleanup()
        if !problems.isEmpty { throw DeploymentFixtureError.leftBehind(name: name, what: problems) }
    }

    /// Polls until nothing tracked is alive and no PID or socket file is left, without recording an issue.
    private func waitUntilQuiet(grace: Duration) async throws {
        let clock = ContinuousClock()
        let end = clock.now + grace
        while clock.now < end {
            if governor.tracker.alive.isEmpty && governor.pidFiles(name).isEmpty && governor.socketFiles().isEmpty { return }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    // MARK: State

    /// `szgovernor status --json -d NAME`, parsed.
    public func status() async throws -> [String: JSONValue] { try await governor.status(name) }

    /// Every process by name (`h-1`, `server`): status, PID, restart count, endpoint.
    public func processes() async throws -> [String: GovernorRoot.ProcessState] { try await governor.processes(name) }

    /// The PID of process `process` as `status` reports it (nil when it is not running).
    public func pid(_ process: String) async throws -> pid_t? { try await processes()[process]?.pid }

    /// The endpoint of `process` as `status` reports it (an interposed process's public one).
    public func endpoint(_ process: String) async throws -> String? { try await processes()[process]?.endpoint }

    /// Waits until `process` runs with a PID other than `old` (restarted by the governor) and returns it.
    @discardableResult
    public func waitUntilRestarted(_ process: String, from old: pid_t, timeout: Duration = .seconds(30),
                                   sourceLocation: SourceLocation = #_sourceLocation) async throws -> pid_t {
        var new: pid_t?
        try await waitUntil("\(process) of \(name) restarted (was pid \(old))", timeout: timeout, pollEvery: .milliseconds(100),
                            sourceLocation: sourceLocation) {
            let p = try await self.processes()[process]
            if p?.status == "running", let pid = p?.pid, pid != old { new = pid }
            return new != nil
        }
        return new!
    }

    /// Waits until every process of the deployment is running (`status` exits 0).
    public func waitUntilAllRunning(timeout: Duration = .seconds(30),
                                    sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await waitUntil("every process of \(name) running", timeout: timeout, pollEvery: .milliseconds(100),
                            sourceLocation: sourceLocation) {
            try await self.governor.run(["status", "--json", "--deployment", self.name]).ok
        }
    }

    // MARK: Faults, through the real szchaos

    /// `szchaos ARGS -d NAME --root ROOT` to its end; throws `DeploymentFixtureError.chaosFailed` unless it exits 0.
    @discardableResult
    public func chaos(_ args: [String], timeout: Duration = .seconds(30)) async throws -> GovernorRoot.Run {
        let r = try await governor.szchaos(args, deployment: name, timeout: timeout)
        guard r.ok else { throw DeploymentFixtureError.chaosFailed(args: args, run: r) }
        return r
    }

    /// Kills `process` (a name or glob) with `signal` (default SIGKILL): `szchaos kill`.
    @discardableResult
    public func kill(_ process: String, signal: String = "SIGKILL") async throws -> GovernorRoot.Run {
        try await chaos(["kill", process, "--signal", signal])
    }

    /// Freezes `process` for `duration`, then thaws it (`szchaos pause --for`); returns once it is thawed.
    @discardableResult
    public func pause(_ process: String, for duration: Duration) async throws -> GovernorRoot.Run {
        try await chaos(["pause", process, "--for", DurationText.format(duration)], timeout: duration + .seconds(30))
    }

    /// The next `count` replies of `process` are lost (the request still runs): its interposer's, or an
    /// szmock handler's control channel.
    @discardableResult
    public func dropReplies(_ process: String, count: Int = 1) async throws -> GovernorRoot.Run {
        try await chaos(["drop-replies", process, "--count", String(count)])
    }

    /// Every reply of `process` is delayed by `delay` (+- `jitter`).
    @discardableResult
    public func delayReplies(_ process: String, by delay: Duration, jitter: Duration = .zero) async throws -> GovernorRoot.Run {
        try await chaos(["delay", process, "--by", DurationText.format(delay), "--jitter", DurationText.format(jitter)])
    }

    /// The next `count` requests to `process` are swallowed: the caller's REQ socket is left in EFSM.
    @discardableResult
    public func forceEFSM(_ process: String, count: Int = 1) async throws -> GovernorRoot.Run {
        try await chaos(["force-efsm", process, "--count", String(count)])
    }

    /// The next reply of `process` is garbage: `bytes` (not JSON) or `wrong_shape` (JSON, not a reply).
    @discardableResult
    public func garbage(_ process: String, kind: String = "bytes") async throws -> GovernorRoot.Run {
        try await chaos(["garbage", process, "--kind", kind])
    }

    /// Clears every message fault of `process`.
    @discardableResult
    public func clearFaults(_ process: String) async throws -> GovernorRoot.Run {
        try await chaos(["clear", process])
    }

    /// `szchaos links --json` (what the interposed links saw: requests, delivered, lost, late, duplicate
    /// executions), parsed; `processes` narrows it to names or globs.
    public func links(_ processes: [String] = []) async throws -> [String: JSONValue] {
        let r = try await chaos(["links", "--json"] + processes)
        guard let o = r.json else { throw DeploymentFixtureError.chaosFailed(args: ["links", "--json"], run: r) }
        return o
    }

    // MARK: Clients

    /// What `call` got: the reply, and the client's counts (attempts, retries, recreated sockets).
    public struct CallResult: Sendable {
        public var reply: Reply
        public var stats: ClientStats
    }

    /// One call through the project's self-healing `SyncClient` (retries, a new socket after a timeout),
    /// on a thread of its own (never a blocking libzmq call on the cooperative pool).
    public func call(_ endpoint: String, _ method: String, _ params: [String: JSONValue] = [:],
                     configuration: ClientConfiguration = ClientConfiguration(timeout: .seconds(2), attempts: 3)) async throws -> CallResult {
        try await Self.call(endpoint, method, params, configuration: configuration)
    }

    /// The same, without a deployment (any ScheduleZero endpoint).
    public static func call(_ endpoint: String, _ method: String, _ params: [String: JSONValue] = [:],
                            configuration: ClientConfiguration = ClientConfiguration(timeout: .seconds(2), attempts: 3)) async throws -> CallResult {
        let budget = configuration.timeout * max(1, configuration.attempts) + .seconds(15)
        return try await onThread("\(method) to \(endpoint)", timeout: budget) {
            let client = try SyncClient(endpoint: endpoint, configuration: configuration)
            defer { client.terminate() }
            let reply = try client.call(method, params: params)
            return CallResult(reply: reply, stats: client.stats)
        }
    }
}

/// What went wrong starting, faulting or stopping a `DeploymentFixture`.
public enum DeploymentFixtureError: Error, CustomStringConvertible {
    case executableMissing(name: String, looked: String)
    case upFailed(name: String, run: GovernorRoot.Run)
    case notReady(name: String, run: GovernorRoot.Run)
    case chaosFailed(args: [String], run: GovernorRoot.Run)
    case leftBehind(name: String, what: [String])

    public var description: String {
        switch self {
        case .executableMissing(let exe, let looked):
            "\(exe) not found at \(looked): add .product(name: \"\(exe)\", package: ...) of schedulezero-harness to the test "
                + "target's dependencies (so swift test builds it next to the test bundle), or set SZ_BIN_DIR to a folder holding it"
        case .upFailed(let name, let run): "szgovernor up -d \(name) failed: \(run)"
        case .notReady(let name, let run): "deployment \(name) started but not every process is running: \(run)"
        case .chaosFailed(let args, let run): "szchaos \(args.joined(separator: " ")) failed: \(run)"
        case .leftBehind(let name, let what): "deployment \(name) left these behind:\n" + what.map { "  - \($0)" }.joined(separator: "\n")
        }
    }
}

/// Runs `body` with deployment `file` (named `name`) started under a real governor in a temporary folder,
/// and always stops it and checks that nothing is left, whether `body` returns or throws. A leftover fails
/// the test (`DeploymentFixtureError.leftBehind`) after the body's own error, if any, is thrown.
public func withDeployment<T>(file: String, name: String, environment: [String: String] = [:],
                              upArguments: [String] = [], readyTimeout: Duration = .seconds(90),
                              _ body: (DeploymentFixture) async throws -> T) async throws -> T {
    let d = try await DeploymentFixture.start(file: file, name: name, environment: environment,
                                              upArguments: upArguments, readyTimeout: readyTimeout)
    let result: Result<T, any Error>
    do { result = .success(try await body(d)) } catch { result = .failure(error) }
    do {
        try await d.stop()
    } catch {
        if case .failure = result { Issue.record(error) } else { throw error }
    }
    return try result.get()
}
