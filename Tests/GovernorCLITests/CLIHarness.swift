import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `szgovernor` (next to the test bundle) against a deployments root inside a fresh short
/// /tmp folder, tracks every process the governors start (through their PID files) and kills whatever is
/// left in `cleanup()` (call it from `defer`).
final class CLIHarness: Sendable {
    let dir = TemporaryDirectory(prefix: "szg")
    let tracker = ProcessTracker()
    let szgovernor = builtExecutable("szgovernor")
    let szmock = builtExecutable("szmock")
    let szchaosExecutable = builtExecutable("szchaos")

    var root: String { dir.file("d") }

    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent("deployments/\(name).yaml").path }
    static func bad(_ name: String) -> String { fixtures.appendingPathComponent("bad/deployments/\(name)").path }

    struct Run: CustomStringConvertible {
        var status: ScheduleZeroTesting.ExitStatus
        var stdout: String
        var stderr: String
        var ok: Bool { status == .exited(0) }
        var description: String { "\(status); stdout: \(stdout); stderr: \(stderr)" }
    }

    /// Runs `szgovernor ARGS --root ROOT` to its end (deadline `timeout`), `environment` added to ours.
    @discardableResult
    func run(_ args: [String], root: Bool = true, timeout: Duration = .seconds(90),
             environment: [String: String] = [:], executable: String? = nil) async throws -> Run {
        let p = try TestProcess(executable ?? szgovernor, args + (root ? ["--root", self.root] : []), environment: environment)
        defer { p.stop() }
        let status = try await p.waitExit(timeout: timeout)
        // The pipes' reader threads finish just after the exit: wait until the output stops growing.
        var last = -1
        try await waitUntil("the output of szgovernor \(args.first ?? "")", timeout: .seconds(5), pollEvery: .milliseconds(30)) {
            let n = p.lines.count + p.stderrText.count
            defer { last = n }
            return n == last
        }
        track()
        return Run(status: status, stdout: p.lines.joined(separator: "\n"), stderr: p.stderrText)
    }

    /// `szchaos ARGS --deployment D --root ROOT` to its end (the real fault injector against this root).
    @discardableResult
    func szchaos(_ args: [String], deployment d: String, timeout: Duration = .seconds(30)) async throws -> Run {
        try await run(args + ["--deployment", d], timeout: timeout, executable: szchaosExecutable)
    }

    /// A foreground `szgovernor up` (the caller signals and reaps it).
    func foreground(_ args: [String]) throws -> TestProcess {
        let p = try TestProcess(szgovernor, ["up"] + args + ["--root", root])
        tracker.track(p.pid)
        return p
    }

    /// `up --detach` of `deployment` (file: a fixture by default); records an issue unless it succeeds.
    @discardableResult
    func up(_ deployment: String = "ci", file: String? = nil, extra: [String] = [],
            environment: [String: String] = [:]) async throws -> Run {
        let r = try await run(["up", "--detach", "--deployment", deployment, "--file", file ?? Self.fixture("ci")] + extra,
                              environment: environment)
        #expect(r.ok, "up \(deployment): \(r)")
        return r
    }

    func writeDeployment(_ name: String, _ yaml: String) throws -> String {
        try dir.write(yaml, to: "files/\(name).yaml").path
    }

    func deploymentDir(_ d: String) -> String { root + "/" + d }

    /// PIDs named by the PID files of deployment `d` (governor.pid as "governor").
    func pids(_ d: String = "ci") -> [String: pid_t] {
        let folder = deploymentDir(d) + "/pids"
        var out: [String: pid_t] = [:]
        for f in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where f.hasSuffix(".pid") {
            if let r = try? PidFile.read(folder + "/" + f) { out[String(f.dropLast(4))] = r.pid }
        }
        return out
    }

    /// Tracks every live process named by any PID file under the root.
    func track() {
        for d in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            for (_, pid) in pids(d) { tracker.track(pid) }
        }
    }

    /// `status --json` of `d`, parsed.
    func status(_ d: String = "ci") async throws -> [String: JSONValue] {
        let r = try await run(["status", "--json", "--deployment", d])
        // 0 every process running, 3 not running or not all healthy: both print the document.
        guard r.status == .exited(0) || r.status == .exited(3), let o = try? JSON.parse(Array(r.stdout.utf8)).objectValue else {
            Issue.record("status --json: \(r)")
            return [:]
        }
        return o
    }

    /// name -> (status, pid) from `status --json`.
    func processes(_ d: String = "ci") async throws -> [String: (status: String, pid: pid_t?)] {
        var out: [String: (String, pid_t?)] = [:]
        for p in try await status(d)["processes"]?.arrayValue ?? [] {
            guard let o = p.objectValue, let name = o["name"]?.stringValue else { continue }
            out[name] = (o["status"]?.stringValue ?? "?", o["pid"]?.intValue.map { pid_t($0) })
        }
        return out
    }

    /// Pings a ScheduleZero endpoint from a thread of its own.
    func ping(_ endpoint: String, timeout: Duration = .seconds(10)) async throws -> Bool {
        try await onThread("ping \(endpoint)", timeout: timeout + .seconds(5)) {
            PingProbe.pingUntilAnswered(endpoint, within: .milliseconds(200), deadline: .now + timeout)
        }
    }

    /// Sockets left anywhere under the root.
    func socketFiles() -> [String] {
        var out: [String] = []
        let e = FileManager.default.enumerator(atPath: root)
        while let rel = e?.nextObject() as? String {
            var st = stat()
            if lstat(root + "/" + rel, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK { out.append(rel) }
        }
        return out
    }

    func pidFiles(_ d: String = "ci") -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: deploymentDir(d) + "/pids")) ?? []).sorted()
    }

    func events(_ d: String = "ci") -> [[String: JSONValue]] {
        let text = (try? String(contentsOfFile: deploymentDir(d) + "/events.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { (try? JSON.parse(Array($0.utf8)))?.objectValue }
    }

    /// Kills everything still alive (governors first are in the same list) and returns what it had to kill.
    @discardableResult
    func cleanup() -> [pid_t] {
        track()
        return tracker.killAll()
    }
}

/// A blocking HTTP/1.1 GET on 127.0.0.1 (status code, body). Run it with `onThread`.
func httpGet(port: Int, path: String) throws -> (Int, String) {
    let (status, body) = try httpExchange(port: port, path: path)
    return (status, body)
}
