// The wire and `status --json` form of a process snapshot (snake_case keys, as upstream's get_status()).
import Foundation
import ScheduleZeroWire

extension ManagedProcessInfo {
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name), "role": .string(role.rawValue), "status": .string(status.rawValue),
            "restart_count": .int(Int64(restartCount)),
        ]
        o["pid"] = pid.map { .int(Int64($0)) } ?? .null
        o["last_error"] = lastError.map { .string($0) } ?? .null
        o["endpoint"] = endpoint.map { .string($0) } ?? .null
        o["exit_code"] = exitCode.map { .int(Int64($0)) } ?? .null
        o["exit_signal"] = exitSignal.map { .int(Int64($0)) } ?? .null
        o["start_time"] = startTime.map { .string(RFC3339.string(from: $0)) } ?? .null
        if let link { o["link"] = link.json }
        if let n = livenessFailures { o["liveness_failures"] = .int(Int64(n)) }
        return .object(o)
    }
}

/// One row of a status table, from a running governor or from PID files.
public struct StatusRow: Sendable, Hashable {
    public var name: String
    public var role: String
    public var status: String
    public var pid: Int32?
    public var restarts: Int?
    public var endpoint: String?
    public var note: String?

    public init(name: String, role: String, status: String, pid: Int32?, restarts: Int?, endpoint: String?, note: String?) {
        self.name = name
        self.role = role
        self.status = status
        self.pid = pid
        self.restarts = restarts
        self.endpoint = endpoint
        self.note = note
    }

    public init?(json: JSONValue) {
        guard let o = json.objectValue, let name = o["name"]?.stringValue else { return nil }
        var note = o["last_error"]?.stringValue
        if let l = o["link"]?.objectValue {
            let counts = ["requests", "lost", "late", "duplicate_executions"].map { k in
                "\(l[k]?.intValue ?? 0) \(k.replacingOccurrences(of: "_", with: " "))"
            }
            let link = "interposed -> \(l["private"]?.stringValue ?? "?"): " + counts.joined(separator: ", ")
            note = note.map { "\($0); \(link)" } ?? link
        }
        self.init(name: name, role: o["role"]?.stringValue ?? "?", status: o["status"]?.stringValue ?? "?",
                  pid: o["pid"]?.intValue.map { Int32($0) }, restarts: o["restart_count"]?.intValue.map { Int($0) },
                  endpoint: o["endpoint"]?.stringValue, note: note)
    }

    /// An aligned text table.
    public static func table(_ rows: [StatusRow]) -> String {
        let header = ["NAME", "ROLE", "STATUS", "PID", "RESTARTS", "ENDPOINT", "NOTE"]
        let cells = rows.map { r in
            [r.name, r.role, r.status, r.pid.map(String.init) ?? "-", r.restarts.map(String.init) ?? "-",
             r.endpoint ?? "-", r.note ?? ""]
        }
        var widths = header.map(\.count)
        for row in cells { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ row: [String]) -> String {
            row.enumerated().map { i, c in i == row.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + cells.map(line)).joined(separator: "\n")
    }
}
