import Foundation
import ScheduleZeroWire
import Synchronization
import ZeroMQ
import ZMQClient

/// Settings of a `ChaosProxy`. Every time is a parameter with a default.
public struct ChaosProxyConfiguration: Sendable {
    /// Where REQ clients connect (a ROUTER binds it), e.g. `tcp://127.0.0.1:5601` or `tcp://127.0.0.1:*`.
    public var listen: String
    /// The REP handler behind the proxy (a DEALER connects to it).
    public var upstream: String
    /// An optional REP endpoint answering `ping`, `status`, `set`, `clear` in ScheduleZero's JSON shape.
    public var control: String?
    public var seed: UInt64
    public var faults: ProxyFaults
    /// A name for messages and reports.
    public var name: String
    /// The longest single wait of the proxy thread: bounds how long `stop()` takes.
    public var pollInterval: Duration
    /// How many decisions per direction are kept for `decisions(_:)`.
    public var decisionLogLimit: Int
    /// `ZMQ_MAXMSGSIZE` of the listening ROUTER: a client sending a larger message is disconnected. 64 MiB,
    /// the mock handler's own hard limit; nil for none.
    public var maxMessageSize: Int64? = 64 << 20

    public init(listen: String, upstream: String, control: String? = nil, seed: UInt64 = SeededGenerator.randomSeed(),
                faults: ProxyFaults = .none, name: String = "proxy", pollInterval: Duration = .milliseconds(20),
                decisionLogLimit: Int = 100_000) {
        self.listen = listen
        self.upstream = upstream
        self.control = control
        self.seed = seed
        self.faults = faults
        self.name = name
        self.pollInterval = pollInterval
        self.decisionLogLimit = decisionLogLimit
    }
}

public enum ChaosProxyError: Error, CustomStringConvertible, Sendable {
    case cannotBind(what: String, endpoint: String, reason: String)
    case cannotConnect(endpoint: String, reason: String)
    case stopTimedOut(name: String, after: Duration)

    public var description: String {
        switch self {
        case let .cannotBind(w, e, r): "cannot bind the proxy's \(w) endpoint \(e): \(r)"
        case let .cannotConnect(e, r): "cannot connect the proxy to its upstream \(e): \(r)"
        case let .stopTimedOut(n, d): "proxy \(n) did not stop within \(d)"
        }
    }
}

/// A message-level chaos proxy between REQ clients and a REP handler: a ROUTER for the clients, a DEALER to the
/// handler (as `zmq_proxy`), with drop, delay + jitter, duplicate, reorder, corrupt and blackhole faults,
/// each with a probability, switchable at run time from any thread or through the control endpoint.
///
/// Envelopes travel intact (every frame before the body is passed through unchanged), so any REQ/REP pair
/// works, the real Python handler included. All socket work happens on one thread of the proxy's own,
/// never on Swift's cooperative pool; every wait there is bounded by `pollInterval`, so `stop()` is prompt.
/// Every random choice comes from `FaultDecider` (seeded): the same seed and the same traffic give the same
/// decisions.
public final class ChaosProxy: @unchecked Sendable {
    public let configuration: ChaosProxyConfiguration
    /// The endpoint really bound for clients (a `*` port resolved).
    public let listenEndpoint: String
    /// The control endpoint really bound, if any.
    public let controlEndpoint: String?
    public var seed: UInt64 { configuration.seed }
    public var name: String { configuration.name }

    struct Shared {
        var faults: ProxyFaults
        var stats = ProxyStats()
        var decisions: [MessageDirection: [ProxyDecision]] = [:]
        var stopping = false
        /// Messages held for delay or reorder right now.
        var holding = 0
        /// Set by `releaseHeld()`; the proxy thread sends everything it holds on its next turn.
        var releaseRequested = false
    }

    private let shared: Mutex<Shared>
    private let context: Context
    private let done = DispatchSemaphore(value: 0)
    private let running = Atomic<Bool>(false)

    /// Binds and connects, then starts the proxy thread. Throws naming the endpoint that failed.
    public init(_ configuration: ChaosProxyConfiguration) throws {
        self.configuration = configuration
        shared = Mutex(Shared(faults: configuration.faults))
        context = try Context()
        let sockets: ProxySockets
        do {
            let front = try context.socket(.router)
            try front.setMaxMessageSize(configuration.maxMessageSize)
            do { try front.bind(configuration.listen) } catch {
                throw ChaosProxyError.cannotBind(what: "listen", endpoint: configuration.listen, reason: "\(error)")
            }
            let back = try context.socket(.dealer)
            do { try back.connect(configuration.upstream) } catch {
                throw ChaosProxyError.cannotConnect(endpoint: configuration.upstream, reason: "\(error)")
            }
            var control: Socket?
            if let ep = configuration.control {
                let c = try context.socket(.rep)
                // A control socket: requests above 1 MiB drop the connection (docs/CHAOS.md, limits).
                try c.setMaxMessageSize(ReplyService.controlMaxMessageSize)
                do { try c.bind(ep) } catch {
                    throw ChaosProxyError.cannotBind(what: "control", endpoint: ep, reason: "\(error)")
                }
                control = c
            }
            listenEndpoint = try front.lastEndpoint
            controlEndpoint = try control?.lastEndpoint
            sockets = ProxySockets(front: front, back: back, control: control)
        } catch {
            try? context.terminate(timeout: .seconds(1))
            throw error
        }
        running.store(true, ordering: .releasing)
        let engine = ProxyEngine(proxy: self, sockets: sockets)
        let t = Thread { engine.run() }
        t.name = "chaos-proxy \(configuration.name)"
        t.start()
    }

    deinit { stop() }

    /// The faults in force.
    public var faults: ProxyFaults {
        get { shared.withLock { $0.faults } }
        set { shared.withLock { $0.faults = newValue } }
    }

    /// Changes the faults in force atomically; returns the new settings.
    @discardableResult
    public func update(_ change: (inout ProxyFaults) throws -> Void) rethrows -> ProxyFaults {
        try shared.withLock { s in
            try change(&s.faults)
            return s.faults
        }
    }

    /// Turns every fault off.
    public func clear() { faults = .none }

    /// Sends every delayed or reorder-held message now (within one poll interval), as if its time had come.
    /// Ending a delay fault early does not otherwise shorten the holds already decided.
    public func releaseHeld() { shared.withLock { $0.releaseRequested = true } }

    public var stats: ProxyStats { shared.withLock { $0.stats } }

    /// The decisions taken so far for one direction, in message order (at most `decisionLogLimit`).
    public func decisions(_ direction: MessageDirection) -> [ProxyDecision] {
        shared.withLock { $0.decisions[direction] ?? [] }
    }

    /// Messages held right now for a delay or a reorder.
    public var holding: Int { shared.withLock { $0.holding } }

    func takeReleaseRequest() -> Bool {
        shared.withLock { s in
            defer { s.releaseRequested = false }
            return s.releaseRequested
        }
    }

    public var isRunning: Bool { running.load(ordering: .acquiring) }

    /// Stops the thread (within about `pollInterval`), drops held messages and closes every socket.
    /// Idempotent.
    public func stop(timeout: Duration = .seconds(5)) {
        let wasRunning = shared.withLock { s in
            let r = !s.stopping
            s.stopping = true
            return r
        }
        if wasRunning {
            let ns = UInt64(max(0, timeout.seconds) * 1e9)
            _ = done.wait(timeout: .now() + .nanoseconds(Int(min(ns, UInt64(Int.max)))))
        }
        try? context.terminate(timeout: .seconds(2))
    }

    // MARK: Used by the engine

    fileprivate var isStopping: Bool { shared.withLock { $0.stopping } }

    fileprivate func record(_ body: (inout Shared) -> Void) { shared.withLock { body(&$0) } }

    fileprivate func finished() {
        running.store(false, ordering: .releasing)
        done.signal()
    }
}

/// The proxy's sockets, carried once to the thread that owns them from then on.
final class ProxySockets: @unchecked Sendable {
    let front: Socket
    let back: Socket
    let control: Socket?
    init(front: Socket, back: Socket, control: Socket?) {
        self.front = front
        self.back = back
        self.control = control
    }
}

/// The proxy thread's state: sockets, the timer heap of delayed messages, messages held for a reorder,
/// and which replies belong to duplicated requests.
private final class ProxyEngine: @unchecked Sendable {
    unowned let proxy: ChaosProxy
    let sockets: ProxySockets
    var decider: FaultDecider
    let clock = ContinuousClock()

    struct Timed {
        var due: ContinuousClock.Instant
        var order: Int
        var direction: MessageDirection
        var frames: [[UInt8]]
        var duplicateCopy: Bool
    }
    var timers = TimerHeap<Timed>(less: { ($0.due, $0.order) < ($1.due, $1.order) })
    var timerOrder = 0
    var held: [MessageDirection: (frames: [[UInt8]], decision: ProxyDecision, deadline: ContinuousClock.Instant)] = [:]
    /// Per client envelope: for each request sent upstream, whether its reply goes to the client (true) or
    /// is the extra reply of a duplicate (false).
    var expected: [[UInt8]: [Bool]] = [:]

    init(proxy: ChaosProxy, sockets: ProxySockets) {
        self.proxy = proxy
        self.sockets = sockets
        decider = FaultDecider(seed: proxy.configuration.seed)
    }

    func run() {
        defer {
            sockets.front.close(linger: .zero)
            sockets.back.close(linger: .zero)
            sockets.control?.close(linger: .zero)
            proxy.finished()
        }
        let maxWait = proxy.configuration.pollInterval
        while !proxy.isStopping {
            var now = clock.now
            if proxy.takeReleaseRequest() { now = now.advanced(by: .seconds(86_400 * 365)) }
            fireDue(now)
            var wait = maxWait
            if let t = timers.peek { wait = min(wait, max(.zero, t.due - now)) }
            for h in held.values { wait = min(wait, max(.zero, h.deadline - now)) }
            var items: [(socket: Socket, events: PollEvents)] = [(sockets.front, .pollIn), (sockets.back, .pollIn)]
            if let c = sockets.control { items.append((c, .pollIn)) }
            guard let ready = try? ZeroMQ.poll(items, timeout: wait) else {
                if proxy.isStopping { break }
                continue
            }
            if ready[0].contains(.pollIn) { drain(sockets.front, .request) }
            if ready[1].contains(.pollIn) { drain(sockets.back, .reply) }
            if ready.count > 2 && ready[2].contains(.pollIn) { serveControl() }
        }
    }

    private func drain(_ socket: Socket, _ direction: MessageDirection) {
        for _ in 0..<256 {  // bounded, so the other side and timers get their turn
            guard let frames = try? socket.receiveMultipart(flags: .dontWait) else { return }
            handle(frames, direction)
        }
    }

    private func handle(_ frames: [[UInt8]], _ direction: MessageDirection) {
        let envelope = envelopeKey(frames)
        if direction == .reply, var queue = expected[envelope], !queue.isEmpty {
            let deliver = queue.removeFirst()
            expected[envelope] = queue.isEmpty ? nil : queue
            if !deliver {
                proxy.record { $0.stats.received[.reply, default: 0] += 1; $0.stats.duplicateRepliesSwallowed += 1 }
                return
            }
        }
        let faults = proxy.faults
        let d = decider.decide(direction, bodySize: frames.last?.count ?? 0, faults: faults)
        let limit = proxy.configuration.decisionLogLimit
        proxy.record { s in
            s.stats.received[direction, default: 0] += 1
            if s.decisions[direction, default: []].count < limit { s.decisions[direction, default: []].append(d) }
            if d.blackholed { s.stats.blackholed += 1 }
            if d.dropped { s.stats.dropped += 1 }
            if d.corruptedByte != nil { s.stats.corrupted += 1 }
            if d.duplicated { s.stats.duplicated += 1 }
            if d.delayMs != nil { s.stats.delayed += 1 }
        }
        if d.blackholed || d.dropped { return }
        var frames = frames
        if let at = d.corruptedByte, !frames.isEmpty { frames[frames.count - 1][at] ^= 0xFF }
        if let h = held.removeValue(forKey: direction) {
            // Swap: the newcomer goes first, the held one right after it.
            proxy.record { $0.stats.reordered += 1; $0.holding -= 1 }
            emit(frames, d)
            emit(h.frames, h.decision)
        } else if d.held {
            held[direction] = (frames, d, clock.now.advanced(by: .milliseconds(faults.reorderHoldMs)))
            proxy.record { $0.holding += 1 }
        } else {
            emit(frames, d)
        }
    }

    /// Sends now, or later when the decision says delay; twice when it says duplicate.
    private func emit(_ frames: [[UInt8]], _ d: ProxyDecision) {
        let copies = d.duplicated ? 2 : 1
        for copy in 0..<copies {
            if let ms = d.delayMs, ms > 0 {
                timerOrder += 1
                timers.push(Timed(due: clock.now.advanced(by: .milliseconds(ms)), order: timerOrder,
                                  direction: d.direction, frames: frames, duplicateCopy: copy > 0))
                proxy.record { $0.holding += 1 }
            } else {
                send(frames, d.direction, duplicateCopy: copy > 0)
            }
        }
    }

    /// Every frame before the body, as one key (the client's routing id and delimiter).
    private func envelopeKey(_ frames: [[UInt8]]) -> [UInt8] {
        var key: [UInt8] = []
        for f in frames.dropLast() {
            key.append(contentsOf: f)
            key.append(0xFF)
        }
        return key
    }

    private func send(_ frames: [[UInt8]], _ direction: MessageDirection, duplicateCopy: Bool) {
        let socket = direction == .request ? sockets.back : sockets.front
        do {
            try socket.send(multipart: frames, flags: .dontWait)
            if direction == .request {
                expected[envelopeKey(frames), default: []].append(!duplicateCopy)
                if expected.count > 100_000 { expected.removeAll() }  // clients that never got replies
            }
            proxy.record { $0.stats.forwarded[direction, default: 0] += 1 }
        } catch {
            proxy.record { $0.stats.sendFailures += 1 }
        }
    }

    private func fireDue(_ now: ContinuousClock.Instant) {
        while let t = timers.peek, t.due <= now {
            _ = timers.pop()
            proxy.record { $0.holding -= 1 }
            send(t.frames, t.direction, duplicateCopy: t.duplicateCopy)
        }
        for (dir, h) in held where h.deadline <= now {
            held[dir] = nil
            proxy.record { $0.holding -= 1 }
            emit(h.frames, h.decision)  // nobody came to swap with: it goes alone
        }
    }

    // MARK: Control endpoint

    private func serveControl() {
        guard let c = sockets.control, let frames = try? c.receiveMultipart(flags: .dontWait) else { return }
        proxy.record { $0.stats.controlRequests += 1 }
        let reply: Reply
        if frames.count != 1 {
            reply = .failure(Wire.multipartRejected)
        } else {
            do {
                reply = answer(try Request.decode(frames[0]))
            } catch {
                reply = .failure(error.replyText)
            }
        }
        try? c.send(reply.encoded(), flags: .dontWait)
    }

    private func answer(_ req: Request) -> Reply {
        switch req.method {
        case "ping":
            return .ok(["message": "pong", "handler_id": .string(proxy.name)])
        case "status":
            return status()
        case "set":
            do {
                let f = try proxy.update { f in f = try f.applying(req.params) }
                return .ok(["settings": f.json])
            } catch {
                return .failure("Invalid setting \(error)")
            }
        case "clear":
            proxy.clear()
            return .ok(["settings": ProxyFaults.none.json])
        default:
            return .failure(Wire.unknownMethod(req.method))
        }
    }

    private func status() -> Reply {
        let (stats, faults, holding) = proxy.snapshot
        var f = stats.json.objectValue ?? [:]
        f["settings"] = faults.json
        f["seed"] = .string(String(proxy.seed))
        f["name"] = .string(proxy.name)
        f["holding"] = .int(Int64(holding))
        f["listen"] = .string(proxy.listenEndpoint)
        f["upstream"] = .string(proxy.configuration.upstream)
        return .ok(f)
    }
}

extension ChaosProxy {
    /// Counters, settings and held messages, taken together.
    public var snapshot: (stats: ProxyStats, faults: ProxyFaults, holding: Int) {
        shared.withLock { s in (s.stats, s.faults, s.holding) }
    }
}

/// A binary min-heap of timed items (by `due`, then insertion order).
struct TimerHeap<T> {
    private var items: [T] = []
    private let less: (T, T) -> Bool

    var count: Int { items.count }
    var peek: T? { items.first }

    init(less: @escaping (T, T) -> Bool) { self.less = less }

    mutating func push(_ x: T) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard less(items[i], items[p]) else { break }
            items.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() -> T? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && less(items[l], items[m]) { m = l }
            if r < items.count && less(items[r], items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }
}
