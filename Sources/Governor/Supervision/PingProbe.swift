// The ZeroMQ readiness probe: a process is ready when it answers ScheduleZero `ping` ({"method":"ping"} ->
// {"success":true,...}) at its endpoint.
//
// Deployment files: `readiness: ping` (the process's own `endpoint`), or
// `readiness: {ping: ENDPOINT, within: 50ms, timeout: 10s}` (`within`: how long one ping waits for its
// reply before the probe closes the socket and sends a fresh one; `timeout`: the whole readiness deadline).
// `{kind: zmq-ping, endpoint: ..., within: ...}` is the same probe in the generic form.
//
// Every ping is one job of the governor's BlockingPool through the blocking `SyncClient` (never on Swift's
// cooperative pool, which has two threads here); the task awaiting it only suspends, and between two pings
// it gives the pool back (a refused ipc connect waits 2 ms on the event loop's timer), so a fixed number of
// threads serves any number of starting processes. Cancellation (a stop that overtakes a start) is seen
// between two pings, so the probe returns within one `within`.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ScheduleZeroWire
import Synchronization
import ZMQClient

public struct PingProbe: ReadinessProbe {
    /// Where to ping; nil: the process's own endpoint.
    public let endpoint: String?
    /// The reply timeout of one ping.
    public let within: Duration

    public static let kinds = ["ping", "zmq-ping"]

    public init(endpoint: String? = nil, within: Duration = .milliseconds(50)) {
        self.endpoint = endpoint
        self.within = within
    }

    /// From deployment settings: `ping` or `endpoint` (the address), `within` (a duration).
    public init(settings: [String: String]) throws {
        let address = settings["ping"] ?? settings["endpoint"]
        var within = Duration.milliseconds(50)
        if let w = settings["within"] {
            guard let d = DurationText.value(w), d > .zero else {
                throw GovernorError.invalidConfig("readiness within \"\(w)\" is not a duration like 50ms")
            }
            within = d
        }
        if let extra = settings.keys.sorted().first(where: { !["ping", "endpoint", "within"].contains($0) }) {
            throw GovernorError.invalidConfig("readiness ping: unknown setting \"\(extra)\" (allowed: ping, endpoint, within, timeout)")
        }
        self.init(endpoint: address.flatMap { $0.isEmpty ? nil : $0 }, within: within)
    }

    public func waitUntilReady(_ target: ReadinessTarget, deadline: ContinuousClock.Instant) async throws {
        guard let address = endpoint ?? target.endpoint else {
            throw GovernorError.invalidConfig("\(target.name): readiness ping needs an endpoint (set `endpoint` or `ping:`)")
        }
        let within = self.within
        let started = ContinuousClock.now
        let client = PingAttempts(address: address, within: within)
        defer { BlockingPool.shared.submit { client.close() } }
        var lastStart: ContinuousClock.Instant?
        while true {
            try Task.checkCancellation()
            // Given up only on a ping made at the deadline, also after a stall of this task (`ReadinessDeadline`).
            if ReadinessDeadline.mayGiveUp(now: ContinuousClock.now, deadline: deadline, lastAttemptStart: lastStart,
                                           cycle: within + .milliseconds(2)) {
                throw ReadinessError.timedOut(name: target.name, waitingFor: "a ping reply from \(address)",
                                              after: ContinuousClock.now - started)
            }
            let attemptStart = ContinuousClock.now
            lastStart = attemptStart
            if await BlockingPool.shared.run({ client.ping() }) { return }
            // A refused ipc connect fails at once: do not spin.
            if ContinuousClock.now - attemptStart < .milliseconds(2) { try await EventLoop.shared.sleep(for: .milliseconds(2)) }
        }
    }

    /// Blocking: pings `address` until a `success: true` reply, the deadline, or cancellation.
    public static func pingUntilAnswered(_ address: String, within: Duration, deadline: ContinuousClock.Instant,
                                         cancelled: CancelFlag = CancelFlag()) -> Bool {
        let config = ClientConfiguration(timeout: within, attempts: 1, reconnectInterval: .milliseconds(5))
        guard let client = try? SyncClient(endpoint: address, configuration: config) else { return false }
        defer { client.terminate() }
        while !cancelled.isSet && ContinuousClock.now < deadline {
            let attemptStart = ContinuousClock.now
            if let reply = try? client.ping(), reply.success { return true }
            // A refused ipc connect fails at once: do not spin.
            let spent = ContinuousClock.now - attemptStart
            if spent < .milliseconds(2) { usleep(2_000) }
        }
        return false
    }
}

/// One probe's client, used by one pool job at a time (each attempt awaits the one before it).
private final class PingAttempts: @unchecked Sendable {
    let address: String
    let config: ClientConfiguration
    private var client: SyncClient?

    init(address: String, within: Duration) {
        self.address = address
        config = ClientConfiguration(timeout: within, attempts: 1, reconnectInterval: .milliseconds(5))
    }

    func ping() -> Bool {
        if client == nil { client = try? SyncClient(endpoint: address, configuration: config) }
        guard let client, let reply = try? client.ping() else { return false }
        return reply.success
    }

    func close() {
        client?.terminate()
        client = nil
    }
}

/// A flag set once from any thread (a cancellation handler) and read by a blocking loop.
public final class CancelFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func set() { flag.store(true, ordering: .releasing) }
    public var isSet: Bool { flag.load(ordering: .acquiring) }
}
