// Signals to verified processes, sent through a pidfd so a PID reused between the check and the signal can
// never be hit: the pidfd is opened first, the identity checked again while the pidfd pins the process,
// then `pidfd_send_signal` goes to exactly that process.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Governor
import Synchronization

/// Why a signal could not be sent.
public struct SignalError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A handle on one verified process: signals go to it and to no other, even if its PID is reused.
public final class ProcessHandle: @unchecked Sendable {
    public let name: String
    public let identity: ProcessIdentity
    /// The governor cgroup of the process (this deployment's), frozen by `pause`; nil: SIGSTOP/SIGCONT.
    public let cgroup: ProcessCgroup?
    private let lock = NSLock()
    private var pidfd: Int32
    private static let openPidfds = Atomic<Int>(0)
    /// pidfds held by live handles: back to its value once every handle is gone, whether its initializer
    /// threw or not (each pidfd is closed exactly once).
    public static var openPidfdCount: Int { openPidfds.load(ordering: .relaxed) }

    /// Opens a pidfd on `target`'s PID and checks, while it pins the process, that the identity still matches.
    public init(_ target: VerifiedTarget) throws(SignalError) {
        name = target.name
        identity = target.identity
        cgroup = target.cgroup
        let fd = SystemCalls.pidfdOpen(target.identity.pid)
        if fd < 0 && errno != ENOSYS {
            throw SignalError("\(target.name) (pid \(target.identity.pid)): cannot open a pidfd: \(String(cString: strerror(errno)))")
        }
        pidfd = fd
        if fd >= 0 { Self.openPidfds.add(1, ordering: .relaxed) }
        guard let now = ProcessIdentity.of(pid: target.identity.pid), now.matches(target.identity) else {
            // deinit runs for an initializer that throws after every property is set: it closes the pidfd.
            // Closing it here too would close whatever descriptor another thread had opened under that
            // number meanwhile.
            throw SignalError("\(target.name) (pid \(target.identity.pid)): no longer the verified process (it exited or the PID was reused)")
        }
    }

    deinit {
        if pidfd >= 0 {
            close(pidfd)
            Self.openPidfds.subtract(1, ordering: .relaxed)
        }
    }

    /// Sends `sig` to exactly this process.
    public func send(_ sig: Int32) throws(SignalError) {
        let (rc, e): (Int32, Int32) = lock.withLock {
            if pidfd >= 0 {
                let r = SystemCalls.pidfdSendSignal(pidfd, sig)
                return (r, errno)
            }
            // No pidfd (kernel < 5.3): check the identity right before kill(2).
            guard ProcessIdentity.of(pid: identity.pid)?.matches(identity) == true else { return (-1, ESRCH) }
            let r = kill(identity.pid, sig)
            return (r, errno)
        }
        if rc != 0 {
            let why = e == ESRCH ? "the process has exited" : String(cString: strerror(e))
            throw SignalError("\(name) (pid \(identity.pid)): \(SignalName.name(sig)) not sent: \(why)")
        }
    }

    /// Pauses the process and, in a governor cgroup, its whole tree: `cgroup.freeze` 1, returned once
    /// cgroup.events says `frozen 1`; else SIGSTOP to the process. Returns what was done.
    public func pause() throws(SignalError) -> String {
        guard let cgroup else {
            try send(SIGSTOP)
            return "SIGSTOP sent"
        }
        guard isAlive else { throw SignalError("\(name) (pid \(identity.pid)): not paused: the process has exited") }
        guard cgroup.freeze(true) else {
            cgroup.freeze(false, timeout: .seconds(1))
            throw SignalError("\(name) (pid \(identity.pid)): cgroup \(cgroup.path) did not report frozen")
        }
        return "cgroup \(cgroup.path) frozen"
    }

    /// Undoes `pause`: `cgroup.freeze` 0 (waits for `frozen 0`), or SIGCONT.
    public func resume() throws(SignalError) -> String {
        guard let cgroup else {
            try send(SIGCONT)
            return "SIGCONT sent"
        }
        guard cgroup.exists else { return "cgroup \(cgroup.path) is gone (the process exited)" }
        guard cgroup.freeze(false) else {
            throw SignalError("\(name) (pid \(identity.pid)): cgroup \(cgroup.path) did not report thawed")
        }
        return "cgroup \(cgroup.path) thawed"
    }

    /// "freeze cgroup PATH" or "SIGSTOP": what `pause` will do.
    public var pauseMethod: String { cgroup.map { "freeze cgroup \($0.path)" } ?? "send SIGSTOP" }

    /// The process state letter from /proc (`S`, `R`, `T`...), nil when it is gone or no longer this process.
    public var state: Character? {
        guard let stat = ProcStat.read(pid: identity.pid), stat.startTime == identity.startTime else { return nil }
        return stat.state
    }

    /// Whether the process is still alive (and still this one).
    public var isAlive: Bool { ProcessIdentity.of(pid: identity.pid)?.matches(identity) == true }
}
