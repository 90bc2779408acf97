// Processes that had to be killed at their stop timeout (they ignored SIGTERM), read back from events.jsonl:
// what `szgovernor down` and `status` say about them, and what szchaos reports as a finding.
import Foundation
import ScheduleZeroWire

/// One `escalated` event: `name` ignored SIGTERM and was killed after `after` (its stop timeout).
public struct StopEscalation: Sendable, Equatable {
    public var name: String
    public var pid: Int32?
    /// The stop timeout as the governor wrote it (`2s`, `500ms`), or nil when the detail does not say.
    public var after: String?
    public var time: String

    public init?(_ event: LifecycleEvent) {
        guard event.event == .escalated else { return nil }
        name = event.process
        pid = event.pid
        time = event.time
        after = event.detail.flatMap { d in
            d.range(of: "still alive after ").map { String(d[$0.upperBound...].prefix { $0 != ":" }) }
        }
    }

    /// `h-1 ignored SIGTERM and was killed after 2s (pid 123)`.
    public var line: String {
        "\(name) ignored SIGTERM and was killed after \(after ?? "its stop timeout")" + (pid.map { " (pid \($0))" } ?? "")
    }

    public var json: JSONValue {
        .object(["name": .string(name), "after": after.map { .string($0) } ?? .null, "time": .string(time),
                 "pid": pid.map { .int(Int64($0)) } ?? .null])
    }
}

extension LifecycleLog {
    /// Every event of an events.jsonl file, oldest first; lines that do not parse are skipped.
    public static func read(_ path: String) -> [LifecycleEvent] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        return data.split(separator: 0x0A).compactMap { try? decoder.decode(LifecycleEvent.self, from: Data($0)) }
    }

    /// The escalations of `events` at or after `since`; with `currentRun`, only after the last `governor_started`.
    public static func escalations(_ events: [LifecycleEvent], since: Date? = nil, currentRun: Bool = false) -> [StopEscalation] {
        var list = events
        if currentRun, let i = list.lastIndex(where: { $0.event == .governorStarted }) { list = Array(list[i...]) }
        if let since {
            let parser = ISO8601DateFormatter()
            parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            // Event times have milliseconds: compare at that precision.
            let floor = since.addingTimeInterval(-0.001)
            list = list.filter { parser.date(from: $0.time).map { $0 >= floor } ?? false }
        }
        return list.compactMap(StopEscalation.init)
    }
}
