import Foundation
import Governor
import ScheduleZeroWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A deployments root of its own (`--root`) in a fresh short temporary folder, with the built `szgovernor`
/// and `szchaos` to run against it: every command runs to its end with a deadline, every process the
/// governors start is tracked through their PID files, and `cleanup()` kills whatever is left.
///
/// `DeploymentFixture` is built on it; use it directly to test the command lines themselves
/// (`up`, `down`, `status`, bad files, several deployments in one root). Call `cleanup()` from `defer`.
public final class GovernorRoot: Sendable {
    /// The temporary folder; the deployments root is `root`, inside it. Removed on release.
    public let dir: TemporaryDirectory
    /// Every process that a PID file under the root ever named while tracked (see `track()`).
    public let tracker = ProcessTracker()
    /// The `szgovernor` executable the commands run.
    public let szgovernor: String
    /// The `szchaos` executable the fault commands run.
    public let szchaosExecutable: String
    /// The `szmock` executable (the mock peers), for deployment files that run it (`${SZMOCK}`).
    public let szmock: String

    /// The deployments root: `--root` of every command run here.
    public var root: String { dir.file("d") }

    /// A root in a new temporary folder named `prefix-XXXXXX`; the executables are found with
    /// `builtExecutable(_:)` (next to the test bundle, or in `SZ_BIN_DIR`).
    public init(prefix: String = "szg") {
        dir = TemporaryDirectory(prefix: prefix)
        szgovernor = builtExecutable("szgovernor")
        szchaosExecutable = builtExecutable("szchaos")
        szmock = builtExecutable("szmock")
    }

    /// How one command ended, with everything it printed.
    public typealias Run = FinishedProcess

    /// Runs `szgovernor ARGS --root ROOT` (or `executable ARGS ...`) to its end within `timeout`, with
    /// `environment` added to the test process's own, then tracks what the PID files name.
    @discardableResult
    public func run(_ args: [String], root: Bool = true, timeout: Duration = .seconds(90),
                    environment: [String: String] = [:], executable: String? = nil) async throws -> Run {
        let r = try await TestProcess.run(executable ?? szgovernor, args + (root ? ["--root", self.root] : []),
                                          environment: environment, timeout: timeout)
        track()
        return r
    }

    /// `szchaos ARGS --deployment D --root ROOT` to its end: the real fault injector against this root.
    @discardableResult
    public func szchaos(_ args: [String], deployment d: String, timeout: Duration = .seconds(30),
                        environment: [String: String] = [:]) async throws -> Run {
        try await run(args + ["--deployment", d], timeout: timeout, environment: environment, executable: szchaosExecutable)
    }

    /// The folder of deployment `d` under the root.
    public func deploymentDir(_ d: String) -> String { root + "/" + d }

    /// The PIDs named by the PID files of deployment `d` (the governor's as "governor").
    public func pids(_ d: String) -> [String: pid_t] {
        let folder = deploymentDir(d) + "/pids"
        var out: [String: pid_t] = [:]
        for f in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where f.hasSuffix(".pid") {
            if let r = try? PidFile.read(folder + "/" + f) { out[String(f.dropLast(4))] = r.pid }
        }
        return out
    }

    /// Tracks every live process named by any PID file under the root (run after every command).
    public func track() {
        for d in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            for (_, pid) in pids(d) { tracker.track(pid) }
        }
    }

    /// `status --json` of `d`, parsed (exit 0: every process running; 3: not running or not all healthy;
    /// both print the document). Anything else records an issue and returns [:].
    public func status(_ d: String) async throws -> [String: JSONValue] {
        let r = try await run(["status", "--json", "--deployment", d])
        guard r.status == .exited(0) || r.status == .exited(3), let o = r.json else {
            Issue.record("status --json: \(r)")
            return [:]
        }
        return o
    }

    /// One process of a `status --json` document.
    public struct ProcessState: Sendable, Equatable {
        /// `running`, or why not (`crashed`, `backoff`, `unhealthy`, `stopped`, ...; docs/GOVERNOR.md).
        public var status: String
        /// Its PID while it runs.
        public var pid: pid_t?
        /// How many times the governor restarted it (`restart_count`).
        public var restartCount: Int
        /// The endpoint clients use: an interposed process's public one (its interposer's).
        public var endpoint: String?
    }

    /// name -> its state, from `status --json` of `d`.
    public func processes(_ d: String) async throws -> [String: ProcessState] {
        var out: [String: ProcessState] = [:]
        for p in try await status(d)["processes"]?.arrayValue ?? [] {
            guard let o = p.objectValue, let name = o["name"]?.stringValue else { continue }
            out[name] = ProcessState(status: o["status"]?.stringValue ?? "?", pid: o["pid"]?.intValue.map { pid_t($0) },
                                     restartCount: o["restart_count"]?.intValue.map { Int($0) } ?? 0,
                                     endpoint: o["endpoint"]?.stringValue)
        }
        return out
    }

    /// Socket files left anywhere under the root (paths relative to it).
    public func socketFiles() -> [String] {
        var out: [String] = []
        let e = FileManager.default.enumerator(atPath: root)
        while let rel = e?.nextObject() as? String {
            var st = stat()
            if lstat(root + "/" + rel, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK { out.append(rel) }
        }
        return out
    }

    /// The PID files of deployment `d`, by file name.
    public func pidFiles(_ d: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: deploymentDir(d) + "/pids")) ?? []).sorted()
    }

    /// The governor's event log of `d` (`events.jsonl`), parsed.
    public func events(_ d: String) -> [[String: JSONValue]] {
        let text = (try? String(contentsOfFile: deploymentDir(d) + "/events.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { (try? JSON.parse(Array($0.utf8)))?.objectValue }
    }

    /// Kills everything tracked that is still alive and returns what it had to kill (a clean test: []).
    @discardableResult
    public func cleanup() -> [pid_t] {
        track()
        return tracker.killAll()
    }
}
