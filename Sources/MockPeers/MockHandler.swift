import Foundation
import ScheduleZeroWire
import Synchronization
import ZMQClient
import ZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// How the handler registers with a server (upstream's numbers by default).
public struct RegistrationSettings: Sendable, Equatable {
    /// Timeout of each registration, heartbeat and status call.
    public var timeout: Duration = .seconds(10)
    /// Time between heartbeat pings.
    public var heartbeatInterval: Duration = .seconds(30)
    /// Time between registration attempts after a failure.
    public var retryDelay: Duration = .seconds(15)
    /// Consecutive failed registrations after which the handler stops trying (it keeps serving).
    public var maxFailures = 5
    /// How long a graceful stop waits for `report_status offline` (upstream: 10 s; bounded here).
    public var offlineTimeout: Duration = .seconds(2)
    public init() {}
}

/// Settings of a mock handler. Every timeout, limit and seed is a parameter with a default.
public struct MockHandlerConfiguration: Sendable {
    public var id: String
    /// Data endpoint; `tcp://127.0.0.1:*` (or port 0) takes a free port.
    public var bind: String
    /// Control endpoint (a separate REP socket on its own thread), e.g. `ipc:///dep/run/h1.control`.
    public var control: String?
    /// Registration server endpoint; nil: no registration.
    public var server: String?
    /// Folder `write_file` writes into; nil: `write_file` answers an error.
    public var sandbox: String?
    /// Seed of every random fault; nil: one from the system (reported in the ready event's `seed`).
    public var seed: UInt64?
    public var faults = FaultSettings()
    /// Become ready (bind the data socket) only after this long.
    public var slowStart: Duration = .zero
    /// Larger requests get the `tooLarge` error reply.
    public var maxMessageBytes = 1 << 20
    /// Larger messages are refused by libzmq itself (the peer is disconnected): the memory guard.
    public var hardMessageLimit: Int64 = 64 << 20
    /// How often the loops look at their stop flag.
    public var pollInterval: Duration = .milliseconds(100)
    /// Log one `request` event per request (off by default: no I/O on the hot path).
    public var logRequests = false
    public var registration = RegistrationSettings()
    /// Written atomically with the ready event's JSON once the handler serves.
    public var readyFile: String?

    public init(id: String, bind: String = "tcp://127.0.0.1:*") {
        self.id = id
        self.bind = bind
    }
}

/// A mock ScheduleZero handler: answers the wire protocol on a data socket, misbehaves on command, reports
/// on a control channel, registers with a server. Usable in-process from tests and by `szmock handler`.
///
/// Threads: one for the data socket, one for the control socket, one for registration. Every wait is
/// bounded by `pollInterval`, so `stop` is seen quickly whatever the sockets do.
public final class MockHandler: @unchecked Sendable {
    public let configuration: MockHandlerConfiguration
    public let log: EventLog
    public let seed: UInt64

    struct Shared {
        var faults: FaultSettings
        var counters = HandlerCounters()
        var rng: SeededGenerator
        var endpoint: String?
        var controlEndpoint: String?
        var startError: String?
        var crashed = false
    }

    private let shared: Mutex<Shared>
    private let stopLatch = Latch()
    private let readyLatch = Latch()
    private let onCrash: @Sendable (CrashMode) -> Void
    private var dataContext: Context?
    private var threads: [LoopThread] = []
    /// Set by the data and registration threads, read by `stop`.
    private let registrationParts = Mutex<(thread: LoopThread?, context: Context?)>((nil, nil))
    private let startTime = ContinuousClock.now
    private let lifecycle = Mutex<(started: Bool, stopped: Bool)>((false, false))

    /// - Parameter onCrash: what a crash fault or the `crash` method does. The default (in-process) stops
    ///   every socket of the handler without a goodbye, as a dead process would; `szmock` exits or raises.
    public init(configuration: MockHandlerConfiguration, log: EventLog = .none,
                onCrash: (@Sendable (CrashMode) -> Void)? = nil) {
        self.configuration = configuration
        self.log = log
        self.seed = configuration.seed ?? SeededGenerator.randomSeed()
        self.shared = Mutex(Shared(faults: configuration.faults, rng: SeededGenerator(seed: seed)))
        self.onCrash = onCrash ?? { _ in }
    }

    deinit { stop(timeout: .seconds(2)) }

    // MARK: Public state

    /// The data endpoint really bound (nil until ready).
    public var endpoint: String? { shared.withLock { $0.endpoint } }
    /// The control endpoint really bound.
    public var controlEndpoint: String? { shared.withLock { $0.controlEndpoint } }
    public var counters: HandlerCounters { shared.withLock { $0.counters } }
    public var faults: FaultSettings { shared.withLock { $0.faults } }
    public var crashed: Bool { shared.withLock { $0.crashed } }
    public var isReady: Bool { readyLatch.isOpen && endpoint != nil }
    /// Why the handler could not start (bind failure), if so.
    public var startError: String? { shared.withLock { $0.startError } }
    public var ignoresSigterm: Bool { shared.withLock { $0.faults.ignoreSigterm } }

    /// Applies `fault.set` params (see `FaultSettings.apply`).
    public func setFaults(_ params: [String: JSONValue]) throws(PeerError) {
        try shared.withLock { s throws(PeerError) in try s.faults.apply(params) }
        log.emit("fault_set", ["faults": faults.json])
    }

    public func clearFaults() {
        shared.withLock { $0.faults = FaultSettings() }
        log.emit("fault_clear")
    }

    // MARK: Lifecycle

    /// Binds the control socket (if any) and starts the threads; the data socket is bound by its thread
    /// after `slowStart`. Use `waitReady` (or the `ready` event) to know when it serves.
    public func start() throws {
        let go = lifecycle.withLock { l -> Bool in
            if l.started { return false }
            l.started = true
            return true
        }
        guard go else { return }
        let ctx = try Context()
        dataContext = ctx
        let controlReady = Latch()
        if let control = configuration.control {
            threads.append(LoopThread(name: "control") { [self] in controlLoop(ctx, control, controlReady) })
            controlReady.wait(timeout: .seconds(10))
            if let e = startError { throw PeerError.bind(endpoint: control, reason: e) }
        }
        threads.append(LoopThread(name: "data") { [self] in dataLoop(ctx) })
    }

    /// Waits until the handler serves; throws its bind error or a timeout.
    public func waitReady(timeout: Duration = .seconds(10)) throws {
        guard readyLatch.wait(timeout: timeout) else {
            throw PeerError.startTimedOut("handler \(configuration.id) not ready within \(timeout)")
        }
        if let e = startError { throw PeerError.bind(endpoint: configuration.bind, reason: e) }
    }

    /// `start()` then `waitReady`.
    public func startAndWait(timeout: Duration = .seconds(10)) throws {
        try start()
        try waitReady(timeout: timeout)
    }

    /// Graceful stop: `report_status offline` (bounded), every socket closed with linger 0, threads joined.
    /// Returns `false` when some thread did not end within `timeout` (its context is terminated anyway).
    @discardableResult
    public func stop(timeout: Duration = .seconds(5)) -> Bool {
        let go = lifecycle.withLock { l -> Bool in
            if !l.started || l.stopped { return false }
            l.stopped = true
            return true
        }
        guard go else { return true }
        log.emit("stopping")
        stopLatch.open()
        readyLatch.open()
        var clean = true
        if let r = registrationParts.withLock({ $0.thread }) {
            let grace = configuration.registration.offlineTimeout + .milliseconds(500)
            if !r.join(timeout: min(grace, timeout)) {
                // Stuck in a call to a server that does not answer: end it (ETERM) instead of waiting.
                try? registrationParts.withLock({ $0.context })?.terminate(timeout: .milliseconds(500))
                clean = r.join(timeout: .seconds(1)) && clean
            }
        }
        for t in threads { clean = t.join(timeout: timeout) && clean }
        try? registrationParts.withLock({ $0.context })?.terminate(timeout: .seconds(1))
        try? dataContext?.terminate(timeout: .seconds(1))
        log.emit("stopped", ["clean": .bool(clean)])
        return clean
    }

    public var isStopping: Bool { stopLatch.isOpen }

    // MARK: Status

    public func statusReply() -> Reply {
        let s = shared.withLock { $0 }
        return Reply.ok([
            "handler_id": .string(configuration.id),
            "endpoint": s.endpoint.map { .string($0) } ?? .null,
            "pid": .int(Int64(getpid())),
            "uptime_ms": .int((ContinuousClock.now - startTime).wholeMilliseconds),
            "seed": .string(String(seed)),
            "counters": s.counters.json,
            "faults": s.faults.json,
        ])
    }

    func readyEvent() -> [String: JSONValue] {
        [
            "role": "handler",
            "id": .string(configuration.id),
            "endpoint": endpoint.map { .string($0) } ?? .null,
            "control": controlEndpoint.map { .string($0) } ?? .null,
            "pid": .int(Int64(getpid())),
        ]
    }

    // MARK: Data loop

    private func makeDataSocket(_ ctx: Context, _ endpoint: String) throws -> Socket {
        // ROUTER, not REP: it speaks to REQ peers exactly as a REP does, but can leave a request unanswered
        // (drop) and keep serving the next one. The envelope is handled by hand below.
        let s = try ctx.socket(.router)
        try s.setLinger(.zero)
        try s.setMaxMessageSize(configuration.hardMessageLimit)
        try s.setSendTimeout(.milliseconds(100))
        // A blocking receive bounded by pollInterval: one libzmq call per wait, and `stop` is still seen.
        try s.setReceiveTimeout(configuration.pollInterval)
        try s.bind(endpoint)
        return s
    }

    private func dataLoop(_ ctx: Context) {
        if configuration.slowStart > .zero {
            log.emit("slow_start", ["ms": .int(configuration.slowStart.wholeMilliseconds)])
            if sleep(configuration.slowStart, unless: stopLatch) { readyLatch.open(); return }
        }
        var socket: Socket
        do {
            socket = try makeDataSocket(ctx, configuration.bind)
            let ep = try socket.lastEndpoint
            shared.withLock { $0.endpoint = ep }
        } catch {
            shared.withLock { $0.startError = "\(error)" }
            log.emit("error", ["what": "bind", "endpoint": .string(configuration.bind), "error": .string("\(error)")])
            readyLatch.open()
            return
        }
        let ready = readyEvent()
        if let file = configuration.readyFile {
            do { try writeFileAtomically(file, EventLog.line("ready", ready) + "\n") } catch {
                log.emit("error", ["what": "ready_file", "error": .string("\(error)")])
            }
        }
        log.emit("ready", ready)
        readyLatch.open()
        if configuration.server != nil {
            registrationParts.withLock { parts in
                if !stopLatch.isOpen {
                    parts.thread = LoopThread(name: "registration") { [self] in registrationLoop() }
                }
            }
        }

        let core = HandlerCore(handlerID: configuration.id, sandbox: configuration.sandbox,
                               maxMessageBytes: configuration.maxMessageBytes, stop: stopLatch)
        var frames: [[UInt8]] = []
        frames.reserveCapacity(4)
        while !stopLatch.isOpen {
            frames.removeAll(keepingCapacity: true)
            do {
                let first = try socket.receiveFrame()
                frames.append(first.bytes)
                var more = first.more
                while more {
                    let f = try socket.receiveFrame()
                    frames.append(f.bytes)
                    more = f.more
                }
            } catch let e as ZMQError where e.code == .eagain {
                continue  // no request within pollInterval: look at the stop flag again
            } catch {
                log.emit("error", ["what": "receive", "error": .string("\(error)")])
                if stopLatch.isOpen || ctx.isTerminated { break }
                _ = sleep(.milliseconds(10), unless: stopLatch)
                continue
            }
            // Envelope: routing frames up to and including the first empty delimiter (REQ peers send one).
            let delimiter = frames.firstIndex(where: { $0.isEmpty }) ?? 0
            let envelopeCount = delimiter == 0 ? 1 : delimiter + 1
            if envelopeCount > frames.count { continue }
            if !handleMessage(frames, envelopeCount: envelopeCount, core: core, socket: socket, ctx: ctx, replace: &socket) {
                break
            }
        }
        socket.close(linger: .zero)
    }

    struct Decision {
        var crash: CrashMode?
        var swallow = false
        var delay: Duration = .zero
        var drop = false
        var garbage: GarbageKind?
    }

    /// Returns false when the loop must end (crash).
    private func handleMessage(_ frames: [[UInt8]], envelopeCount: Int, core: HandlerCore, socket: Socket,
                               ctx: Context, replace: inout Socket) -> Bool {
        let d: Decision = shared.withLock { s in
            var d = Decision()
            s.counters.requests += 1
            if let c = s.faults.crashAfter {
                if c <= 0 { d.crash = s.faults.crashMode; return d }
                s.faults.crashAfter = c - 1
            }
            if s.faults.swallowNext > 0 {
                s.faults.swallowNext -= 1
                s.counters.swallowed += 1
                d.swallow = true
                return d
            }
            return d
        }
        let body = envelopeCount < frames.count ? Array(frames[envelopeCount...]) : [[]]
        if configuration.logRequests {
            log.emit("request", ["method": body.count == 1 ? (HandlerCore.methodName(of: body[0]).map { .string($0) } ?? .null) : .null,
                                 "frames": .int(Int64(body.count)), "bytes": .int(Int64(body.reduce(0) { $0 + $1.count }))])
        }
        if let mode = d.crash {
            crash(mode, reason: "crash_after")
            return false
        }
        if d.swallow {
            log.emit("swallowed", ["method": body.count == 1 ? (HandlerCore.methodName(of: body[0]).map { .string($0) } ?? .null) : .null])
            // Reset the REP side: the caller's REQ socket waits for a reply that can never come.
            socket.close(linger: .zero)
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(5)
            let ep = endpoint ?? configuration.bind
            while true {
                do {
                    replace = try makeDataSocket(ctx, ep)
                    break
                } catch {
                    if clock.now >= deadline || stopLatch.isOpen {
                        log.emit("error", ["what": "rebind", "endpoint": .string(ep), "error": .string("\(error)")])
                        return false
                    }
                    _ = sleep(.milliseconds(5), unless: stopLatch)
                }
            }
            return true
        }

        let outcome = core.handle(body)
        guard case .reply(let reply, let isError) = outcome else {
            if case .crash(let code) = outcome { crash(.exit(code), reason: "crash method") }
            return false
        }

        let after: Decision = shared.withLock { s in
            var d = Decision()
            let f = s.faults
            if f.delayMs > 0 || f.jitterMs > 0 {
                var ms = Double(f.delayMs)
                if f.jitterMs > 0 { ms += Double(f.jitterMs) * (2 * s.rng.unit() - 1) }
                d.delay = .milliseconds(Int64(max(0, ms.rounded())))
                s.counters.delayed += 1
            }
            if f.dropNext > 0 {
                s.faults.dropNext -= 1
                d.drop = true
            } else if f.dropProbability > 0, s.rng.unit() < f.dropProbability {
                d.drop = true
            }
            if d.drop {
                s.counters.dropped += 1
            } else if let g = f.garbage {
                d.garbage = g
                s.counters.garbage += 1
            } else {
                s.counters.replies += 1
                if isError { s.counters.errors += 1 }
            }
            return d
        }
        if after.delay > .zero, sleep(after.delay, unless: stopLatch) { return false }
        if after.drop {
            log.emit("dropped", ["method": HandlerCore.methodName(of: body.first ?? []).map { .string($0) } ?? .null])
            return true
        }
        var payload = reply
        if let g = after.garbage {
            payload = garbageBytes(g)
            log.emit("garbage", ["kind": .string(g.rawValue)])
        }
        do {
            for i in 0..<envelopeCount { try socket.send(frames[i], flags: .sendMore) }
            try socket.send(payload)
        } catch {
            log.emit("error", ["what": "send", "error": .string("\(error)")])
        }
        return true
    }

    private func garbageBytes(_ kind: GarbageKind) -> [UInt8] {
        switch kind {
        case .bytes:
            let n = shared.withLock { s in 8 + Int(s.rng.next() % 24) }
            var out: [UInt8] = [0xFF, 0xFE]  // never valid UTF-8, never JSON
            for _ in 0..<n { out.append(UInt8(truncatingIfNeeded: shared.withLock { $0.rng.next() })) }
            return out
        case .wrongShape:
            return Array(#"["wrong","shape"]"#.utf8)
        }
    }

    private func crash(_ mode: CrashMode, reason: String) {
        switch mode {
        case .exit(let code): log.emit("crash", ["reason": .string(reason), "exit_code": .int(Int64(code))])
        case .signal(let s): log.emit("crash", ["reason": .string(reason), "signal": .string(FaultSettings.signalName(s))])
        }
        shared.withLock { $0.crashed = true }
        onCrash(mode)
        // In-process: behave like a dead process, no goodbye.
        stopLatch.open()
    }

    // MARK: Control loop

    private func controlLoop(_ ctx: Context, _ endpoint: String, _ bound: Latch) {
        // A control channel: 1 MiB requests at most, socket file 0600, peers of this uid or root only
        // (others get an error reply and a `control_refused` event, also as a JSON line on stderr).
        let log = self.log
        let service = ReplyService.control(pollInterval: configuration.pollInterval) { refusal in
            var fields: [String: JSONValue] = ["endpoint": .string(refusal.endpoint), "reason": .string(refusal.reason)]
            if let c = refusal.credentials {
                fields["uid"] = .int(Int64(c.uid))
                fields["gid"] = .int(Int64(c.gid))
                fields["pid"] = .int(Int64(c.pid))
            }
            if let m = refusal.method { fields["method"] = .string(m) }
            log.emit("control_refused", fields)
            // Also on stderr, where an operator looks for refusals (the event stream may be a pipe or off).
            EventLog.fileDescriptor(STDERR_FILENO)(EventLog.line("control_refused", fields))
        }
        let socket: Socket
        var boundEndpoint = endpoint
        do {
            let (s, ep) = try service.bind(endpoint, in: ctx)
            boundEndpoint = ep
            socket = s
            shared.withLock { $0.controlEndpoint = ep }
        } catch {
            shared.withLock { $0.startError = "\(error)" }
            bound.open()
            return
        }
        bound.open()
        service.serve(socket, in: ctx, endpoint: boundEndpoint, shouldStop: { stopLatch.isOpen }, handle: control)
    }

    /// Answers one control request (the same as over the control socket).
    public func control(_ req: Request) -> Reply {
        switch req.method {
        case "ping":
            return .ok(["message": "pong", "handler_id": .string(configuration.id)])
        case "status":
            return statusReply()
        case "fault.set":
            do {
                try setFaults(req.params)
                return .ok(["faults": faults.json])
            } catch {
                return .failure(error.description)
            }
        case "fault.clear":
            clearFaults()
            return .ok(["faults": faults.json])
        default:
            return .failure(Wire.unknownMethod(req.method))
        }
    }

    // MARK: Registration

    private func registrationLoop() {
        guard let server = configuration.server else { return }
        let r = configuration.registration
        guard let ctx = try? Context() else { return }
        registrationParts.withLock { $0.context = ctx }
        var cfg = ClientConfiguration(timeout: r.timeout, attempts: 1)
        cfg.seed = seed
        guard let client = try? SyncClient(endpoint: server, configuration: cfg, context: ctx) else { return }
        defer { client.terminate() }
        let address = endpoint ?? configuration.bind
        var failures = 0
        var registered = false
        var everRegistered = false
        while !stopLatch.isOpen {
            if !registered {
                do {
                    let pong = try client.ping()
                    guard pong.success else { throw PeerError.io("server ping failed: \(pong.error ?? "?")") }
                    let reply = try client.call("register", params: [
                        "handler_id": .string(configuration.id),
                        "address": .string(address),
                        "methods": .array(HandlerCore.methods.map { .string($0) }),
                    ])
                    guard reply.success else { throw PeerError.io("register refused: \(reply.error ?? "?")") }
                    registered = true
                    everRegistered = true
                    failures = 0
                    log.emit("registered", ["server": .string(server), "address": .string(address),
                                            "status": reply["status"] ?? .null])
                } catch {
                    if stopLatch.isOpen { break }
                    failures += 1
                    client.close()
                    log.emit("registration_failed", ["server": .string(server), "attempt": .int(Int64(failures)),
                                                     "error": .string("\(error)")])
                    if failures >= r.maxFailures {
                        log.emit("registration_gave_up", ["server": .string(server), "failures": .int(Int64(failures))])
                        break
                    }
                    if sleep(r.retryDelay, unless: stopLatch) { break }
                    continue
                }
            }
            if sleep(r.heartbeatInterval, unless: stopLatch) { break }
            do {
                let pong = try client.ping()
                guard pong.success else { throw PeerError.io("server ping failed: \(pong.error ?? "?")") }
            } catch {
                if stopLatch.isOpen { break }
                log.emit("heartbeat_failed", ["server": .string(server), "error": .string("\(error)")])
                client.close()
                registered = false
            }
        }
        // Graceful stop (not a crash): tell the server, waiting a bounded time.
        guard everRegistered, !crashed else { return }
        let offline = try? SyncClient(endpoint: server, configuration: ClientConfiguration(timeout: r.offlineTimeout, attempts: 1), context: ctx)
        defer { offline?.terminate() }
        do {
            guard let offline else { throw PeerError.io("no client") }
            let reply = try offline.call("report_status", params: ["handler_id": .string(configuration.id), "status": "offline"])
            log.emit("offline_reported", ["success": .bool(reply.success)])
        } catch {
            log.emit("offline_report_failed", ["error": .string("\(error)")])
        }
    }
}
