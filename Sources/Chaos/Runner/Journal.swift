import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ScheduleZeroWire

/// The experiment's journal: one JSON object per line (`t` = seconds since the run started, `event` = what),
/// written as it happens and kept in memory for the report. Thread-safe.
public final class Journal: @unchecked Sendable {
    public let path: String?
    private let lock = NSLock()
    private var handle: FileHandle?
    private var events: [JSONValue] = []
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant

    /// - Parameter path: the file to write (created or truncated); `nil` keeps the journal in memory only.
    public init(path: String?, start: ContinuousClock.Instant = ContinuousClock.now) throws {
        self.path = path
        self.start = start
        if let path {
            // O_CLOEXEC: Foundation's FileHandle(forWritingAtPath:) leaves it off, and every process this one
            // starts without closing descriptors held the journal open (an exit test's child saw them).
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw RunnerError.cannotWrite(path: path, reason: String(cString: strerror(errno)))
            }
            handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
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
        lock.withLock {
            events.append(v)
            handle?.write(Data(line))
        }
    }

    public var all: [JSONValue] { lock.withLock { events } }

    public func events(_ name: String) -> [JSONValue] { all.filter { $0["event"]?.stringValue == name } }

    public func close() { lock.withLock { try? handle?.close(); handle = nil } }
}
