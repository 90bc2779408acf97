// The lifecycle history of a deployment, appended as JSON lines to `<deploymentDir>/events.jsonl`
// (one write(2) per line on an O_APPEND fd, so lines from concurrent writers never interleave), kept in
// memory for `recentEvents`, and passed to an optional observer (tests use it to track every PID).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

public struct LifecycleEvent: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        case spawned, ready, startFailed = "start_failed", exited, backoff, fatal, stopping, escalated, stopped
        case governorStarted = "governor_started", governorStopped = "governor_stopped"
        case orphanStopped = "orphan_stopped", staleRemoved = "stale_pid_file_removed"
        case linkStarted = "link_started", linkStopped = "link_stopped"
        /// Liveness checks failed `failures` times in a row; the detail says what they saw.
        case unhealthy
        case controlRefused = "control_refused"
        /// Something works in a lesser mode (e.g. process trees by process group, no cgroup).
        case warning
    }
    /// Wall-clock time, ISO 8601 with milliseconds.
    public var time: String
    public var process: String
    public var event: Kind
    public var pid: Int32?
    public var detail: String?

    public init(process: String, event: Kind, pid: Int32? = nil, detail: String? = nil, at date: Date = Date()) {
        self.time = LifecycleEvent.formatter.string(from: date)
        self.process = process
        self.event = event
        self.pid = pid
        self.detail = detail
    }

    nonisolated(unsafe) private static let formatter: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
}

public final class LifecycleLog: Sendable {
    public let path: String?
    private let fd: CInt
    private let recent = Mutex<[LifecycleEvent]>([])
    private let keep: Int
    private let observer: (@Sendable (LifecycleEvent) -> Void)?

    /// `path` nil keeps events in memory only.
    public init(path: String?, keep: Int = 1000, observer: (@Sendable (LifecycleEvent) -> Void)? = nil) {
        self.path = path
        self.keep = keep
        self.observer = observer
        if let path {
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                     withIntermediateDirectories: true)
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        } else {
            fd = -1
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    public func record(_ event: LifecycleEvent) {
        recent.withLock { list in
            list.append(event)
            if list.count > keep { list.removeFirst(list.count - keep) }
        }
        if fd >= 0, var data = try? JSONEncoder.sorted.encode(event) {
            data.append(0x0A)
            _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
        observer?(event)
    }

    public func record(_ process: String, _ kind: LifecycleEvent.Kind, pid: Int32? = nil, detail: String? = nil) {
        record(LifecycleEvent(process: process, event: kind, pid: pid, detail: detail))
    }

    /// The last events (at most `keep`), oldest first.
    public var events: [LifecycleEvent] { recent.withLock { $0 } }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
