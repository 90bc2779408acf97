// Who a PID is: an identity that survives PID reuse, read from /proc.
//
// A PID alone is not an identity: the kernel hands the number to a new process once the old one is reaped.
// The pair (start time in clock ticks since boot, field 22 of /proc/PID/stat; executable, readlink of
// /proc/PID/exe) names one process for the lifetime of the boot. Used by PID files, reconciliation and the
// chaos tool before it signals anything.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public struct ProcessIdentity: Sendable, Hashable, CustomStringConvertible {
    public var pid: pid_t
    /// Field 22 of /proc/PID/stat: start time in clock ticks after boot.
    public var startTime: UInt64
    /// readlink(/proc/PID/exe); nil when it cannot be read (kernel thread, another user's process).
    public var executable: String?

    public init(pid: pid_t, startTime: UInt64, executable: String?) {
        self.pid = pid
        self.startTime = startTime
        self.executable = executable
    }

    public var description: String {
        "pid \(pid) (start \(startTime), exe \(executable ?? "?"))"
    }

    /// The identity of the live process `pid` now, or nil if there is none (or it is a zombie).
    public static func of(pid: pid_t) -> ProcessIdentity? {
        guard pid > 0, let stat = ProcStat.read(pid: pid), stat.state != "Z", stat.state != "X" else { return nil }
        return ProcessIdentity(pid: pid, startTime: stat.startTime, executable: readExecutable(pid: pid))
    }

    /// True when `other` is the same process: same PID and start time, and the same executable when both known.
    public func matches(_ other: ProcessIdentity) -> Bool {
        guard pid == other.pid, startTime == other.startTime else { return false }
        if let a = executable, let b = other.executable { return a == b }
        return true
    }

    static func readExecutable(pid: pid_t) -> String? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buffer.withUnsafeMutableBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) {
                readlink("/proc/\(pid)/exe", $0, b.count - 1)
            }
        }
        guard n > 0 else { return nil }
        var s = String(decoding: buffer[..<n], as: UTF8.self)
        // A replaced binary reads "/path (deleted)"; keep the path so identities still compare.
        if s.hasSuffix(" (deleted)") { s.removeLast(" (deleted)".count) }
        return s
    }
}

/// The fields of /proc/PID/stat the governor uses.
public struct ProcStat: Sendable, Equatable {
    public var pid: pid_t
    public var command: String
    public var state: Character
    public var parentPid: pid_t
    public var processGroup: pid_t
    public var session: pid_t
    public var startTime: UInt64

    /// Parses the text of /proc/PID/stat. The command (field 2) may hold spaces and parentheses, so fields
    /// are counted after the LAST ')'.
    public static func parse(_ text: String) -> ProcStat? {
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), open < close else { return nil }
        guard let pid = pid_t(text[..<open].trimmingCharacters(in: .whitespaces)) else { return nil }
        let command = String(text[text.index(after: open)..<close])
        let rest = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // rest[0] is field 3 (state); field N is rest[N - 3].
        guard rest.count >= 20, let state = rest[0].first,
              let ppid = pid_t(rest[1]), let pgrp = pid_t(rest[2]), let session = pid_t(rest[3]),
              let start = UInt64(rest[19]) else { return nil }
        return ProcStat(pid: pid, command: command, state: state, parentPid: ppid,
                        processGroup: pgrp, session: session, startTime: start)
    }

    public static func read(pid: pid_t) -> ProcStat? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
              let text = String(data: data, encoding: .utf8) else { return nil }
        return parse(text)
    }
}

/// Reads one variable from /proc/PID/environ (the environment the process was started with).
/// nil when unreadable or absent.
public func processEnvironmentValue(pid: pid_t, name: String) -> String? {
    // Every process this project starts has variables, so an empty read means "not set up yet".
    guard let data = readFreshProcFile(pid: pid, "environ") else { return nil }
    let prefix = Array((name + "=").utf8)
    for entry in data.split(separator: 0) {
        let bytes = Array(entry)
        if bytes.starts(with: prefix) {
            return String(decoding: bytes[prefix.count...], as: UTF8.self)
        }
    }
    return nil
}

/// The command line of a process (`/proc/PID/cmdline`, split at NULs); nil when unreadable. Read right
/// after `posix_spawn`, it waits until exec has set it up (see `readFreshProcFile`) instead of answering [].
public func processCommandLine(pid: pid_t) -> [String]? {
    guard let data = readFreshProcFile(pid: pid, "cmdline") else { return nil }
    return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
}

/// Reads /proc/PID/environ or /proc/PID/cmdline of a process that may have been spawned a moment ago.
/// posix_spawn returns as soon as the child's exec has replaced its memory (the vfork parent is released in
/// exec_mmap), before the kernel has set the new argument and environment areas (create_elf_tables): until
/// the child runs again both read empty (measured here: 2475 of 3000 environ reads right after posix_spawn; a
/// test that read cmdline at once failed the same way). A process of ours always has both, so an empty read
/// is retried, never taken as "none": for up to 2 s, as long as the process is alive and not a zombie (whose
/// areas are gone for good). A count of 200 tries of 0.5 ms ran out once with one core busy: the child had
/// not been scheduled again yet.
func readFreshProcFile(pid: pid_t, _ name: String) -> [UInt8]? {
    let path = "/proc/\(pid)/\(name)"
    var data = readWholeProcFile(path)
    guard let d = data, d.isEmpty else { return data }
    let deadline = ContinuousClock.now.advanced(by: .seconds(2))
    var pause: UInt32 = 500
    while let d = data, d.isEmpty, ContinuousClock.now < deadline {
        // A zombie (Z) or a dead process (X) will never fill in, nor one that is gone.
        guard let state = ProcStat.read(pid: pid)?.state, state != "Z", state != "X" else { return data }
        usleep(pause)
        pause = min(pause * 2, 5_000)
        data = readWholeProcFile(path)
    }
    return data
}

/// Reads a /proc file to its end with plain read(2) calls.
func readWholeProcFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 16384)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if n == 0 { return out }
        out.append(contentsOf: buf[0..<n])
    }
}
