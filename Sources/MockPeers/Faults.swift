#if canImport(Glibc)
import Glibc
#endif
import ScheduleZeroWire

/// What a fault answers instead of a proper reply.
public enum GarbageKind: String, Sendable, CaseIterable {
    /// Bytes that are not JSON (and not UTF-8).
    case bytes
    /// Valid JSON that is not a ScheduleZero reply (a JSON array).
    case wrongShape = "wrong_shape"
}

/// How a crash fault ends the process.
public enum CrashMode: Equatable, Sendable {
    case exit(Int32)
    case signal(Int32)
}

/// The faults of a mock handler. Counts (`dropNext`, `swallowNext`, `crashAfter`) go down as they fire;
/// the rest stay until changed or cleared.
public struct FaultSettings: Equatable, Sendable {
    /// Execute the next N requests but send no reply.
    public var dropNext = 0
    /// Drop each reply with this probability (seeded).
    public var dropProbability = 0.0
    /// Delay every reply by this many ms, +- `jitterMs` (uniform, seeded).
    public var delayMs = 0
    public var jitterMs = 0
    /// Receive the next N requests, never answer, and reset the data socket (the caller's REQ is stuck: EFSM).
    public var swallowNext = 0
    /// Answer every request with garbage of this kind.
    public var garbage: GarbageKind?
    /// After this many more requests, the next one crashes the process (no reply).
    public var crashAfter: Int?
    public var crashMode: CrashMode = .exit(3)
    /// SIGTERM is logged and ignored (a governor must escalate to SIGKILL).
    public var ignoreSigterm = false

    public init() {}

    public static let defaultCrashExitCode: Int32 = 3

    public var isEmpty: Bool { self == FaultSettings() }

    /// The parameter names `fault.set` accepts.
    public static let keys: Set<String> = [
        "drop_next", "drop_probability", "delay_ms", "jitter_ms", "swallow_next", "garbage",
        "crash_after", "crash_exit_code", "crash_signal", "ignore_sigterm",
    ]

    /// Applies `fault.set` params on top of these settings (keys not given keep their value).
    /// `null` switches a fault off. Throws for unknown keys and bad values, changing nothing.
    public mutating func apply(_ params: [String: JSONValue]) throws(PeerError) {
        var n = self
        for key in params.keys.sorted() {
            let v = params[key]!
            func int(min lo: Int64 = 0) throws(PeerError) -> Int {
                if v == .null { return 0 }
                guard let i = v.intValue, i >= lo, i <= Int64(Int32.max) else {
                    throw .invalidFault("\(key) must be an integer >= \(lo), got \(JSON.string(v))")
                }
                return Int(i)
            }
            switch key {
            case "drop_next": n.dropNext = try int()
            case "drop_probability":
                if v == .null { n.dropProbability = 0; continue }
                guard let p = v.doubleValue, p >= 0, p <= 1 else {
                    throw .invalidFault("drop_probability must be a number in 0...1, got \(JSON.string(v))")
                }
                n.dropProbability = p
            case "delay_ms": n.delayMs = try int()
            case "jitter_ms": n.jitterMs = try int()
            case "swallow_next": n.swallowNext = try int()
            case "garbage":
                if v == .null || v == .bool(false) { n.garbage = nil; continue }
                guard let s = v.stringValue, let g = GarbageKind(rawValue: s) else {
                    throw .invalidFault("garbage must be \"bytes\" or \"wrong_shape\" (or null), got \(JSON.string(v))")
                }
                n.garbage = g
            case "crash_after":
                n.crashAfter = v == .null ? nil : try int()
            case "crash_exit_code":
                guard let c = v.intValue, (0...255).contains(c) else {
                    throw .invalidFault("crash_exit_code must be an integer in 0...255, got \(JSON.string(v))")
                }
                n.crashMode = .exit(Int32(c))
            case "crash_signal":
                guard let s = v.stringValue, let sig = FaultSettings.signalNumber(s) else {
                    throw .invalidFault("crash_signal must be one of \(FaultSettings.signalNames.keys.sorted().joined(separator: ", ")), got \(JSON.string(v))")
                }
                n.crashMode = .signal(sig)
            case "ignore_sigterm":
                guard let b = v.boolValue else { throw .invalidFault("ignore_sigterm must be a boolean, got \(JSON.string(v))") }
                n.ignoreSigterm = b
            default:
                throw .invalidFault("unknown fault \"\(key)\" (known: \(FaultSettings.keys.sorted().joined(separator: ", ")))")
            }
        }
        self = n
    }

    /// The signals a crash fault may end the handler with (a whitelist, not a name table: see Governor.SignalName).
    static let signalNames: [String: Int32] = ["SIGABRT": SIGABRT, "SIGKILL": SIGKILL, "SIGSEGV": SIGSEGV, "SIGBUS": SIGBUS]

    static func signalNumber(_ name: String) -> Int32? {
        let up = name.uppercased()
        return signalNames[up] ?? signalNames["SIG" + up]
    }

    static func signalName(_ n: Int32) -> String {
        signalNames.first { $0.value == n }?.key ?? "signal \(n)"
    }

    /// The active faults, in `fault.set` form (only those that are on).
    public var json: JSONValue {
        var o: [String: JSONValue] = [:]
        if dropNext > 0 { o["drop_next"] = .int(Int64(dropNext)) }
        if dropProbability > 0 { o["drop_probability"] = .double(dropProbability) }
        if delayMs > 0 { o["delay_ms"] = .int(Int64(delayMs)) }
        if jitterMs > 0 { o["jitter_ms"] = .int(Int64(jitterMs)) }
        if swallowNext > 0 { o["swallow_next"] = .int(Int64(swallowNext)) }
        if let g = garbage { o["garbage"] = .string(g.rawValue) }
        if let c = crashAfter {
            o["crash_after"] = .int(Int64(c))
            switch crashMode {
            case .exit(let code): o["crash_exit_code"] = .int(Int64(code))
            case .signal(let s): o["crash_signal"] = .string(FaultSettings.signalName(s))
            }
        }
        if ignoreSigterm { o["ignore_sigterm"] = true }
        return .object(o)
    }
}

/// What a mock handler has done. `requests` counts every message received on the data socket.
public struct HandlerCounters: Equatable, Sendable {
    public var requests = 0
    /// Replies sent (proper replies, error replies included; garbage not).
    public var replies = 0
    public var dropped = 0
    public var swallowed = 0
    public var delayed = 0
    public var garbage = 0
    /// Error replies sent (unknown method, invalid JSON, failing method...).
    public var errors = 0
    public init() {}

    public var json: JSONValue {
        ["requests": .int(Int64(requests)), "replies": .int(Int64(replies)), "dropped": .int(Int64(dropped)),
         "swallowed": .int(Int64(swallowed)), "delayed": .int(Int64(delayed)), "garbage": .int(Int64(garbage)),
         "errors": .int(Int64(errors))]
    }
}
