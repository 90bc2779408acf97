// One governor per deployment: an exclusive flock(2) on `<deploymentDir>/governor.lock`, held for the
// governor's lifetime, plus `pids/governor.pid` naming the holder so a refused second governor can say who.
// The lock fd is close-on-exec, so children never inherit (and never prolong) the lock; the kernel drops
// it when the governor dies, even by SIGKILL. flock locks belong to open file descriptions, so two
// governors in one process also exclude each other.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

public final class DeploymentLock: Sendable {
    public let lockPath: String
    public let pidPath: String
    private let fd: Mutex<CInt>

    private init(lockPath: String, pidPath: String, fd: CInt) {
        self.lockPath = lockPath
        self.pidPath = pidPath
        self.fd = Mutex(fd)
    }

    /// Takes the lock or throws `GovernorError.deploymentLocked` naming the holder's PID.
    public static func acquire(deployment: String, directory: URL) throws(GovernorError) -> DeploymentLock {
        let lockPath = directory.appendingPathComponent("governor.lock").path
        let pidPath = directory.appendingPathComponent("pids/governor.pid").path
        do {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent("pids"),
                                                    withIntermediateDirectories: true)
        } catch {
            throw .lockFailed(path: lockPath, reason: "\(error)")
        }
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .lockFailed(path: lockPath, reason: SystemCalls.describe(errno)) }
        var rc: CInt
        repeat { rc = flock(fd, LOCK_EX | LOCK_NB) } while rc == -1 && errno == EINTR
        if rc != 0 {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK {
                let holder = try? PidFile.read(pidPath).pid
                throw .deploymentLocked(deployment: deployment, holderPid: holder, lockPath: lockPath)
            }
            throw .lockFailed(path: lockPath, reason: SystemCalls.describe(e))
        }
        let me = ProcessIdentity.of(pid: getpid())
        let record = me.map { PidRecord(identity: $0, name: "governor") } ?? PidRecord(pid: getpid(), name: "governor")
        do {
            try PidFile.write(record, to: pidPath)
        } catch {
            close(fd)
            throw .lockFailed(path: pidPath, reason: error.description)
        }
        return DeploymentLock(lockPath: lockPath, pidPath: pidPath, fd: fd)
    }

    public var isHeld: Bool { fd.withLock { $0 >= 0 } }

    /// Removes governor.pid and drops the lock. Idempotent.
    public func release() {
        fd.withLock { fd in
            guard fd >= 0 else { return }
            PidFile.remove(pidPath)
            flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}
