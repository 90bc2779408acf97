import Foundation
import ScheduleZeroWire
import Interposer

/// Applies `proxy` faults to running `ChaosProxy`s, by name: `start` sets the fault's params (the keys of
/// the proxy's `set`) on top of the proxy's settings, `stop` puts the settings back as they were.
public final class ProxyActuator: FaultActuator, @unchecked Sendable {
    public let name = "proxy"
    public let kinds: Set<FaultKind> = [.proxy]
    public let proxies: [String: ChaosProxy]
    private let lock = NSLock()
    private var saved: [Int: [String: ProxyFaults]] = [:]

    public init(proxies: [String: ChaosProxy]) { self.proxies = proxies }

    public func candidates(for kind: FaultKind) async throws -> [String] { proxies.keys.sorted() }

    public func start(_ fault: ScheduledFault) async throws -> String {
        var before: [String: ProxyFaults] = [:]
        var applied: [String] = []
        for t in fault.targets {
            guard let p = proxies[t] else { throw RunnerError.unknownTarget(field: fault.name, name: t, known: proxies.keys.sorted()) }
            var old = ProxyFaults.none
            let new = try p.update { f in
                old = f
                f = try f.applying(fault.params)
            }
            before[t] = old
            applied.append("\(t): \(new)")
        }
        lock.withLock { saved[fault.index] = before }
        return "proxy faults on: " + applied.joined(separator: "; ")
    }

    public func stop(_ fault: ScheduledFault) async throws -> String? {
        let before = lock.withLock { saved.removeValue(forKey: fault.index) } ?? [:]
        for t in fault.targets { proxies[t]?.faults = before[t] ?? .none }
        return "proxy faults off: " + fault.targets.map { "\($0): \(before[$0] ?? .none)" }.joined(separator: "; ")
    }
}
