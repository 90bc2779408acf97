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
        // The folder and pids/, logs/, run/: real directories, ours, 0700 (whatever the umask), before the
        // lock file is made in it; the lock itself is 0600 and never opened through a symbolic link, so no
        // other user can hold (or share) it.
        try DeploymentFolder.prepare(directory.path)
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, DeploymentLock.fileMode)
        guard fd >= 0 else {
            let e = errno
            if e == ELOOP { throw .unsafePath(path: lockPath, reason: DeploymentFolder.symlinkReason) }
            throw .lockFailed(path: lockPath, reason: SystemCalls.describe(e))
        }
        var st = stat()
        if fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG || st.st_uid != geteuid() {
            close(fd)
            throw .unsafePath(path: lockPath, reason: "it is not a regular file of this user")
        }
        if st.st_mode & 0o7777 != DeploymentLock.fileMode, fchmod(fd, DeploymentLock.fileMode) != 0 {
            let e = errno
            close(fd)
            throw .lockFailed(path: lockPath, reason: "cannot make it 0600: \(SystemCalls.describe(e))")
        }
        var rc: CInt = 0
        var lockErrno: CInt = 0
        func tryLock() {
            repeat { rc = flock(fd, LOCK_EX | LOCK_NB); lockErrno = errno } while rc == -1 && lockErrno == EINTR
        }
        tryLock()
        if rc != 0, lockErrno == EWOULDBLOCK, let holder = try? PidFile.read(pidPath).pid,
           holder > 0, ProcStat.read(pid: holder).map({ $0.state == "Z" || $0.state == "X" }) ?? true {
            // The governor the PID file names has died (gone, or a zombie) but the lock is still held: a
            // governor killed a moment ago is still exiting, its last threads hold the descriptor, and the lock
            // goes with them (seen after `kill -9`: its group leader was a zombie while a thread still ran).
            // Wait for it, briefly, instead of calling a dead governor the holder.
            let deadline = ContinuousClock.now + DeploymentLock.dyingHolderPatience
            while rc != 0 && ContinuousClock.now < deadline {
                usleep(10_000)
                tryLock()
                if rc != 0 && lockErrno != EWOULDBLOCK { break }
            }
        }
        if rc != 0 {
            let e = lockErrno
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

    /// How long `acquire` waits for the lock of a governor that is dead but still exiting.
    public static let dyingHolderPatience: Duration = .seconds(3)

    public var isHeld: Bool { fd.withLock { $0 >= 0 } }

    /// Whether some process holds the lock file at `path` now (a try-lock that is let go at once). Opened
    /// read-only and never through a symlink; a missing file is no lock.
    public static func isHeld(at path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return errno == EWOULDBLOCK
    }

    /// The lock file's mode: owner read and write only.
    public static let fileMode: mode_t = 0o600

    /// Whether process `pid` really holds an exclusive flock on the file at `lockPath`: one of its
    /// descriptors (/proc/PID/fd) is that file (same device and inode) and the kernel lists a FLOCK WRITE
    /// lock on it (/proc/PID/fdinfo/N, `lock:` lines). The deployment marker of the governor itself: a
    /// forged governor.pid naming another process fails it.
    public static func isHeld(by pid: pid_t, lockPath: String) -> Bool {
        var lockStat = stat()
        guard pid > 0, lstat(lockPath, &lockStat) == 0, (lockStat.st_mode & S_IFMT) == S_IFREG else { return false }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        for n in fds {
            var st = stat()
            guard stat("/proc/\(pid)/fd/\(n)", &st) == 0, st.st_dev == lockStat.st_dev, st.st_ino == lockStat.st_ino,
                  let info = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(n)", encoding: .utf8) else { continue }
            let held = info.split(separator: "\n").contains { line in
                line.hasPrefix("lock:") && !line.contains("->") && line.contains("FLOCK") && line.contains("WRITE")
            }
            if held { return true }
        }
        return false
    }

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
