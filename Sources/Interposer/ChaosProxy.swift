import Foundation
import ScheduleZeroWire
import Synchronization
import MockPeers
import ZMQClient
import ZeroMQ

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
    /// The link journal (JSON lines: every request and reply, lost requests, duplicate executions), if any.
    public var journalPath: String?
    /// How often a busy proxy writes its journal (and publishes its counters); an idle one does at once, and
    /// the control method `flush` on demand.
    public var journalWriteInterval: Duration = .milliseconds(100)
    /// A request forwarded and not answered within this is a lost request.
    public var linkTimeout: Duration
    /// Rewrites the `address` of `register` requests (the server's interposer), if any.
    public var rewriter: AddressRewriter?
    /// The mock handler's fault vocabulary (`fault.set` keys `drop_next`, `drop_probability`, `delay_ms`,
    /// `jitter_ms`, `swallow_next`, `garbage`), applied on the link: see `ChaosProxy.linkFaultKeys`.
    public var linkFaults: FaultSettings
    /// `ZMQ_MAXMSGSIZE` of the listening ROUTER: a client sending a larger message is disconnected. 64 MiB,
    /// the mock handler's own hard limit; nil for none.
    public var maxMessageSize: Int64? = 64 << 20

    public init(listen: String, upstream: String, control: String? = nil, seed: UInt64 = SeededGenerator.randomSeed(),
                faults: ProxyFaults = .none, name: String = "proxy", pollInterval: Duration = .milliseconds(20),
                decisionLogLimit: Int = 100_000, journalPath: String? = nil, linkTimeout: Duration = .seconds(10),
                rewriter: AddressRewriter? = nil, linkFaults: FaultSettings = FaultSettings()) {
        self.listen = listen
        self.upstream = upstream
        self.control = control
        self.seed = seed
        self.faults = faults
        self.name = name
        self.pollInterval = pollInterval
        self.decisionLogLimit = decisionLogLimit
        self.journalPath = journalPath
        self.linkTimeout = linkTimeout
        self.rewriter = rewriter
        self.linkFaults = linkFaults
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
        var linkFaults: FaultSettings
        var link = LinkCounters()
        var stats = ProxyStats()
        var decisions: [MessageDirection: [ProxyDecision]] = [:]
        /// Messages held for delay or reorder right now.
        var holding = 0
    }

    private let shared: Mutex<Shared>
    /// Set by `stop()`; the proxy thread ends at its next turn.
    private let stopFlag = Atomic<Bool>(false)
    /// Set by `releaseHeld()`; the proxy thread sends everything it holds on its next turn.
    private let releaseFlag = Atomic<Bool>(false)
    /// Bumped (under the lock) by every change of `faults` or `linkFaults`: the proxy thread reads them again
    /// only then, not per message.
    private let faultsVersion = Atomic<UInt64>(0)
    private let context: Context
    private let done = DispatchSemaphore(value: 0)
    private let running = Atomic<Bool>(false)

    /// Binds and connects, then starts the proxy thread. Throws naming the endpoint that failed.
    public init(_ configuration: ChaosProxyConfiguration) throws {
        self.configuration = configuration
        shared = Mutex(Shared(faults: configuration.faults, linkFaults: configuration.linkFaults))
        context = try Context()
        let sockets: ProxySockets
        do {
            let front = try context.socket(.router)
            try front.setRouterMandatory(true)  // a reply to a requester that has gone is seen as late, not lost silently
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
                // As every control channel: an ipc socket file only its owner may use (and the peer check below).
                if let bound = try? c.lastEndpoint, bound.hasPrefix("ipc://"), !bound.hasPrefix("ipc://@") {
                    chmod(String(bound.dropFirst(6)), 0o600)
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
        let recorder: LinkRecorder
        do {
            recorder = try LinkRecorder(link: configuration.name, timeout: configuration.linkTimeout,
                                        journalPath: configuration.journalPath)
        } catch {
            try? context.terminate(timeout: .seconds(1))
            throw error
        }
        recorder.started(listen: listenEndpoint, upstream: configuration.upstream)
        running.store(true, ordering: .releasing)
        let engine = ProxyEngine(proxy: self, sockets: sockets, recorder: recorder)
        let t = Thread { engine.run() }
        t.name = "chaos-proxy \(configuration.name)"
        t.start()
    }

    deinit { stop() }

    /// The faults in force.
    public var faults: ProxyFaults {
        get { shared.withLock { $0.faults } }
        set { changeFaults { $0.faults = newValue } }
    }

    /// Every change of the faults in force goes through here (see `faultsVersion`).
    private func changeFaults<R: Sendable, E: Error>(_ body: (inout Shared) throws(E) -> R) throws(E) -> R {
        try shared.withLock { (s: inout Shared) throws(E) -> R in
            defer { faultsVersion.add(1, ordering: .releasing) }
            return try body(&s)
        }
    }

    /// Changes the faults in force atomically; returns the new settings.
    @discardableResult
    public func update(_ change: (inout ProxyFaults) throws -> Void) rethrows -> ProxyFaults {
        try changeFaults { s in
            try change(&s.faults)
            return s.faults
        }
    }

    /// Turns every fault off, the link faults too.
    public func clear() {
        changeFaults { s in
            s.faults = .none
            s.linkFaults = FaultSettings()
        }
    }

    /// The link faults in force (the mock handler's `fault.set` vocabulary, on the link).
    public var linkFaults: FaultSettings {
        get { shared.withLock { $0.linkFaults } }
        set { changeFaults { $0.linkFaults = newValue } }
    }

    /// The `fault.set` keys a link takes; a crash or `ignore_sigterm` is a process fault, not a link's.
    public static let linkFaultKeys: Set<String> = ["drop_next", "drop_probability", "delay_ms", "jitter_ms", "swallow_next", "garbage"]

    /// Applies `fault.set` params to the link faults, refusing keys that are not a link's (naming them).
    @discardableResult
    public func setLinkFaults(_ params: [String: JSONValue]) throws(PeerError) -> FaultSettings {
        if let bad = params.keys.sorted().first(where: { !Self.linkFaultKeys.contains($0) }) {
            let process = FaultSettings.keys.contains(bad)
            throw .invalidFault(process
                ? "\(bad) is a process fault, not a link fault: use `szchaos kill` or `szchaos signal` on the process (link faults: \(Self.linkFaultKeys.sorted().joined(separator: ", ")))"
                : "unknown fault \"\(bad)\" (link faults: \(Self.linkFaultKeys.sorted().joined(separator: ", ")))")
        }
        return try changeFaults { s throws(PeerError) in
            try s.linkFaults.apply(params)
            return s.linkFaults
        }
    }

    /// What the link saw so far (requests, replies, lost, late, duplicate executions).
    public var linkCounters: LinkCounters { shared.withLock { $0.link } }

    /// Sends every delayed or reorder-held message now (within one poll interval), as if its time had come.
    /// Ending a delay fault early does not otherwise shorten the holds already decided.
    public func releaseHeld() { releaseFlag.store(true, ordering: .releasing) }

    public var stats: ProxyStats { shared.withLock { $0.stats } }

    /// The decisions taken so far for one direction, in message order (at most `decisionLogLimit`).
    public func decisions(_ direction: MessageDirection) -> [ProxyDecision] {
        shared.withLock { $0.decisions[direction] ?? [] }
    }

    /// Messages held right now for a delay or a reorder.
    public var holding: Int { shared.withLock { $0.holding } }

    public var isRunning: Bool { running.load(ordering: .acquiring) }

    /// Stops the thread (within about `pollInterval`), drops held messages and closes every socket.
    /// Idempotent.
    public func stop(timeout: Duration = .seconds(5)) {
        let wasRunning = !stopFlag.exchange(true, ordering: .acquiringAndReleasing)
        if wasRunning {
            let ns = UInt64(max(0, timeout.seconds) * 1e9)
            _ = done.wait(timeout: .now() + .nanoseconds(Int(min(ns, UInt64(Int.max)))))
        }
        try? context.terminate(timeout: .seconds(2))
    }

    // MARK: Used by the engine

    fileprivate var isStopping: Bool { stopFlag.load(ordering: .acquiring) }

    /// The proxy thread's check at each turn, without a lock: stopping, and whether to release what it holds.
    fileprivate func takeTurn() -> (stopping: Bool, release: Bool) {
        if stopFlag.load(ordering: .acquiring) { return (true, false) }
        return (false, releaseFlag.load(ordering: .relaxed) && releaseFlag.exchange(false, ordering: .acquiringAndReleasing))
    }

    /// `faults` and `linkFaults` under one lock, when they changed since `version` (the proxy thread's copy).
    fileprivate func faultsIfChanged(since version: UInt64) -> (version: UInt64, faults: ProxyFaults, link: FaultSettings)? {
        let v = faultsVersion.load(ordering: .acquiring)
        guard v != version else { return nil }
        return shared.withLock { (v, $0.faults, $0.linkFaults) }
    }

    fileprivate func record(_ body: (inout Shared) -> Void) { shared.withLock { body(&$0) } }

    /// `record` for a change of the link faults (a `swallow_next` or `drop_next` used up).
    fileprivate func recordFaultChange(_ body: (inout Shared) -> Void) { changeFaults { body(&$0) } }

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

/// The envelope of a message (every frame before the body: the client's routing id and the delimiter), as a
/// key without an allocation for the usual few bytes: each frame's length (one byte, or 255 and eight) then
/// its bytes, the first 24 of that in three words, the rest (a long envelope) in an array.
struct EnvelopeKey: Hashable {
    private var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0
    private var count = 0
    private var spill: [UInt8]?

    init(_ frames: ArraySlice<Message>) {
        for f in frames {
            let n = f.count
            if n < 255 {
                put(UInt8(n))
            } else {
                put(255)
                for k in 0..<8 { put(UInt8(truncatingIfNeeded: UInt64(n) >> (8 * UInt64(k)))) }
            }
            for b in f.data { put(b) }
        }
    }

    private mutating func put(_ b: UInt8) {
        let shift = UInt64(count % 8) * 8
        switch count / 8 {
        case 0: w0 |= UInt64(b) << shift
        case 1: w1 |= UInt64(b) << shift
        case 2: w2 |= UInt64(b) << shift
        default:
            if spill == nil { spill = [] }
            spill!.append(b)
        }
        count += 1
    }
}

/// The proxy thread's state: sockets, the timer heap of delayed messages, messages held for a reorder,
/// which replies belong to duplicated requests, and the link's record of every exchange.
///
/// The forward path moves frames as `zmq_proxy` does: each message is received into the same reused
/// `Message`s (`inbound`) and sent from them (`zmq_msg_send` gives the content to libzmq), read in place for
/// the link's bookkeeping (method, hash, size, envelope); only a message a fault changes, holds or doubles
/// gets frames of its own.
private final class ProxyEngine: @unchecked Sendable {
    unowned let proxy: ChaosProxy
    let sockets: ProxySockets
    let recorder: LinkRecorder
    var decider: FaultDecider
    /// The link faults' own draws (drop probability, delay jitter), apart from the decider's fixed draws.
    var linkRNG: SeededGenerator
    let clock = ContinuousClock()
    var lastFlush = ContinuousClock.now
    /// From the configuration, read once (not copied out of it per message).
    let rewriter: AddressRewriter?
    let decisionLogLimit: Int
    /// The frames of the message being handled, reused message after message.
    var inbound: [Message] = []
    /// The proxy's faults as of `faultsVersion` (read again when they change).
    var faultsVersion: UInt64 = .max
    var faults = ProxyFaults.none
    var link = FaultSettings()

    /// One message held on its way (a delay, a reorder, a duplicate), with frames of its own, the envelope
    /// of a request (read before its frames are given away), the exchange it belongs to and the fault that
    /// touched it (for the journal).
    struct Outgoing {
        var frames: [Message]
        var envelope: EnvelopeKey?
        var exchange: Int?
        var fault: String?

        /// The same message for another send (frames shared, `zmq_msg_copy`).
        func copy() -> Outgoing { Outgoing(frames: frames.map { $0.copy() }, envelope: envelope, exchange: exchange, fault: fault) }
    }

    struct Timed {
        var due: ContinuousClock.Instant
        var order: Int
        var direction: MessageDirection
        var message: Outgoing
        var duplicateCopy: Bool
        var dropsReply: Bool
    }
    var timers = TimerHeap<Timed>(less: { ($0.due, $0.order) < ($1.due, $1.order) }, due: \.due)
    var timerOrder = 0
    var held: [MessageDirection: (message: Outgoing, decision: ProxyDecision, deadline: ContinuousClock.Instant)] = [:]
    /// What a reply owes to the request it answers.
    struct Pending {
        /// Goes to the client (false: the extra reply of a duplicate, swallowed).
        var deliver: Bool
        /// `both`: the exchange's drop falls on this reply.
        var dropsReply: Bool
        /// The link's exchange.
        var exchange: Int?
    }
    /// The requests of one client envelope sent upstream, in order; the first inline (one at a time is the
    /// REQ/REP rule: no array for it).
    struct PendingQueue {
        var first: Pending
        var rest: [Pending] = []
    }
    /// Per client envelope, for each request sent upstream in order: what its reply owes to it.
    var expected: [EnvelopeKey: PendingQueue] = [:]

    init(proxy: ChaosProxy, sockets: ProxySockets, recorder: LinkRecorder) {
        self.proxy = proxy
        self.sockets = sockets
        self.recorder = recorder
        decider = FaultDecider(seed: proxy.configuration.seed)
        rewriter = proxy.configuration.rewriter
        decisionLogLimit = proxy.configuration.decisionLogLimit
        linkRNG = SeededGenerator(seed: proxy.configuration.seed ^ 0x11C0_FA17)
    }

    func run() {
        defer {
            recorder.stopped()
            publish()
            sockets.front.close(linger: .zero)
            sockets.back.close(linger: .zero)
            sockets.control?.close(linger: .zero)
            proxy.finished()
        }
        let maxWait = proxy.configuration.pollInterval
        let journalWriteInterval = proxy.configuration.journalWriteInterval
        // The same sockets at every turn: one poll set, made once. Two sockets, as `zmq_proxy` polls; the
        // control socket by its ZMQ_FD (a change signal, no ZMQ_EVENTS query per poll for it), answered
        // until its events show no request (`serveControlRequests`), and looked at once before the first poll.
        let controlFD = sockets.control.flatMap { try? $0.fileDescriptor }
        let poller = Poller([(sockets.front, .pollIn), (sockets.back, .pollIn)], fileDescriptors: controlFD.map { [$0] } ?? [])
        var controlDue = sockets.control != nil
        while true {
            let turn = proxy.takeTurn()
            if turn.stopping { break }
            let now = clock.now
            fireDue(turn.release ? now.advanced(by: .seconds(86_400 * 365)) : now)
            recorder.tick(now: now)
            var wait = maxWait
            if let due = timers.nextDue { wait = min(wait, max(.zero, due - now)) }
            if !held.isEmpty { for h in held.values { wait = min(wait, max(.zero, h.deadline - now)) } }
            if controlDue { wait = .zero }
            guard (try? poller.poll(timeout: wait)) != nil else {
                if proxy.isStopping { break }
                continue
            }
            let front = poller.events(0).contains(.pollIn), back = poller.events(1).contains(.pollIn)
            let control = controlDue || (poller.count > 2 && poller.events(2).contains(.pollIn))
            if front { drain(sockets.front, .request) }
            if back { drain(sockets.back, .reply) }
            if control { controlDue = serveControlRequests() }
            if !(front || back || control) || now - lastFlush > journalWriteInterval {  // `now`: this turn's
                writeJournal(at: now)
            }
        }
    }

    /// Writes what the journal holds and publishes the counters: on an idle turn, every
    /// `journalWriteInterval` while busy, and for the control method `flush`.
    private func writeJournal(at now: ContinuousClock.Instant) {
        recorder.flush()
        lastFlush = now
        publish()
    }

    /// Copies the link's counters into the shared state: `linkCounters` is exact once a batch is handled.
    private func publish() {
        let counters = recorder.counters
        proxy.record { $0.link = counters }
    }

    private func drain(_ socket: Socket, _ direction: MessageDirection) {
        defer { publish() }
        for i in 0..<256 {  // bounded, so the other side and timers get their turn
            // After the first (poll said there is one), ask ZMQ_EVENTS before receiving: a receive that finds
            // nothing throws EAGAIN, and building that error (with libzmq's message text) on every turn was
            // a measurable part of the hop.
            if i > 0, (try? socket.events)?.contains(.pollIn) != true { return }
            guard let n = try? socket.receiveMultipart(into: &inbound, flags: .dontWait) else { return }
            handle(n, direction)
        }
    }

    /// The faults in force, read again only when they changed (one atomic load per message otherwise).
    private func refreshFaults() {
        if let f = proxy.faultsIfChanged(since: faultsVersion) { (faultsVersion, faults, link) = f }
    }

    /// Handles the message in `inbound[0..<n]` (the body last).
    private func handle(_ n: Int, _ direction: MessageDirection) {
        let last = n - 1
        let body = inbound[last]
        var owed = Pending(deliver: true, dropsReply: false)
        var exchange: Int?
        var linkFault: String?
        var linkDelayMs = 0
        refreshFaults()
        let (faults, link) = (self.faults, self.link)
        if direction == .request {
            let id = recorder.request(body.data)
            exchange = id
            if let rw = rewriter, let r = rw.rewrite(body.data) {
                body.set(r.body)
                recorder.rewrote(id, from: r.from, to: r.to)
            }
            if link.swallowNext > 0 {
                // Never forwarded, never answered: the requester's REQ waits for good (EFSM on its next send).
                proxy.recordFaultChange { s in
                    s.stats.received[.request, default: 0] += 1
                    s.linkFaults.swallowNext = max(0, s.linkFaults.swallowNext - 1)
                }
                recorder.notForwarded(id, fault: "swallow_next")
                return
            }
        } else {
            // Only a reply looks up what it owes.
            if let i = expected.index(forKey: EnvelopeKey(inbound[0..<last])) {
                owed = expected.values[i].first
                if expected.values[i].rest.isEmpty {
                    expected.remove(at: i)
                } else {
                    expected.values[i].first = expected.values[i].rest.removeFirst()
                }
            }
            exchange = owed.deliver ? owed.exchange : nil
            if !owed.deliver {
                proxy.record { $0.stats.received[.reply, default: 0] += 1; $0.stats.duplicateRepliesSwallowed += 1 }
                if let x = owed.exchange { recorder.extraExecution(of: x, cause: "duplicate") }
                return
            }
            if let x = exchange { recorder.executed(x) }
            if link.dropNext > 0 {
                proxy.recordFaultChange { s in
                    s.stats.received[.reply, default: 0] += 1
                    s.linkFaults.dropNext = max(0, s.linkFaults.dropNext - 1)
                }
                if let x = exchange { recorder.replied(x, delivered: false, fault: "drop_next") }
                return
            }
            if link.dropProbability > 0, linkRNG.unit() < link.dropProbability {
                proxy.record { $0.stats.received[.reply, default: 0] += 1 }
                if let x = exchange { recorder.replied(x, delivered: false, fault: "drop_probability") }
                return
            }
            if let g = link.garbage {
                body.set(garbage(g))
                linkFault = "garbage"
            }
            if link.delayMs > 0 || link.jitterMs > 0 {
                let jitter = link.jitterMs > 0 ? Int(((2 * linkRNG.unit() - 1) * Double(link.jitterMs)).rounded()) : 0
                linkDelayMs = max(0, link.delayMs + jitter)
                if linkDelayMs > 0 { linkFault = linkFault ?? "delay" }
            }
        }
        var d = decider.decide(direction, bodySize: body.count, faults: faults)
        if owed.dropsReply && !d.blackholed { d = ProxyDecision(direction: d.direction, index: d.index, dropped: true) }
        let decision = d  // as logged: the proxy's faults only (a link delay is not one of its decisions)
        if linkDelayMs > 0 { d.delayMs = (d.delayMs ?? 0) + linkDelayMs }
        // The plain case goes straight from the received frames, no copy, and is counted forwarded here, in
        // the message's one lock, before the send (a send that fails takes it back).
        let plain = !d.blackholed && !d.dropped && !d.duplicated && !d.held && (d.delayMs ?? 0) <= 0
            && (held.isEmpty || held[direction] == nil)
        let limit = decisionLogLimit
        proxy.record { s in
            s.stats.received[direction, default: 0] += 1
            if plain { s.stats.forwarded[direction, default: 0] += 1 }
            if s.decisions[direction, default: []].count < limit { s.decisions[direction, default: []].append(decision) }
            if decision.blackholed { s.stats.blackholed += 1 }
            if decision.dropped { s.stats.dropped += 1 }
            if decision.corruptedByte != nil { s.stats.corrupted += 1 }
            if decision.duplicated { s.stats.duplicated += 1 }
            if decision.delayMs != nil { s.stats.delayed += 1 }
        }
        if d.blackholed || d.dropped {
            let label = d.blackholed ? "blackhole" : "drop"
            if let x = exchange {
                if direction == .request { recorder.notForwarded(x, fault: label) } else { recorder.replied(x, delivered: false, fault: label) }
            }
            return
        }
        if let at = d.corruptedByte {
            var bytes = body.bytes
            bytes[at] ^= 0xFF
            body.set(bytes)
        }
        let fault = linkFault ?? Self.label(d)
        // A request's envelope is read now: once sent, its frames are libzmq's.
        let envelope = direction == .request ? EnvelopeKey(inbound[0..<last]) : nil
        if plain {
            send(inbound[0..<n], envelope, exchange: exchange, fault: fault, d.direction, duplicateCopy: false,
                 dropsReply: d.dropsReply, counted: true)
            return
        }
        let message = Outgoing(frames: (0..<n).map { i in
            let m = Message()
            m.move(from: inbound[i])
            return m
        }, envelope: envelope, exchange: exchange, fault: fault)
        if let h = held.removeValue(forKey: direction) {
            // Swap: the newcomer goes first, the held one right after it.
            proxy.record { $0.stats.reordered += 1; $0.holding -= 1 }
            emit(message, d)
            emit(h.message, h.decision)
        } else if d.held {
            held[direction] = (message, d, clock.now.advanced(by: .milliseconds(faults.reorderHoldMs)))
            proxy.record { $0.holding += 1 }
        } else {
            emit(message, d)
        }
    }

    /// The fault a decision applies to a message that still goes on, for the journal.
    private static func label(_ d: ProxyDecision) -> String? {
        if d.corruptedByte != nil { return "corrupt" }
        if d.duplicated { return "duplicate" }
        if d.held { return "reorder" }
        if let ms = d.delayMs, ms > 0 { return "delay" }
        return nil
    }

    /// What the `garbage` link fault answers instead of the handler's reply (as the mock handler does).
    private func garbage(_ kind: GarbageKind) -> [UInt8] {
        switch kind {
        case .bytes:
            var out: [UInt8] = [0xFF, 0xFE]  // never valid UTF-8, never JSON
            for _ in 0..<(8 + Int(linkRNG.next() % 24)) { out.append(UInt8(truncatingIfNeeded: linkRNG.next())) }
            return out
        case .wrongShape:
            return Array(#"["wrong","shape"]"#.utf8)
        }
    }

    /// Sends now, or later when the decision says delay; twice when it says duplicate. Each send gives its
    /// frames away, so the first of two copies goes with frames of its own (shared content).
    private func emit(_ message: Outgoing, _ d: ProxyDecision) {
        let copies = d.duplicated ? 2 : 1
        for copy in 0..<copies {
            let m = copy + 1 < copies ? message.copy() : message
            if let ms = d.delayMs, ms > 0 {
                timerOrder += 1
                timers.push(Timed(due: clock.now.advanced(by: .milliseconds(ms)), order: timerOrder,
                                  direction: d.direction, message: m, duplicateCopy: copy > 0,
                                  dropsReply: d.dropsReply && copy == 0))
                proxy.record { $0.holding += 1 }
            } else {
                send(m, d.direction, duplicateCopy: copy > 0, dropsReply: d.dropsReply && copy == 0)
            }
        }
    }

    private func send(_ message: Outgoing, _ direction: MessageDirection, duplicateCopy: Bool, dropsReply: Bool) {
        send(message.frames[...], message.envelope, exchange: message.exchange, fault: message.fault, direction,
             duplicateCopy: duplicateCopy, dropsReply: dropsReply, counted: false)
    }

    /// Sends the frames (given to libzmq, empty afterwards); `envelope` is a request's, read before.
    /// `counted`: `stats.forwarded` counted it already (the plain case), to be taken back if the send fails.
    private func send(_ frames: ArraySlice<Message>, _ envelope: EnvelopeKey?, exchange: Int?, fault: String?,
                      _ direction: MessageDirection, duplicateCopy: Bool, dropsReply: Bool, counted: Bool) {
        let socket = direction == .request ? sockets.back : sockets.front
        do {
            try socket.send(multipart: frames, flags: .dontWait)
            if direction == .request {
                let p = Pending(deliver: !duplicateCopy, dropsReply: dropsReply, exchange: exchange)
                if let key = envelope {
                    if let i = expected.index(forKey: key) {
                        expected.values[i].rest.append(p)
                    } else {
                        expected[key] = PendingQueue(first: p)
                    }
                }
                if expected.count > 100_000 { expected.removeAll() }  // clients that never got replies
                if !duplicateCopy, let x = exchange { recorder.forwarded(x, fault: fault) }
            } else if let x = exchange {
                recorder.replied(x, delivered: true, fault: fault)
            }
            if !counted { proxy.record { $0.stats.forwarded[direction, default: 0] += 1 } }
        } catch {
            for f in frames { f.reset() }  // what was not sent is dropped
            proxy.record { s in
                s.stats.sendFailures += 1
                if counted { s.stats.forwarded[direction, default: 0] -= 1 }
            }
            guard !duplicateCopy, let x = exchange else { return }
            if direction == .request {
                recorder.notForwarded(x, fault: "send_failed")
            } else {
                // ROUTER_MANDATORY: the requester is no longer connected (it gave up and reopened its socket).
                let gone = (error as? ZMQError)?.code == .ehostunreach
                recorder.replied(x, delivered: false, fault: gone ? fault : "send_failed", late: gone)
            }
        }
    }

    private func fireDue(_ now: ContinuousClock.Instant) {
        var sent = false
        while let due = timers.nextDue, due <= now, let t = timers.pop() {
            proxy.record { $0.holding -= 1 }
            send(t.message, t.direction, duplicateCopy: t.duplicateCopy, dropsReply: t.dropsReply)
            sent = true
        }
        if !held.isEmpty { releaseHeld(due: now, &sent) }
        if sent { publish() }  // a delayed request or reply moves the link's counters
    }

    private func releaseHeld(due now: ContinuousClock.Instant, _ sent: inout Bool) {
        for (dir, h) in held where h.deadline <= now {
            held[dir] = nil
            proxy.record { $0.holding -= 1 }
            emit(h.message, h.decision)  // nobody came to swap with: it goes alone
            sent = true
        }
    }

    // MARK: Control endpoint

    /// Answers the control requests there are (at most 16; true when more may be waiting, for the next
    /// turn): its ZMQ_FD fires again only once `events` has shown no request.
    private func serveControlRequests() -> Bool {
        guard let c = sockets.control else { return false }
        for _ in 0..<16 {
            guard (try? c.events)?.contains(.pollIn) == true else { return false }
            serveControl()
        }
        return true
    }

    private func serveControl() {
        guard let c = sockets.control, let message = try? c.receiveMessage(flags: .dontWait) else { return }
        let frames = message.frames
        proxy.record { $0.stats.controlRequests += 1 }
        let reply: Reply
        if let reason = PeerPolicy.ownerOrRoot.refusal(of: message, endpoint: proxy.controlEndpoint ?? "") {
            // Only this process's user or root may set faults on an ipc control endpoint (a tcp one has no
            // credentials to check: bind it on 127.0.0.1 or use ipc in a private folder).
            proxy.record { $0.stats.controlRefused += 1 }
            reply = .failure("permission denied: \(reason)")
        } else if frames.count != 1 {
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
        case "flush":
            // Everything the link saw up to this request is in its journal when the reply leaves: what
            // `szchaos links` asks before it reads a live link's journal (it is otherwise written when the
            // proxy is idle or every 100 ms).
            writeJournal(at: clock.now)
            return .ok(["flushed": true, "link": .string(proxy.name)])
        case "set":
            do {
                let f = try proxy.update { f in f = try f.applying(req.params) }
                return .ok(["settings": f.json])
            } catch {
                return .failure("Invalid setting \(error)")
            }
        case "clear", "fault.clear":
            proxy.clear()
            return .ok(["settings": ProxyFaults.none.json, "faults": FaultSettings().json])
        case "fault.set":
            // The mock handler's control vocabulary, so `szchaos drop-replies` & co. act the same on a link.
            do {
                return .ok(["faults": try proxy.setLinkFaults(req.params).json])
            } catch {
                return .failure(error.description)
            }
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
        f["link_faults"] = proxy.linkFaults.json
        f["link"] = recorder.counters.json
        f["counters"] = recorder.counters.json
        f["endpoint"] = .string(proxy.listenEndpoint)
        if let j = proxy.configuration.journalPath { f["journal"] = .string(j) }
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
    private let due: (T) -> ContinuousClock.Instant

    var count: Int { items.count }
    var peek: T? { items.first }
    /// When the first item is due, without copying it out (the proxy asks at every turn).
    var nextDue: ContinuousClock.Instant? { items.isEmpty ? nil : due(items[0]) }

    init(less: @escaping (T, T) -> Bool, due: @escaping (T) -> ContinuousClock.Instant) {
        self.less = less
        self.due = due
    }

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
