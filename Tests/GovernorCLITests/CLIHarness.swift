import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// The built `szgovernor` against a deployments root inside a fresh short /tmp folder: the test kit's
/// `GovernorRoot` (commands run to the end, PIDs tracked through the PID files, `cleanup()` from `defer`),
/// with this suite's fixtures and the `ci` deployment as the default.
typealias CLIHarness = GovernorRoot

extension GovernorRoot {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent("deployments/\(name).yaml").path }
    static func bad(_ name: String) -> String { fixtures.appendingPathComponent("bad/deployments/\(name)").path }

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

    // The `ci` deployment when none is named.
    func pids() -> [String: pid_t] { pids("ci") }
    func status() async throws -> [String: JSONValue] { try await status("ci") }
    func processes() async throws -> [String: ProcessState] { try await processes("ci") }
    func pidFiles() -> [String] { pidFiles("ci") }
    func events() -> [[String: JSONValue]] { events("ci") }

    /// Pings a ScheduleZero endpoint from a thread of its own.
    func ping(_ endpoint: String, timeout: Duration = .seconds(10)) async throws -> Bool {
        try await onThread("ping \(endpoint)", timeout: timeout + .seconds(5)) {
            PingProbe.pingUntilAnswered(endpoint, within: .milliseconds(200), deadline: .now + timeout)
        }
    }
}

/// A blocking HTTP/1.1 GET on 127.0.0.1 (status code, body). Run it with `onThread`.
func httpGet(port: Int, path: String) throws -> (Int, String) {
    let (status, body) = try httpExchange(port: port, path: path)
    return (status, body)
}
