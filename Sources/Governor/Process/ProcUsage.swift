// What a process costs, read from /proc and the kernel's CPU clocks: resident memory, threads, context
// switches over all its threads, CPU time, and its children. `szbench managers` compares process managers
// (szgovernor, supervisord, circusd) with these; nothing here signals or changes a process.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The fields of /proc/PID/status (or /proc/PID/task/TID/status) the benchmarks use.
public struct ProcTaskStatus: Sendable, Equatable {
    /// VmRSS in KiB (0 for a kernel thread or a zombie, which have none).
    public var residentKiB: UInt64 = 0
    public var threads: Int = 0
    /// Of this task only: the kernel counts per task, and /proc/PID/status shows the thread-group leader's.
    public var voluntarySwitches: UInt64 = 0
    public var involuntarySwitches: UInt64 = 0

    public init(residentKiB: UInt64 = 0, threads: Int = 0, voluntarySwitches: UInt64 = 0, involuntarySwitches: UInt64 = 0) {
        self.residentKiB = residentKiB
        self.threads = threads
        self.voluntarySwitches = voluntarySwitches
        self.involuntarySwitches = involuntarySwitches
    }

    /// Parses "Key:\tvalue [kB]" lines; unknown keys are skipped. nil when no key of a live task is there.
    public static func parse(_ text: String) -> ProcTaskStatus? {
        var s = ProcTaskStatus()
        var seen = false
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            let value = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) ?? ""
            switch key {
            case "VmRSS": s.residentKiB = UInt64(value) ?? 0
            case "Threads": s.threads = Int(value) ?? 0; seen = true
            case "voluntary_ctxt_switches": s.voluntarySwitches = UInt64(value) ?? 0; seen = true
            case "nonvoluntary_ctxt_switches": s.involuntarySwitches = UInt64(value) ?? 0
            default: continue
            }
        }
        return seen ? s : nil
    }

    public static func read(_ path: String) -> ProcTaskStatus? {
        guard let bytes = readWholeProcFile(path) else { return nil }
        return parse(String(decoding: bytes, as: UTF8.self))
    }
}

public enum ProcUsage {
    /// Thread ids of `pid` (the names in /proc/PID/task).
    public static func tasks(of pid: pid_t) -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).compactMap { pid_t($0) }
    }

    /// A /proc/PID/task/TID/children text ("12 34 ") as PIDs.
    public static func parsePidList(_ text: String) -> [pid_t] {
        text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { pid_t($0) }
    }

    /// The live children of `pid`, from every one of its threads' children lists.
    public static func children(of pid: pid_t) -> [pid_t] {
        tasks(of: pid).flatMap { tid in
            readWholeProcFile("/proc/\(pid)/task/\(tid)/children").map { parsePidList(String(decoding: $0, as: UTF8.self)) } ?? []
        }
    }

    /// Voluntary and involuntary context switches of every live thread of `pid`, by thread id (the kernel
    /// counts per thread; a thread's counts go when it ends, so compare windows thread by thread).
    public static func contextSwitchesByThread(of pid: pid_t) -> [pid_t: (voluntary: UInt64, involuntary: UInt64)] {
        var out: [pid_t: (voluntary: UInt64, involuntary: UInt64)] = [:]
        for tid in tasks(of: pid) {
            guard let s = ProcTaskStatus.read("/proc/\(pid)/task/\(tid)/status") else { continue }
            out[tid] = (s.voluntarySwitches, s.involuntarySwitches)
        }
        return out
    }

    /// CPU time (user + system, every thread, dead ones included) of `pid` in nanoseconds, from its CPU clock.
    public static func cpuNanoseconds(of pid: pid_t) -> UInt64? {
        var clock = clockid_t()
        guard clock_getcpuclockid(pid, &clock) == 0 else { return nil }
        var ts = timespec()
        guard clock_gettime(clock, &ts) == 0 else { return nil }
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
