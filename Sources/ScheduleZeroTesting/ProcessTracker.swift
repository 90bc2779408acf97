import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Remembers every process a test started (PID plus start time, so a reused PID is never hit) and kills
/// whatever is still alive, with its process group, in `killAll()`. Call it from `defer` so a failing test
/// leaves nothing behind.
public final class ProcessTracker: Sendable {
    private struct Entry: Hashable { let pid: pid_t; let startTime: UInt64 }
    private let entries = Mutex<[Entry]>([])

    public init() {}

    /// Tracks `pid` if it is alive now.
    public func track(_ pid: pid_t) {
        guard let start = LiveProcess.startTime(of: pid) else { return }
        LeakGuard.track(pid: pid, name: "tracked by a test")
        entries.withLock { $0.append(Entry(pid: pid, startTime: start)) }
    }

    /// The tracked PIDs that are still the same live process.
    public var alive: [pid_t] {
        entries.withLock { $0 }.filter { LiveProcess.startTime(of: $0.pid) == $0.startTime }.map(\.pid)
    }

    /// SIGKILLs every tracked process that is still alive, and its process group if it leads one.
    /// Returns the PIDs it had to kill (a clean test returns []).
    @discardableResult
    public func killAll() -> [pid_t] {
        let victims = alive
        for pid in victims {
            if LiveProcess.processGroup(of: pid) == pid { kill(-pid, SIGKILL) }
            kill(pid, SIGKILL)
        }
        return victims
    }
}

/// Small /proc readers for tests (kept free of the libraries under test).
public enum LiveProcess {
    /// Field 22 of /proc/PID/stat, or nil when there is no such process or it is a zombie.
    public static func startTime(of pid: pid_t) -> UInt64? {
        guard let f = fields(of: pid), f.count > 19, f[0] != "Z", f[0] != "X" else { return nil }
        return UInt64(f[19])
    }

    /// True while `pid` is a live (non-zombie) process.
    public static func isAlive(_ pid: pid_t) -> Bool { startTime(of: pid) != nil }

    public static func processGroup(of pid: pid_t) -> pid_t? {
        guard let f = fields(of: pid), f.count > 2 else { return nil }
        return pid_t(f[2])
    }

    /// The parent of `pid`, nil when there is no such process.
    public static func parent(of pid: pid_t) -> pid_t? {
        guard let f = fields(of: pid), f.count > 1 else { return nil }
        return pid_t(f[1])
    }

    /// Every process on the machine, by PID.
    public static func all() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }

    /// True when a variable of the environment `pid` was started with has a value inside `folder`
    /// (`SZ_TEST_TMPDIR` itself, or a governor child's `SZGOVERNOR_DIR` below it).
    public static func environmentPoints(into folder: String, pid: pid_t) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
        let inside = Array(folder.utf8)
        for entry in data.split(separator: 0) {
            guard let eq = entry.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let value = entry[entry.index(after: eq)...]
            if value.starts(with: inside) && (value.count == inside.count || value[value.startIndex + inside.count] == UInt8(ascii: "/")) {
                return true
            }
        }
        return false
    }

    /// The PIDs of the live children of `parent` (state not Z).
    public static func children(of parent: pid_t) -> [pid_t] {
        all().filter { pid in
            guard let f = fields(of: pid), f.count > 1 else { return false }
            return f[0] != "Z" && pid_t(f[1]) == parent
        }
    }

    /// Open file descriptors of this process.
    public static func openFileDescriptorCount() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count - 1
    }

    /// The descriptors a leak could be made of, by number: everything but the event, epoll, timer and signal
    /// descriptors that Dispatch, Foundation and the concurrency runtime open lazily on first use (a stress
    /// body once saw one of those appear mid-run and read it as a leak). Pidfds, sockets, pipes and files
    /// all count.
    public static func leakableDescriptors() -> [Int32: String] {
        let runtime: Set<String> = ["anon_inode:[eventfd]", "anon_inode:[eventpoll]", "anon_inode:[timerfd]", "anon_inode:[signalfd]"]
        return LeakGuard.descriptorKinds().filter { !runtime.contains($0.value) && !$0.value.hasPrefix("/proc/") }
    }

    /// What differs between two `leakableDescriptors()` snapshots, for a report. (Compare snapshots by
    /// descriptor number: a descriptor inherited from the parent reads "... (deleted)" once the parent
    /// removes its file, and that is no leak.)
    public static func descriptorChange(from before: [Int32: String], to after: [Int32: String]) -> String {
        let opened = after.filter { before[$0.key] != $0.value }.sorted { $0.key < $1.key }.map { "+\($0.key) \($0.value)" }
        let closed = before.filter { after[$0.key] != $0.value }.sorted { $0.key < $1.key }.map { "-\($0.key) \($0.value)" }
        return (opened + closed).joined(separator: ", ")
    }

    /// Threads of this process.
    public static func threadCount() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).count
    }

    /// Fields 3... of /proc/PID/stat (after the command in parentheses).
    static func fields(of pid: pid_t) -> [Substring]? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
              let text = String(data: data, encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }
}
