// One spawned child: its pidfd, the wait for its exit, and signalling that cannot hit a reused PID.
//
// Exit monitoring. The child's pidfd is registered with the governor's event loop (EventLoop.swift): it
// becomes readable the moment the child dies; no thread per child, no polling, no SIGCHLD handler. The
// loop thread then, under the child's lock:
//   1. SIGKILLs what is left of the child's process group (when `killGroupOnExit`), while the leader is
//      still an unreaped zombie, so the group id cannot have been reused, and, when the child was started
//      in a cgroup (ProcessTree.swift), everything in that group (`cgroup.kill`: setsid escapees too);
//   2. reaps the zombie (`waitid(P_PIDFD, WEXITED)`), marks the child exited, closes the pidfd;
// and after the lock, when the cgroup still reports `populated 1`, hands the wait for `populated 0` and its
// removal (at most 10 s) to the BlockingPool (an emptied group is removed on the loop at once), then resumes
// every task waiting in `waitForExit()` and calls `onExit`: "exited" means the whole tree is gone.
//
// Lock: `state` (a Mutex) is a leaf lock: nothing else is locked while holding it and no callback runs
// under it. `signal`/`signalGroup` check "not reaped" under the same lock, so a signal is only ever sent
// while the PID (and the group id equal to it) still belongs to this child.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

public final class ChildProcess: Sendable, CustomStringConvertible {
    public let pid: pid_t
    /// The process group (and session) id: equal to `pid`, the child leads its own group.
    public let processGroup: pid_t
    /// The identity read right after exec (start time and executable): what PID files record.
    public let identity: ProcessIdentity?
    public let spawnedAt: ContinuousClock.Instant
    /// The cgroup2 group the child was started in (nil: process-group mode).
    public let cgroup: ProcessCgroup?

    private struct State {
        var exit: ExitStatus?
        var exitedAt: ContinuousClock.Instant?
        var reaped = false
        /// Reaped, and the cgroup (if any) empty and removed: what `waitForExit` waits for.
        var settled = false
        var waiters: [UInt64: CheckedContinuation<ExitStatus?, Never>] = [:]
        var cancelled: Set<UInt64> = []
        var nextWaiter: UInt64 = 0
    }

    private let pidfd: CInt
    private let killGroupOnExit: Bool
    private let state = Mutex(State())
    private let onExit: (@Sendable (ChildProcess, ExitStatus) -> Void)?

    init(pid: pid_t, pidfd: CInt, killGroupOnExit: Bool, cgroup: ProcessCgroup? = nil,
         onExit: (@Sendable (ChildProcess, ExitStatus) -> Void)?) {
        self.pid = pid
        self.cgroup = cgroup
        self.processGroup = pid
        self.pidfd = pidfd
        self.killGroupOnExit = killGroupOnExit
        self.onExit = onExit
        self.spawnedAt = .now
        self.identity = ProcessIdentity.of(pid: pid)
        let loop = EventLoop.shared
        // Stored under the lock `exited()` takes first, so an exit seen at once still finds the token.
        let token = watchToken.withLock { t in
            t = loop.watch(pidfd, events: Epoll.inEvent) { [self] _ in self.exited() }
            return t
        }
        if token == nil {
            // epoll refused the pidfd (max_user_watches): wait on a thread of the pool instead.
            BlockingPool.shared.submit { [self] in
                var info = siginfo_t()
                while waitid(P_PIDFD, id_t(pidfd), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
                loop.post { self.exited() }
            }
        }
    }

    private let watchToken = Mutex<EventLoop.Token?>(nil)

    public var description: String { "pid \(pid)" }

    /// The exit status once the child has been reaped; nil while it runs.
    public var exitStatus: ExitStatus? { state.withLock { $0.exit } }
    /// When the event loop saw the exit (monotonic).
    public var exitedAt: ContinuousClock.Instant? { state.withLock { $0.exitedAt } }
    public var hasExited: Bool { state.withLock { $0.reaped } }

    /// Sends `signal` to the child only. Returns false if it has already exited.
    @discardableResult
    public func signal(_ signal: CInt) -> Bool {
        state.withLock { s in
            guard !s.reaped else { return false }
            return SystemCalls.pidfdSendSignal(pidfd, signal) == 0
        }
    }

    /// Sends `signal` to the child's whole process group. Returns false if the leader has been reaped.
    @discardableResult
    public func signalGroup(_ signal: CInt) -> Bool {
        state.withLock { s in
            guard !s.reaped else { return false }
            return kill(-processGroup, signal) == 0
        }
    }

    /// Sends `signal` to the whole tree, once per process: the process group and, in cgroup mode, every
    /// other process in the cgroup (a descendant that left the group with setsid). Returns false if the
    /// leader has been reaped.
    @discardableResult
    public func signalTree(_ signal: CInt) -> Bool {
        state.withLock { s in
            guard !s.reaped else { return false }
            let sent = kill(-processGroup, signal) == 0
            cgroup?.signalAll(signal, exceptGroup: processGroup)
            return sent
        }
    }

    /// SIGKILL to the whole tree: the process group while the leader is not reaped, and the cgroup
    /// (`cgroup.kill`, safe at any time: a cgroup's members cannot be another deployment's).
    public func killTree() {
        state.withLock { s in
            if !s.reaped { _ = kill(-processGroup, SIGKILL) }
        }
        cgroup?.kill()
    }

    /// Suspends until the child has exited and been reaped. Returns nil only if the task is cancelled first.
    public func waitForExit() async -> ExitStatus? {
        let id: UInt64 = state.withLock { s in s.nextWaiter += 1; return s.nextWaiter }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ExitStatus?, Never>) in
                enum Outcome { case done(ExitStatus), cancelled, waiting }
                let outcome: Outcome = state.withLock { s in
                    if let exit = s.exit, s.settled { return .done(exit) }
                    if s.cancelled.remove(id) != nil { return .cancelled }
                    s.waiters[id] = continuation
                    return .waiting
                }
                switch outcome {
                case .done(let exit): continuation.resume(returning: exit)
                case .cancelled: continuation.resume(returning: nil)
                case .waiting: break
                }
            }
        } onCancel: {
            let waiter: CheckedContinuation<ExitStatus?, Never>? = state.withLock { s in
                if let w = s.waiters.removeValue(forKey: id) { return w }
                if !s.settled { s.cancelled.insert(id) }
                return nil
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Waits at most `timeout` for the exit. nil when the child still runs at the deadline.
    public func waitForExit(timeout: Duration) async -> ExitStatus? {
        if let exit = state.withLock({ $0.settled ? $0.exit : nil }) { return exit }
        return await withTaskGroup(of: ExitStatus?.self) { group in
            group.addTask { await self.waitForExit() }
            group.addTask {
                try? await EventLoop.shared.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? state.withLock { $0.settled ? $0.exit : nil }
        }
    }

    /// On the loop thread, when the pidfd is readable (the child has exited).
    private func exited() {
        var info = siginfo_t()
        var rc: CInt
        repeat {
            rc = waitid(P_PIDFD, id_t(pidfd), &info, WEXITED | WNOWAIT | WNOHANG)
        } while rc == -1 && errno == EINTR
        if rc == 0 && info._sifields._sigchld.si_pid == 0 { return }  // not waitable yet: the pidfd stays watched
        if let token = watchToken.withLock({ $0 }) { EventLoop.shared.unwatch(token) }
        let seenAt = ContinuousClock.now
        let status: ExitStatus = rc == 0 ? ExitStatus(siginfo: info) : .signaled(signal: 0, coreDumped: false)

        state.withLock { s in
            if killGroupOnExit {
                _ = kill(-processGroup, SIGKILL)
                cgroup?.kill()
            }
            var reapInfo = siginfo_t()
            var r: CInt
            repeat { r = waitid(P_PIDFD, id_t(pidfd), &reapInfo, WEXITED) } while r == -1 && errno == EINTR
            close(pidfd)
            s.exit = status
            s.exitedAt = seenAt
            s.reaped = true
        }
        if killGroupOnExit, let cgroup {
            if !cgroup.isPopulated {
                cgroup.remove()
            } else {
                // SIGKILL cannot be ignored: only a process in uninterruptible sleep delays this. A group that
                // is still populated at the deadline stays, and goes with the deployment's group.
                BlockingPool.shared.submit { [self] in
                    if cgroup.waitUntilEmpty(timeout: .seconds(10)) { cgroup.remove() }
                    settle(status)
                }
                return
            }
        }
        settle(status)
    }

    private func settle(_ status: ExitStatus) {
        let waiters: [CheckedContinuation<ExitStatus?, Never>] = state.withLock { s in
            s.settled = true
            let all = Array(s.waiters.values)
            s.waiters.removeAll()
            s.cancelled.removeAll()
            return all
        }
        for w in waiters { w.resume(returning: status) }
        onExit?(self, status)
    }
}
