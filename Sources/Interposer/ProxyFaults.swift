import ScheduleZeroWire

/// Which way a proxy fault applies: to requests (client -> handler), replies (handler -> client), or
/// `both`: once per exchange (request + its reply), the default. With `both` a delay of D adds D once (to the
/// request), a drop with probability p loses p of the exchanges (half before the handler, half after it:
/// the handler ran but its reply is lost), duplicate, reorder and corrupt act on the request, and the
/// blackhole swallows both ways. `requests` / `replies` apply every fault to each message of that side only.
public enum FaultDirection: String, Sendable, CaseIterable, Equatable {
    case requests, replies, both

    func covers(_ d: MessageDirection) -> Bool {
        switch self {
        case .both: true
        case .requests: d == .request
        case .replies: d == .reply
        }
    }
}

/// The way one message travels through the proxy.
public enum MessageDirection: String, Sendable, Equatable {
    case request, reply

    /// By case, not by the raw String (which `RawRepresentable` would hash): the proxy's counters are keyed
    /// by direction, per message.
    public func hash(into hasher: inout Hasher) { hasher.combine(self == .request) }
}

/// The faults a `ChaosProxy` applies, each with its own probability in [0, 1]. All zero: a plain forwarder.
public struct ProxyFaults: Sendable, Equatable, CustomStringConvertible {
    /// Never forward the message.
    public var drop: Double
    /// Hold the message `delayMs` +- `jitterMs` (uniform, at least 0) before forwarding it, with this probability.
    public var delay: Double
    public var delayMs: Int
    public var jitterMs: Int
    /// Forward the message twice. A duplicated request reaches the handler twice (at-least-once delivery);
    /// its extra reply is swallowed by the proxy, so the REQ client still gets exactly one reply, its own.
    /// A duplicated reply is offered to the client twice: libzmq's REQ drops the copy when it is there before
    /// the next send, otherwise takes it as the next reply, which a client checking sequence numbers sees
    /// as a reply to an older request.
    public var duplicate: Double
    /// Hold the message and forward it right after the next one of the same direction (at most
    /// `reorderHoldMs`, then it goes alone).
    public var reorder: Double
    public var reorderHoldMs: Int
    /// Flip one byte of the body frame (`x ^ 0xFF`, which never leaves valid JSON).
    public var corrupt: Double
    /// Swallow every message while on.
    public var blackhole: Bool
    public var direction: FaultDirection

    public init(drop: Double = 0, delay: Double = 1, delayMs: Int = 0, jitterMs: Int = 0, duplicate: Double = 0,
                reorder: Double = 0, reorderHoldMs: Int = 200, corrupt: Double = 0, blackhole: Bool = false,
                direction: FaultDirection = .both) {
        self.drop = drop
        self.delay = delay
        self.delayMs = delayMs
        self.jitterMs = jitterMs
        self.duplicate = duplicate
        self.reorder = reorder
        self.reorderHoldMs = reorderHoldMs
        self.corrupt = corrupt
        self.blackhole = blackhole
        self.direction = direction
    }

    /// No fault at all.
    public static let none = ProxyFaults()

    public var isQuiet: Bool {
        !blackhole && drop == 0 && duplicate == 0 && reorder == 0 && corrupt == 0 && (delayMs == 0 && jitterMs == 0 || delay == 0)
    }

    /// The settings as the control endpoint shows them (keys of `set`).
    public var json: JSONValue {
        .object([
            "drop": .double(drop), "delay": .double(delay), "delay_ms": .int(Int64(delayMs)),
            "jitter_ms": .int(Int64(jitterMs)), "duplicate": .double(duplicate), "reorder": .double(reorder),
            "reorder_hold_ms": .int(Int64(reorderHoldMs)), "corrupt": .double(corrupt),
            "blackhole": .bool(blackhole), "direction": .string(direction.rawValue),
        ])
    }

    public var description: String {
        var parts: [String] = []
        if blackhole { parts.append("blackhole") }
        if drop > 0 { parts.append("drop=\(drop)") }
        if delay > 0 && (delayMs > 0 || jitterMs > 0) {
            parts.append("delay=\(delayMs)ms" + (jitterMs > 0 ? "±\(jitterMs)ms" : "") + (delay < 1 ? "@\(delay)" : ""))
        }
        if duplicate > 0 { parts.append("duplicate=\(duplicate)") }
        if reorder > 0 { parts.append("reorder=\(reorder)") }
        if corrupt > 0 { parts.append("corrupt=\(corrupt)") }
        if parts.isEmpty { return "none" }
        return parts.joined(separator: " ") + (direction == .both ? "" : " (\(direction.rawValue))")
    }

    /// The keys `set` accepts (also the keys of a proxy fault's `params` in an experiment).
    public static let settingKeys: [String] = [
        "drop", "delay", "delay_ms", "jitter_ms", "duplicate", "reorder", "reorder_hold_ms", "corrupt", "blackhole",
        "direction",
    ]

    public struct InvalidSetting: Error, Equatable, Sendable, CustomStringConvertible {
        public let key: String
        public let reason: String
        public var description: String { "\(key): \(reason)" }
    }

    /// These settings with the given keys changed; keys not named keep their value. Refuses unknown keys,
    /// probabilities outside [0, 1] and negative times, naming the key.
    public func applying(_ changes: [String: JSONValue]) throws(InvalidSetting) -> ProxyFaults {
        var f = self
        for key in changes.keys.sorted() {
            let v = changes[key]!
            func probability() throws(InvalidSetting) -> Double {
                if let b = v.boolValue { return b ? 1 : 0 }
                guard let d = v.doubleValue, d >= 0, d <= 1 else {
                    throw InvalidSetting(key: key, reason: "expected a probability in [0, 1], got \(JSON.string(v))")
                }
                return d
            }
            func millis() throws(InvalidSetting) -> Int {
                guard let d = v.doubleValue, d >= 0, d <= 3_600_000 else {
                    throw InvalidSetting(key: key, reason: "expected milliseconds >= 0, got \(JSON.string(v))")
                }
                return Int(d.rounded())
            }
            switch key {
            case "drop": f.drop = try probability()
            case "delay": f.delay = try probability()
            case "delay_ms": f.delayMs = try millis()
            case "jitter_ms": f.jitterMs = try millis()
            case "duplicate": f.duplicate = try probability()
            case "reorder": f.reorder = try probability()
            case "reorder_hold_ms": f.reorderHoldMs = try millis()
            case "corrupt": f.corrupt = try probability()
            case "blackhole":
                guard let b = v.boolValue else { throw InvalidSetting(key: key, reason: "expected true or false, got \(JSON.string(v))") }
                f.blackhole = b
            case "direction":
                guard let s = v.stringValue, let d = FaultDirection(rawValue: s) else {
                    throw InvalidSetting(key: key, reason: "expected requests, replies or both, got \(JSON.string(v))")
                }
                f.direction = d
            default:
                throw InvalidSetting(key: key, reason: "unknown setting (known: \(ProxyFaults.settingKeys.joined(separator: ", ")))")
            }
        }
        return f
    }
}

/// What the proxy decided for one message. Recorded in order per direction, so two runs with one seed and
/// the same traffic can be compared decision by decision.
public struct ProxyDecision: Sendable, Equatable, CustomStringConvertible {
    public var direction: MessageDirection
    /// The message's number in its direction, from 1.
    public var index: Int
    public var blackholed = false
    public var dropped = false
    public var corruptedByte: Int?
    public var duplicated = false
    public var held = false
    public var delayMs: Int?
    /// `both` only, on a request: the exchange is lost after the handler ran it (its reply is dropped, and
    /// that reply's decision reads `dropped`).
    public var dropsReply = false

    public var description: String {
        var p: [String] = []
        if blackholed { p.append("blackhole") }
        if dropped { p.append("drop") }
        if dropsReply { p.append("drop reply") }
        if let c = corruptedByte { p.append("corrupt@\(c)") }
        if duplicated { p.append("duplicate") }
        if held { p.append("hold") }
        if let d = delayMs { p.append("delay \(d)ms") }
        return "\(direction.rawValue) #\(index): " + (p.isEmpty ? "forward" : p.joined(separator: ", "))
    }
}

/// Counters of a running proxy.
public struct ProxyStats: Sendable, Equatable {
    public var received: [MessageDirection: Int] = [:]
    public var forwarded: [MessageDirection: Int] = [:]
    public var dropped = 0
    public var delayed = 0
    public var duplicated = 0
    public var reordered = 0
    public var corrupted = 0
    public var blackholed = 0
    /// Extra replies to duplicated requests that were kept from the REQ client.
    public var duplicateRepliesSwallowed = 0
    /// Sends that libzmq refused (full queue, peer gone).
    public var sendFailures = 0
    public var controlRequests = 0
    /// Control requests refused because of who sent them (ipc peer credentials).
    public var controlRefused = 0
    public init() {}

    public var json: JSONValue {
        .object([
            "received": .object(["requests": .int(Int64(received[.request] ?? 0)), "replies": .int(Int64(received[.reply] ?? 0))]),
            "forwarded": .object(["requests": .int(Int64(forwarded[.request] ?? 0)), "replies": .int(Int64(forwarded[.reply] ?? 0))]),
            "faults": .object([
                "drop": .int(Int64(dropped)), "delay": .int(Int64(delayed)), "duplicate": .int(Int64(duplicated)),
                "reorder": .int(Int64(reordered)), "corrupt": .int(Int64(corrupted)), "blackhole": .int(Int64(blackholed)),
            ]),
            "duplicate_replies_swallowed": .int(Int64(duplicateRepliesSwallowed)),
            "send_failures": .int(Int64(sendFailures)),
            "control_requests": .int(Int64(controlRequests)),
            "control_refused": .int(Int64(controlRefused)),
        ])
    }
}
