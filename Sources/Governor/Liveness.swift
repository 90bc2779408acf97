// Liveness: after a process is ready, a probe checks every `period` that it still answers (ZeroMQ `ping`
// or an HTTP GET answering 2xx, each bounded by `timeout`). After `failures` failed checks in a row the
// process is `unhealthy`: the governor records an `unhealthy` event with the failures, stops the child as
// for a stop (SIGTERM to the group, SIGKILL after `stop_timeout`; a SIGSTOPped child dies at the SIGKILL)
// and hands it to its restart policy as a crash (ManagedProcess.livenessFailed).
//
// Deployment files:
//   liveness: ping                                         # the process's own endpoint, the defaults below
//   liveness: {ping: ENDPOINT, period: 2s, timeout: 1s, failures: 3}
//   liveness: {http: URL, period: 2s, timeout: 1s, failures: 3}
//   liveness: none                                         # off (e.g. over `defaults`)
//
// Each monitor is a thread of its own that sleeps on a semaphore between checks (so `stop()` wakes it at
// once) and makes its blocking calls there (SyncClient, HTTPProbe.get); the cooperative pool never waits for
// a probe. The thread reports back through a new Task that awaits the ManagedProcess actor.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import ZMQClient

/// What a deployment asks for to keep checking a running process.
public struct LivenessSpec: Sendable, Hashable {
    public enum Check: Sendable, Hashable, CustomStringConvertible {
        /// ScheduleZero `ping` at this endpoint (nil: the process's own).
        case ping(endpoint: String?)
        case http(HTTPURL)

        public var description: String {
            switch self {
            case .ping(let e): "ping \(e ?? "(own endpoint)")"
            case .http(let u): "GET \(u)"
            }
        }
    }

    public var check: Check
    /// Time between the end of one check and the start of the next.
    public var period: Duration
    /// How long one check waits for its answer.
    public var timeout: Duration
    /// Failed checks in a row that make the process unhealthy.
    public var failures: Int

    public init(check: Check, period: Duration = .seconds(2), timeout: Duration = .seconds(1), failures: Int = 3) {
        self.check = check
        self.period = period
        self.timeout = timeout
        self.failures = failures
    }
}

/// One running process's liveness checks, on a thread of its own. Started once the process is ready,
/// stopped when the process stops, exits or is found unhealthy.
final class LivenessMonitor: Sendable {
    let spec: LivenessSpec
    let name: String
    private let endpoint: String?
    private let stopped = CancelFlag()
    private let wake = DispatchSemaphore(value: 0)
    /// Failed checks in a row so far.
    private let failing = Atomic<Int>(0)
    /// Checks made so far.
    private let checks = Atomic<Int>(0)

    /// `onUnhealthy` is called once, from the monitor thread, with what the failed checks said.
    init(spec: LivenessSpec, name: String, endpoint: String?, onUnhealthy: @escaping @Sendable (String) -> Void) {
        self.spec = spec
        self.name = name
        self.endpoint = endpoint
        let t = Thread { [self] in self.run(onUnhealthy) }
        t.name = "liveness-\(name)"
        t.stackSize = 256 * 1024
        t.start()
    }

    var consecutiveFailures: Int { failing.load(ordering: .relaxed) }
    var checksMade: Int { checks.load(ordering: .relaxed) }

    /// Ends the checks (a check in progress finishes within its `timeout`). Idempotent.
    func stop() {
        guard !stopped.isSet else { return }
        stopped.set()
        wake.signal()
    }

    private func run(_ onUnhealthy: @Sendable (String) -> Void) {
        var client: SyncClient?
        defer { client?.terminate() }
        var reasons: [String] = []
        while !stopped.isSet {
            if wake.wait(timeout: .now() + .milliseconds(Int(spec.period.msDouble.rounded()))) == .success { return }
            if stopped.isSet { return }
            let failure: String?
            switch spec.check {
            case .http(let url):
                switch HTTPProbe.get(url, timeout: spec.timeout) {
                case .success(let status) where (200...299).contains(status): failure = nil
                case .success(let status): failure = "GET \(url): status \(status)"
                case .failure(let f): failure = f.reason
                }
            case .ping(let configured):
                guard let address = configured ?? endpoint else { return }  // refused at load
                if client == nil {
                    client = try? SyncClient(endpoint: address, configuration: ClientConfiguration(
                        timeout: spec.timeout, attempts: 1, reconnectInterval: .milliseconds(20)))
                }
                if let client, let reply = try? client.ping(), reply.success {
                    failure = nil
                } else {
                    failure = "no ping reply from \(address) within \(format(spec.timeout))"
                }
            }
            if stopped.isSet { return }
            checks.add(1, ordering: .relaxed)
            guard let failure else {
                reasons.removeAll()
                failing.store(0, ordering: .relaxed)
                continue
            }
            reasons.append(failure)
            failing.store(reasons.count, ordering: .relaxed)
            if reasons.count >= spec.failures {
                let distinct = reasons.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
                onUnhealthy("\(reasons.count) liveness checks failed in a row (\(spec.check), every \(format(spec.period))): "
                            + distinct.joined(separator: "; "))
                return
            }
        }
    }
}
