import Foundation
import ScheduleZeroWire
import Synchronization
import ZMQClient
import ZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// Settings of a mock server.
public struct MockServerConfiguration: Sendable {
    /// Registration endpoint (REP).
    public var bind = "tcp://127.0.0.1:\(Wire.defaultServerPort)"
    public var jobs: [JobSpec] = []
    /// Per-attempt timeout and the retry rule of dispatches (upstream: 10 s, 3 attempts, 1 s doubling,
    /// +-50 % jitter, at least 0.1 s). `seed` makes the jitter reproducible.
    public var dispatch: ClientConfiguration = .upstreamServer
    public var readyFile: String?
    public var pollInterval: Duration = .milliseconds(100)
    /// How long `stop` lets a dispatch in flight finish before cutting it off.
    public var stopGrace: Duration = .seconds(1)
    public init() {}
}

/// A handler the server knows.
public struct RegisteredHandler: Sendable, Equatable {
    public var id: String
    public var address: String
    public var methods: [String]
    public var status: String
    public var registrations: Int

    var json: JSONValue {
        ["address": .string(address), "methods": .array(methods.map { .string($0) }), "status": .string(status),
         "registrations": .int(Int64(registrations))]
    }
}

/// A mock ScheduleZero server: the registration REP with upstream's exact replies, a registry, and a
/// dispatcher that calls handlers on intervals through the self-healing client, journaling every dispatch,
/// attempt, reply and failure (with job id and sequence number).
///
/// Journal events (JSON lines, `"event"` first): `ready`, `register`, `report_status`, `skip` (handler not
/// registered), `dispatch {job, seq, handler, method, address}`, `attempt {job, seq, attempt}`,
/// `attempt_failed {job, seq, attempt, error}`, `reply {job, seq, attempt, success, reply}`,
/// `failure {job, seq, attempts, error}`, `stopping`, `stopped`. Each dispatched `seq` ends in exactly one
/// `reply` or `failure`.
public final class MockServer: @unchecked Sendable {
    public let configuration: MockServerConfiguration
    public let log: EventLog
    private let registry = Mutex<[String: RegisteredHandler]>([:])
    private let stopLatch = Latch()
    private let readyLatch = Latch()
    private let state = Mutex<(endpoint: String?, error: String?, started: Bool, stopped: Bool)>((nil, nil, false, false))
    private var threads: [LoopThread] = []
    private var jobThreads: [LoopThread] = []
    private var context: Context?
    private var dispatchContext: Context?

    public init(configuration: MockServerConfiguration, log: EventLog = .none) {
        self.configuration = configuration
        self.log = log
    }

    deinit { stop() }

    public var endpoint: String? { state.withLock { $0.endpoint } }
    public var handlers: [String: RegisteredHandler] { registry.withLock { $0 } }

    public func start() throws {
        let go = state.withLock { s -> Bool in
            if s.started { return false }
            s.started = true
            return true
        }
        guard go else { return }
        let ctx = try Context()
        context = ctx
        dispatchContext = try Context()
        threads.append(LoopThread(name: "server-rep") { [self] in repLoop(ctx) })
        guard readyLatch.wait(timeout: .seconds(10)) else { throw PeerError.startTimedOut("server did not bind within 10 s") }
        if let e = state.withLock({ $0.error }) { throw PeerError.bind(endpoint: configuration.bind, reason: e) }
        let ready: [String: JSONValue] = ["role": "server", "endpoint": endpoint.map { .string($0) } ?? .null,
                                          "pid": .int(Int64(getpid())), "jobs": .int(Int64(configuration.jobs.count))]
        if let file = configuration.readyFile {
            try writeFileAtomically(file, EventLog.line("ready", ready) + "\n")
        }
        log.emit("ready", ready)
        var rng = SeededGenerator(seed: configuration.dispatch.seed ?? SeededGenerator.randomSeed())
        for job in configuration.jobs {
            let seed = rng.next()
            jobThreads.append(LoopThread(name: "job-\(job.id)") { [self] in jobLoop(job, seed: seed) })
        }
    }

    /// Stops dispatching and serving: dispatches in flight get `stopGrace`, then their calls are cut off.
    @discardableResult
    public func stop(timeout: Duration = .seconds(5)) -> Bool {
        let go = state.withLock { s -> Bool in
            if !s.started || s.stopped { return false }
            s.stopped = true
            return true
        }
        guard go else { return true }
        log.emit("stopping")
        stopLatch.open()
        var clean = true
        for t in jobThreads where !t.join(timeout: configuration.stopGrace) {
            try? dispatchContext?.terminate(timeout: .milliseconds(500))
            clean = t.join(timeout: timeout) && clean
        }
        for t in threads { clean = t.join(timeout: timeout) && clean }
        try? dispatchContext?.terminate(timeout: .seconds(1))
        try? context?.terminate(timeout: .seconds(1))
        log.emit("stopped", ["clean": .bool(clean)])
        return clean
    }

    // MARK: Registration socket

    private func repLoop(_ ctx: Context) {
        let service = ReplyService(pollInterval: configuration.pollInterval, maxMessageSize: 16 << 20)
        let socket: Socket
        do {
            let (s, ep) = try service.bind(configuration.bind, in: ctx)
            socket = s
            state.withLock { $0.endpoint = ep }
        } catch {
            state.withLock { $0.error = "\(error)" }
            readyLatch.open()
            return
        }
        readyLatch.open()
        service.serve(socket, in: ctx, shouldStop: { stopLatch.isOpen }, handle: handle)
    }

    /// Answers one registration-socket request exactly as upstream's server.
    public func handle(_ req: Request) -> Reply {
        let p = req.params
        switch req.method {
        case "ping":
            return .ok(["message": "pong"])
        case "register":
            guard let id = p["handler_id"]?.stringValue, let address = p["address"]?.stringValue else {
                return .failure("Missing handler_id or address")
            }
            let methods = (p["methods"]?.arrayValue ?? []).compactMap(\.stringValue)
            let status: String = registry.withLock { r in
                let known = r[id] != nil
                let n = (r[id]?.registrations ?? 0) + 1
                r[id] = RegisteredHandler(id: id, address: address, methods: methods, status: "registered", registrations: n)
                return known ? "re-registered" : "registered"
            }
            log.emit("register", ["handler_id": .string(id), "address": .string(address), "status": .string(status)])
            return .ok(["handler_id": .string(id), "address": .string(address), "status": .string(status),
                        "methods": .array(methods.map { .string($0) }),
                        "message": .string("Handler '\(id)' \(status) successfully")])
        case "report_status":
            let id = p["handler_id"]?.stringValue ?? ""
            let status = p["status"]?.stringValue ?? ""
            let known: Bool = registry.withLock { r in
                guard r[id] != nil else { return false }
                r[id]!.status = status
                return true
            }
            log.emit("report_status", ["handler_id": .string(id), "status": .string(status), "known": .bool(known)])
            guard known else { return .failure(Wire.handlerNotRegistered) }
            return .ok(["handler_id": .string(id), "status": .string(status)])
        case "list_handlers":  // mock extension, for tests and people
            return .ok(["handlers": .object(handlers.mapValues(\.json))])
        default:
            return .failure(Wire.unknownMethod(req.method))
        }
    }

    // MARK: Dispatcher

    private func jobLoop(_ job: JobSpec, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let clock = ContinuousClock()
        var due = clock.now + job.interval
        var seq = 0
        var client: SyncClient?
        var clientAddress = ""
        defer { client?.terminate() }
        let retry = configuration.dispatch
        var perAttempt = retry
        perAttempt.attempts = 1
        while !stopLatch.isOpen {
            if let c = job.count, seq >= c { break }
            if sleep(max(.zero, due - clock.now), unless: stopLatch) { break }
            due = max(due + job.interval, clock.now)
            guard let handler = registry.withLock({ $0[job.handlerID] }), handler.status != "offline" else {
                log.emit("skip", ["job": .string(job.id), "handler": .string(job.handlerID),
                                  "reason": "handler not registered or offline"])
                continue
            }
            seq += 1
            if client == nil || clientAddress != handler.address {
                client?.terminate()
                client = try? SyncClient(endpoint: handler.address, configuration: perAttempt, context: dispatchContext)
                clientAddress = handler.address
            }
            let base: [String: JSONValue] = ["job": .string(job.id), "seq": .int(Int64(seq))]
            log.emit("dispatch", base.merging(["handler": .string(job.handlerID), "method": .string(job.method),
                                               "address": .string(handler.address)]) { a, _ in a })
            var lastError = "no client"
            var done = false
            var made = 0
            for attempt in 1...retry.attempts {
                if attempt > 1 {
                    var d = retry.baseDelay(beforeAttempt: attempt)
                    if retry.jitter > 0 { d = d * (1 + retry.jitter * (2 * rng.unit() - 1)) }
                    if retry.retryDelay >= .milliseconds(100) { d = max(d, .milliseconds(100)) }
                    if sleep(d, unless: stopLatch) { lastError = "stopped"; break }
                }
                var a = base
                a["attempt"] = .int(Int64(attempt))
                made = attempt
                log.emit("attempt", a)
                guard let c = client else { break }
                do {
                    let reply = try c.call(job.method, params: job.params)
                    a["success"] = .bool(reply.success)
                    a["reply"] = .object(reply.fields)
                    log.emit("reply", a)
                    done = true
                    break
                } catch {
                    lastError = stopLatch.isOpen ? "stopped: \(error)" : "\(error)"
                    a["error"] = .string(lastError)
                    log.emit("attempt_failed", a)
                    if stopLatch.isOpen { break }
                }
            }
            if !done {
                var f = base
                f["error"] = .string(lastError)
                f["attempts"] = .int(Int64(made))
                log.emit("failure", f)
            }
        }
    }
}
