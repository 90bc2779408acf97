// The faults of a running chaos proxy (`szchaos proxy --control EP`) or of an interposed link
// (`<root>/<d>/run/<name>.link`), changed at run time the way `toxiproxy-cli toxic add|list|remove` does:
// `szchaos proxy-faults add|list|remove`. One request each on the proxy's control endpoint (`set`, `status`).
import Foundation
import Governor
import Interposer
import ScheduleZeroWire

public enum ProxyControlError: Error, CustomStringConvertible, Equatable {
    case unreachable(String)
    case refused(String)

    public var description: String {
        switch self {
        case .unreachable(let ep): return "no chaos proxy answers on \(ep) (is `szchaos proxy --control \(ep)` or the interposer running?)"
        case .refused(let why): return why
        }
    }
}

public enum ProxyControl {
    /// The faults one can name in `remove`, and the settings each resets.
    public static let removable: [String: [String: JSONValue]] = [
        "drop": ["drop": 0], "delay": ["delay_ms": 0, "jitter_ms": 0, "delay": 1], "duplicate": ["duplicate": 0],
        "reorder": ["reorder": 0], "corrupt": ["corrupt": 0], "blackhole": ["blackhole": false], "direction": ["direction": "both"],
    ]

    /// Adds (changes) the given settings (`ProxyFaults.settingKeys`); returns the settings in force.
    public static func add(_ endpoint: String, _ settings: [String: JSONValue], timeout: Duration = .seconds(2)) throws(ProxyControlError) -> ProxyFaults {
        try settingsIn(call(endpoint, "set", settings, timeout))
    }

    /// The settings in force and the proxy's counters (its `status` reply).
    public static func list(_ endpoint: String, timeout: Duration = .seconds(2)) throws(ProxyControlError) -> (ProxyFaults, Reply) {
        let r = try call(endpoint, "status", [:], timeout)
        return (try settingsIn(r), r)
    }

    /// Removes the named faults (`removable` keys), or every one (`clear`); returns the settings in force.
    public static func remove(_ endpoint: String, _ names: [String], timeout: Duration = .seconds(2)) throws(ProxyControlError) -> ProxyFaults {
        if names.isEmpty { return try settingsIn(call(endpoint, "clear", [:], timeout)) }
        var settings: [String: JSONValue] = [:]
        for n in names {
            guard let s = removable[n] else {
                throw .refused("unknown fault \"\(n)\" (known: \(removable.keys.sorted().joined(separator: ", ")))")
            }
            settings.merge(s) { $1 }
        }
        return try settingsIn(call(endpoint, "set", settings, timeout))
    }

    /// One line per fault in force (`drop 0.3`, `delay 300ms +-50ms (p 1.0)`, ...), or `none`.
    public static func lines(_ f: ProxyFaults) -> [String] {
        var out: [String] = []
        if f.blackhole { out.append("blackhole") }
        if f.drop > 0 { out.append("drop \(f.drop)") }
        if f.delay > 0 && (f.delayMs > 0 || f.jitterMs > 0) {
            out.append("delay \(f.delayMs)ms" + (f.jitterMs > 0 ? " +-\(f.jitterMs)ms" : "") + (f.delay < 1 ? " (p \(f.delay))" : ""))
        }
        if f.duplicate > 0 { out.append("duplicate \(f.duplicate)") }
        if f.reorder > 0 { out.append("reorder \(f.reorder)") }
        if f.corrupt > 0 { out.append("corrupt \(f.corrupt)") }
        if out.isEmpty { return ["none"] }
        if f.direction != .both { out.append("direction \(f.direction.rawValue)") }
        return out
    }

    static func call(_ endpoint: String, _ method: String, _ params: [String: JSONValue], _ timeout: Duration) throws(ProxyControlError) -> Reply {
        guard let r = ControlClient.call(endpoint, method, params: params, timeout: timeout) else { throw .unreachable(endpoint) }
        guard r.success else { throw .refused(r.error ?? "\(method) refused") }
        return r
    }

    static func settingsIn(_ r: Reply) throws(ProxyControlError) -> ProxyFaults {
        guard let s = r["settings"]?.objectValue else { throw .refused("the reply has no settings: \(JSON.string(.object(r.fields)))") }
        do { return try ProxyFaults.none.applying(s) } catch { throw .refused("the reply's settings: \(error)") }
    }
}
