import Foundation
import ScheduleZeroWire
import ZMQClient

/// The steady state "every target answers `ping` within `within`": one fresh client per target and probe,
/// one attempt, all targets probed at once, each on a thread of its own.
public struct PingSteadyStateProbe: SteadyStateProbe {
    /// Name -> endpoint.
    public var endpoints: [String: String]
    public var within: Duration

    public init(endpoints: [String: String], within: Duration = .milliseconds(50)) {
        self.endpoints = endpoints
        self.within = within
    }

    public func probe() async -> ProbeResult {
        let within = self.within
        let results = await withTaskGroup(of: (String, String?).self) { group in
            for (name, ep) in endpoints {
                group.addTask {
                    await onOwnThread("ping-probe") { () -> (String, String?) in
                        let clock = ContinuousClock()
                        let t0 = clock.now
                        do {
                            let r = try SyncClient.with(endpoint: ep, configuration: ClientConfiguration(timeout: within, attempts: 1)) {
                                try $0.ping()
                            }
                            let took = clock.now - t0
                            if !r.success { return (name, "\(name) (\(ep)): ping answered an error: \(r.error ?? "?")") }
                            if took > within + .milliseconds(5) { return (name, "\(name) (\(ep)): pong after \(took.millisText), limit \(within.millisText)") }
                            return (name, nil)
                        } catch {
                            return (name, "\(name) (\(ep)): no pong within \(within.millisText): \(error)")
                        }
                    }
                }
            }
            var out: [(String, String?)] = []
            for await r in group { out.append(r) }
            return out
        }
        let failures = results.compactMap(\.1).sorted()
        return ProbeResult(holds: failures.isEmpty && !endpoints.isEmpty,
                           details: endpoints.isEmpty ? ["no endpoint to probe"] : failures)
    }
}
