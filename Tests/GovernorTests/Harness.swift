import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

/// A temporary deployment folder, a tracker fed by the governor's `spawned` events, and config builders
/// for real test processes. `cleanup()` (call it from `defer`) kills anything still alive.
final class Harness: Sendable {
    let dir = TemporaryDirectory()
    let tracker = ProcessTracker()
    let clock: any GovernorClock

    init(clock: any GovernorClock = SystemGovernorClock()) { self.clock = clock }

    var deploymentDir: URL { dir.appending("deployments/t") }

    func options(probes: ReadinessProbes = ReadinessProbes()) -> GovernorOptions {
        let tracker = self.tracker
        return GovernorOptions(clock: clock, seed: 7, probes: probes, eventObserver: { event in
            if event.event == .spawned, let pid = event.pid { tracker.track(pid) }
        })
    }

    func governor(_ processes: [HandlerConfig], server: HandlerConfig? = nil, name: String = "t") throws -> ProcessGovernor {
        try ProcessGovernor(deployment: Deployment(name: name, server: server, handlers: processes),
                            directory: deploymentDir, options: options())
    }

    /// A standalone ManagedProcess (no governor) in the harness folder.
    func process(_ config: HandlerConfig) async throws -> ManagedProcess {
        let gov = try ProcessGovernor(deployment: Deployment(name: "t"), directory: deploymentDir, options: options())
        return ManagedProcess(config: config, context: try await gov.makeContext(for: config))
    }

    func pidFile(_ name: String) -> String { deploymentDir.appendingPathComponent("pids/\(name).pid").path }

    @discardableResult
    func cleanup() -> [pid_t] { tracker.killAll() }

    // MARK: configs

    static func sleeper(_ id: String, restart: RestartPolicy = .never, stopTimeout: Duration = .seconds(5)) -> HandlerConfig {
        HandlerConfig(id: id, executable: "/bin/sleep", arguments: ["300"], restart: restart, stopTimeout: stopTimeout)
    }

    static func shell(_ id: String, _ script: String, restart: RestartPolicy = .never,
                      stopTimeout: Duration = .seconds(5), readiness: ReadinessSpec = .none,
                      environment: [String: String] = [:]) -> HandlerConfig {
        HandlerConfig(id: id, executable: "/bin/sh", arguments: ["-c", script], environment: environment,
                      restart: restart, stopTimeout: stopTimeout, readiness: readiness)
    }

    /// A process that ignores SIGTERM.
    static func termIgnorer(_ id: String, stopTimeout: Duration) -> HandlerConfig {
        shell(id, "trap '' TERM; exec /bin/sleep 300", stopTimeout: stopTimeout)
    }

    static func immediate(_ mode: RestartMode, max: Int = 5, window: Duration = .seconds(60)) -> RestartPolicy {
        RestartPolicy(mode: mode, maxRestarts: max, window: window,
                      backoff: BackoffPolicy(initial: .milliseconds(1), jitter: 0, immediateRestarts: 1000))
    }
}

