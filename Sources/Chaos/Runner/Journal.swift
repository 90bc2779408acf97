import Foundation
import ScheduleZeroWire

/// The experiment's journal: one JSON object per line (`t` = seconds since the run started, `event` = what),
/// written as it happens and kept in memory for the report. Thread-safe.
public final class Journal: @unchecked Sendable {
    public let path: String?
    private let lock = NSLockLite()
    private var handle: FileHandle?
    private var events: [JSONValue] = []
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant

    /// - Parameter path: the file to write (created or truncated); `nil` keeps the journal in memory only.
    public init(path: String?, start: ContinuousClock.Instant = ContinuousClock.now) throws {
        self.path = path
        self.start = start
        if let path {
            guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
                throw RunnerError.cannotWrite(path: path, reason: "cannot create the file")
            }
            handle = h
        }
    }

    deinit { try? handle?.close() }

    public func seconds(since instant: ContinuousClock.Instant? = nil) -> Double {
        ((instant ?? clock.now) - start).secondsValue
    }

    /// Appends `{"t": ..., "event": event, ...fields}`.
    public func record(_ event: String, _ fields: [String: JSONValue] = [:], at instant: ContinuousClock.Instant? = nil) {
        var f = fields
        f["event"] = .string(event)
        f["t"] = .double((seconds(since: instant) * 1000).rounded() / 1000)
        let v = JSONValue.object(f)
        var line = JSON.encode(v)
        line.append(0x0A)
        lock.with {
            events.append(v)
            handle?.write(Data(line))
        }
    }

    public var all: [JSONValue] { lock.with { events } }

    public func events(_ name: String) -> [JSONValue] { all.filter { $0["event"]?.stringValue == name } }

    public func close() { lock.with { try? handle?.close(); handle = nil } }
}
