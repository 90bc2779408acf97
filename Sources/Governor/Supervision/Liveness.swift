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
// No thread per monitor: the wait between checks is a timer of the governor's event loop (EventLoop.swift;
// `stop()` cancels it), and each check, a blocking call (SyncClient, HTTPProbe.get), runs on the fixed
// BlockingPool; the cooperative pool never waits for a probe. A failure is reported through a new Task
// that awaits the ManagedProcess actor.
#if canImport(Glibc)
import Glibc
#endif
import ScheduleZeroWire
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

/// One running process's liveness checks: a loop timer for each period, the check on the BlockingPool.
/// Started once the process is ready, stopped when the process stops, exits or is found unhealthy.
final class LivenessMonitor: @unchecked Sendable {
    let spec: LivenessSpec
    let name: String
    private let endpoint: String?
    private let onUnhealthy: @Sendable (String) -> Void
    private let stopped = CancelFlag()
    private let timer = Mutex<EventLoop.Token?>(nil)
    /// Failed checks in a row so far.
    private let failing = Atomic<Int>(0)
    /// Checks made so far.
    private let checks = Atomic<Int>(0)
    // Touched by one check at a time (each is started by the timer the one before it set): no lock.
    private var client: SyncClient?
    private var reasons: [String] = []

    /// `onUnhealthy` is called once, from a pool thread, with what the failed checks said.
    init(spec: LivenessSpec, name: String, endpoint: String?, onUnhealthy: @escaping @Sendable (String) -> Void) {
        self.spec = spec
        self.name = name
        self.endpoint = endpoint
        self.onUnhealthy = onUnhealthy
        scheduleNext()
    }

    var consecutiveFailures: Int { failing.load(ordering: .relaxed) }
    var checksMade: Int { checks.load(ordering: .relaxed) }

    /// Ends the checks (a check in progress finishes within its `timeout`). Idempotent.
    func stop() {
        guard !stopped.isSet else { return }
        stopped.set()
        guard let t = timer.withLock({ $0 }), EventLoop.shared.cancel(t) else { return }  // a check will see `stopped`
        BlockingPool.shared.submit { [self] in finish() }
    }

    private func scheduleNext() {
        timer.withLock { t in
            t = EventLoop.shared.schedule(after: spec.period) { [self] in
                BlockingPool.shared.submit { self.check() }
            }
        }
    }

    private func finish() {
        client?.terminate()
        client = nil
    }

    /// One check, on a pool thread.
    private func check() {
        if stopped.isSet { return finish() }
        let failure: String?
        switch spec.check {
        case .http(let url):
            switch HTTPProbe.get(url, timeout: spec.timeout) {
            case .success(let status) where (200...299).contains(status): failure = nil
            case .success(let status): failure = "GET \(url): status \(status)"
            case .failure(let f): failure = f.reason
            }
        case .ping(let configured):
            guard let address = configured ?? endpoint else { return finish() }  // refused at load
            if client == nil {
                client = try? SyncClient(endpoint: address, configuration: ClientConfiguration(
                    timeout: spec.timeout, attempts: 1, reconnectInterval: .milliseconds(20)))
            }
            if let client, let reply = try? client.ping(), reply.success {
                failure = nil
            } else {
                failure = "no ping reply from \(address) within \(DurationText.format(spec.timeout))"
            }
        }
        if stopped.isSet { return finish() }
        checks.add(1, ordering: .relaxed)
        guard let failure else {
            reasons.removeAll()
            failing.store(0, ordering: .relaxed)
            return scheduleNext()
        }
        reasons.append(failure)
        failing.store(reasons.count, ordering: .relaxed)
        if reasons.count >= spec.failures {
            let distinct = reasons.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            finish()
            onUnhealthy("\(reasons.count) liveness checks failed in a row (\(spec.check), every \(DurationText.format(spec.period))): "
                        + distinct.joined(separator: "; "))
            return
        }
        scheduleNext()
    }
}
