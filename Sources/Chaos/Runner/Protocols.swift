import Foundation
import ScheduleZeroWire

/// Starts, stops and describes a deployment. The governor implements it (wired later); the runner only
/// asks through this protocol, so proxy-only experiments need none.
public protocol DeploymentDriver: Sendable {
    func isRunning(_ deployment: String) async throws -> Bool
    /// Starts the deployment (its server and handlers) under the governor and returns when it is up.
    func start(_ deployment: String) async throws
    func stop(_ deployment: String) async throws
    /// The names of its processes (`server`, `h-1`, ...) that faults may target.
    func targets(_ deployment: String) async throws -> [String]
    /// The REP endpoint of a handler (for load and probes), `nil` when the name is not one.
    func endpoint(of target: String, in deployment: String) async throws -> String?
    /// The link journals of the deployment's interposed processes, by link name (`links/<name>.jsonl`).
    func linkJournals(_ deployment: String) async throws -> [String: String]
    /// The governor's lifecycle events of the deployment (`events.jsonl`), read for findings; `nil`: none.
    func eventLog(_ deployment: String) async throws -> String?
}

extension DeploymentDriver {
    public func linkJournals(_ deployment: String) async throws -> [String: String] { [:] }
    public func eventLog(_ deployment: String) async throws -> String? { nil }
}

/// What a steady-state probe found.
public struct ProbeResult: Sendable, Equatable {
    public var holds: Bool
    /// One line per target or finding, e.g. `h-2: no pong within 50 ms`.
    public var details: [String]
    public init(holds: Bool, details: [String] = []) {
        self.holds = holds
        self.details = details
    }
}

/// Tells whether the system is in its steady state (e.g. every handler answers ping within 50 ms).
public protocol SteadyStateProbe: Sendable {
    func probe() async -> ProbeResult
}

/// Applies faults of some kinds. The runner picks, for each fault of an experiment, the first actuator whose
/// `kinds` contains its kind: the proxy actuator here; process (kill, pause, signal) and control-channel
/// (drop-replies, delay, force-efsm, crash, garbage) actuators are wired with the governor and the mock handler.
public protocol FaultActuator: Sendable {
    /// A name for messages (`proxy`, `process`, `control`).
    var name: String { get }
    var kinds: Set<FaultKind> { get }
    /// The targets a fault of `kind` can choose from (names, matched by the fault's selector).
    func candidates(for kind: FaultKind) async throws -> [String]
    /// Applies the fault to its targets; returns what it did, for the journal.
    func start(_ fault: ScheduledFault) async throws -> String
    /// Undoes a fault with a duration (SIGCONT, proxy faults off); returns what it did, or `nil` for faults
    /// that act once.
    func stop(_ fault: ScheduledFault) async throws -> String?
}

/// Why an experiment could not be run at all (as opposed to a check that failed).
public enum RunnerError: Error, CustomStringConvertible, Sendable {
    case noActuator(fault: String, kind: FaultKind, available: [String])
    case noDeploymentDriver(deployment: String)
    case deploymentNotRunning(deployment: String)
    case unknownTarget(field: String, name: String, known: [String])
    case schedule(fault: String, ScheduleError)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .noActuator(f, k, a):
            "fault \(f): nothing here applies \(k.rawValue) faults (actuators: \(a.isEmpty ? "none" : a.joined(separator: ", "))); "
                + (k.isProcessFault ? "process faults need the governor wiring" : k.isControlFault ? "control faults need the mock handler wiring" : "")
        case let .noDeploymentDriver(d):
            "the experiment names deployment \(d), but no deployment driver (governor) is wired into this runner"
        case let .deploymentNotRunning(d): "deployment \(d) is not running and start_if_not_running is false"
        case let .unknownTarget(f, n, k): "\(f): no target \(n) (known: \(k.isEmpty ? "none" : k.joined(separator: ", ")))"
        case let .schedule(f, e): "fault \(f): \(e)"
        case let .cannotWrite(p, r): "cannot write \(p): \(r)"
        }
    }
}

/// Runs a blocking body on a thread of its own (never on the cooperative pool) and awaits its result.
func onOwnThread<R: Sendable>(_ name: String, _ body: @escaping @Sendable () -> R) async -> R {
    await withCheckedContinuation { (cont: CheckedContinuation<R, Never>) in
        let t = Thread { cont.resume(returning: body()) }
        t.name = name
        t.start()
    }
}
