import Foundation
import ScheduleZeroWire
import Synchronization
import ZMQClient

/// How one request of the load ended.
public enum RequestOutcomeKind: String, Sendable, Equatable {
    /// A success reply to this request.
    case ok
    /// An error reply (`success: false`).
    case errorReply = "error_reply"
    /// Bytes that are not a reply (e.g. corrupted on the way).
    case invalidReply = "invalid_reply"
    /// No reply after every attempt: the request is lost.
    case lost
    /// A reply that carries another request's sequence number (a stale or doubled reply delivered).
    case mismatch
    /// Any other failure of the client.
    case failed
}

public struct RequestOutcome: Sendable, Equatable {
    public var client: Int
    public var seq: Int
    public var method: String
    public var target: String
    public var kind: RequestOutcomeKind
    public var attempts: Int
    public var latency: Duration
    public var error: String?
    public var finishedAt: ContinuousClock.Instant
    /// A reply that was taken as it is but does not follow the wire (no boolean `success`).
    public var wireProblem: String? = nil

    public init(client: Int, seq: Int, method: String, target: String, kind: RequestOutcomeKind, attempts: Int, latency: Duration,
                error: String?, finishedAt: ContinuousClock.Instant, wireProblem: String? = nil) {
        self.client = client
        self.seq = seq
        self.method = method
        self.target = target
        self.kind = kind
        self.attempts = attempts
        self.latency = latency
        self.error = error
        self.finishedAt = finishedAt
        self.wireProblem = wireProblem
    }
}

/// Counters of the load so far.
public struct LoadCounters: Sendable, Equatable {
    public var sent = 0
    /// Success replies (first attempt or after retries).
    public var ok = 0
    /// Requests that needed more than one attempt (whatever their end).
    public var retried = 0
    public var lost = 0
    public var errorReplies = 0
    public var invalidReplies = 0
    public var mismatched = 0
    public var failed = 0
    public init() {}

    /// Everything that did not end in a success reply.
    public var notOK: Int { lost + errorReplies + invalidReplies + mismatched + failed }
    public var errors: Int { errorReplies + invalidReplies }

    public var json: JSONValue {
        .object([
            "sent": .int(Int64(sent)), "ok": .int(Int64(ok)), "retried": .int(Int64(retried)), "lost": .int(Int64(lost)),
            "error_replies": .int(Int64(errorReplies)), "invalid_replies": .int(Int64(invalidReplies)),
            "mismatched": .int(Int64(mismatched)), "failed": .int(Int64(failed)),
        ])
    }
}

/// Load for an experiment: `clients` self-healing REQ clients (`SyncClient`), each on a thread of its own,
/// calling the spec's methods in turn at `rate` per second, every request with a sequence number (`seq`,
/// from 1 per client) and the client's number (`client`) in its params. Every outcome goes to the journal.
public final class LoadGenerator: @unchecked Sendable {
    public let spec: LoadSpec
    public let endpoints: [(name: String, endpoint: String)]
    public let seed: UInt64
    private let journal: Journal?
    private let state = Mutex(State())
    private let clock = ContinuousClock()
    private var threads: [Thread] = []
    private let finished = DispatchSemaphore(value: 0)

    struct State {
        var stopping = false
        var counters = LoadCounters()
        var outcomes: [RequestOutcome] = []
        var lastOK: ContinuousClock.Instant?
        var running = 0
    }

    /// - Parameter endpoints: name and endpoint of each target; client `i` uses `endpoints[i % count]`.
    public init(spec: LoadSpec, endpoints: [(name: String, endpoint: String)], seed: UInt64, journal: Journal?) {
        precondition(!endpoints.isEmpty, "load needs at least one endpoint")
        self.spec = spec
        self.endpoints = endpoints
        self.seed = seed
        self.journal = journal
    }

    public func start() {
        for i in 0..<spec.clients {
            let target = endpoints[i % endpoints.count]
            state.withLock { $0.running += 1 }
            let t = Thread { [self] in
                runClient(number: i + 1, target: target)
                state.withLock { $0.running -= 1 }
                finished.signal()
            }
            t.name = "chaos-load-\(i + 1)"
            threads.append(t)
            t.start()
        }
    }

    /// Asks every client to stop after its current call and waits for them (each call is bounded by the
    /// client's attempts x timeout). Returns whether all stopped in time.
    @discardableResult
    public func stop(timeout: Duration? = nil) -> Bool {
        state.withLock { $0.stopping = true }
        let c = spec.client
        let budget = timeout ?? (c.timeout * c.attempts + min(c.maxRetryDelay, c.retryDelay * 8) * c.attempts + .seconds(2))
        let deadline = DispatchTime.now() + .nanoseconds(Int(budget.secondsValue * 1e9))
        var ok = true
        for _ in threads where finished.wait(timeout: deadline) == .timedOut { ok = false }
        threads.removeAll()
        return ok
    }

    public var counters: LoadCounters { state.withLock { $0.counters } }
    public var outcomes: [RequestOutcome] { state.withLock { $0.outcomes } }
    /// When the last success reply came.
    public var lastOK: ContinuousClock.Instant? { state.withLock { $0.lastOK } }
    private var stopping: Bool { state.withLock { $0.stopping } }

    private func runClient(number: Int, target: (name: String, endpoint: String)) {
        var config = spec.client
        config.seed = FaultSchedule.seed(seed, entry: 10_000 + number)
        guard let client = try? SyncClient(endpoint: target.endpoint, configuration: config) else {
            journal?.record("load_error", ["client": .int(Int64(number)), "error": .string("cannot create a client for \(target.endpoint)")])
            return
        }
        defer { client.terminate() }
        let start = clock.now
        var seq = 0
        while !stopping {
            if spec.rate > 0 {
                let due = start.advanced(by: .seconds(Double(seq) / spec.rate))
                while !stopping && clock.now < due { sleepBriefly(min(due - clock.now, .milliseconds(20))) }
                if stopping { break }
            }
            seq += 1
            let call = spec.methods[(seq - 1) % spec.methods.count]
            var params = call.params
            params["seq"] = .int(Int64(seq))
            params["client"] = .int(Int64(number))
            let before = client.stats.retries
            let t0 = clock.now
            var kind: RequestOutcomeKind = .ok
            var errorText: String?
            var wireProblem: String?
            do {
                let r = try client.call(call.method, params: params)
                if r["success"] == nil { wireProblem = "a reply without a boolean success" }
                if !r.success {
                    kind = .errorReply
                    errorText = r.error
                } else if let back = r["seq"]?.intValue, back != Int64(seq) {
                    kind = .mismatch
                    errorText = "reply carries seq \(back)"
                }
            } catch let e as ClientError {
                switch e {
                case .noReply: kind = .lost
                case .invalidReply: kind = .invalidReply
                default: kind = .failed
                }
                errorText = e.description
            } catch {
                kind = .failed
                errorText = "\(error)"
            }
            let end = clock.now
            let attempts = client.stats.retries - before + 1
            let o = RequestOutcome(client: number, seq: seq, method: call.method, target: target.name, kind: kind,
                                   attempts: attempts, latency: end - t0, error: errorText, finishedAt: end, wireProblem: wireProblem)
            state.withLock { s in
                s.outcomes.append(o)
                s.counters.sent += 1
                if attempts > 1 { s.counters.retried += 1 }
                switch kind {
                case .ok: s.counters.ok += 1; s.lastOK = end
                case .errorReply: s.counters.errorReplies += 1
                case .invalidReply: s.counters.invalidReplies += 1
                case .lost: s.counters.lost += 1
                case .mismatch: s.counters.mismatched += 1
                case .failed: s.counters.failed += 1
                }
            }
            var fields: [String: JSONValue] = [
                "client": .int(Int64(number)), "seq": .int(Int64(seq)), "method": .string(call.method),
                "target": .string(target.name), "outcome": .string(kind.rawValue), "attempts": .int(Int64(attempts)),
                "latency_ms": .double(((end - t0).secondsValue * 1e6).rounded() / 1000),
            ]
            if let errorText { fields["error"] = .string(errorText) }
            if let wireProblem { fields["wire_problem"] = .string(wireProblem) }
            journal?.record("request", fields, at: end)
        }
    }

    private func sleepBriefly(_ d: Duration) {
        guard d > .zero else { return }
        Thread.sleep(forTimeInterval: d.secondsValue)
    }
}
