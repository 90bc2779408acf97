// Spawning children with glibc posix_spawn.
//
// Why posix_spawn rather than swift-subprocess or Foundation.Process, with the stress figures:
// docs/ARCHITECTURE.md, "Spawning children".
//
// Every child: own session (POSIX_SPAWN_SETSID, so its group id is its PID and a group signal reaches its
// descendants), empty signal mask and default dispositions, stdin from /dev/null, stdout and stderr
// to its log (through a pipe to the log pump, which rotates the file, when `logRotation` is set; else
// appended to the file directly), every other fd closed (closefrom 3), exactly the environment given, and an
// executable that is an absolute path resolved beforehand (ExecutableResolver), never a PATH search here.
// With `cgroup` set, the same child is made by clone3 straight into that cgroup2 group instead
// (CgroupSpawner.swift), so no descendant can start outside it; with `deathSignal` set (posix_spawn cannot
// set a parent-death signal), by the same C child without a cgroup (clone with CLONE_VM | CLONE_VFORK).
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// What to spawn, fully resolved.
public struct SpawnRequest: Sendable, Hashable {
    /// Absolute path of the program.
    public var executable: String
    /// Arguments after argv[0].
    public var arguments: [String]
    /// argv[0]; defaults to `executable`.
    public var argv0: String?
    /// The complete environment of the child (nothing is inherited implicitly).
    public var environment: [String: String]
    /// stdout and stderr are appended here (created with mode 0644); nil sends them to /dev/null.
    public var logPath: String?
    /// With a `logPath`: the child writes into a pipe and the log pump writes and rotates the file
    /// (LogPump.swift). nil: the child appends to the file itself (the detached governor's own log).
    public var logRotation: LogRotation?
    public var workingDirectory: String?
    /// SIGKILL the rest of the process group when the leader exits, so no descendant outlives it unnoticed.
    public var killGroupOnExit: Bool
    /// The cgroup2 group to start the child in (made if missing); nil: posix_spawn, process group only.
    public var cgroup: ProcessCgroup?
    /// `PR_SET_PDEATHSIG` of the child: the signal it gets when the thread that spawned it ends. Only right
    /// when that thread lives as long as the process: the governor spawns on its event loop
    /// (`EventLoop.shared.perform`). nil: none (the detached governor outlives the CLI that starts it).
    public var deathSignal: CInt?
    /// How long a spawn retries, sleeping, while the executable is still open for writing (ETXTBSY), before
    /// it throws `SpawnError.textBusy`. `.zero`: not at all, for a caller that must not block, such as the
    /// event loop, which waits with a timer between attempts instead (ManagedProcess).
    public var textBusyPatience: Duration = Spawner.textBusyPatience

    public init(executable: String, arguments: [String] = [], argv0: String? = nil,
                environment: [String: String] = [:], logPath: String? = nil,
                workingDirectory: String? = nil, killGroupOnExit: Bool = true, logRotation: LogRotation? = nil,
                cgroup: ProcessCgroup? = nil, deathSignal: CInt? = nil) {
        self.deathSignal = deathSignal
        self.logRotation = logRotation
        self.cgroup = cgroup
        self.executable = executable
        self.arguments = arguments
        self.argv0 = argv0
        self.environment = environment
        self.logPath = logPath
        self.workingDirectory = workingDirectory
        self.killGroupOnExit = killGroupOnExit
    }
}

public enum SpawnError: Error, Equatable, CustomStringConvertible {
    case notAbsolute(String)
    case spawnFailed(executable: String, reason: String)
    case pidfdFailed(pid: pid_t, reason: String)
    /// The cgroup could not be made or entered; nothing was started (the caller may fall back).
    case cgroupFailed(cgroup: String, reason: String)
    /// The executable was still open for writing (ETXTBSY) after the request's `textBusyPatience`.
    case textBusy(executable: String)

    public var description: String {
        switch self {
        case .notAbsolute(let path):
            return "executable \"\(path)\" is not an absolute path (resolve it with ExecutableResolver first)"
        case .spawnFailed(let exe, let reason): return "cannot start \"\(exe)\": \(reason)"
        case .pidfdFailed(let pid, let reason): return "pidfd_open(\(pid)) failed: \(reason)"
        case .cgroupFailed(let cgroup, let reason): return "cannot start a child in cgroup \(cgroup): \(reason)"
        case .textBusy(let exe): return "cannot start \"\(exe)\": \(SystemCalls.describe(ETXTBSY))"
        }
    }
}

public enum Spawner {
    /// How long a spawn keeps trying an executable that is busy being written (ETXTBSY) before it fails.
    public static let textBusyPatience: Duration = .seconds(1)

    /// Spawns the child and watches its exit on the event loop. `onExit` runs on the loop thread (a pool thread
    /// when its cgroup took time to empty) after the reap.
    public static func spawn(_ request: SpawnRequest,
                             onExit: (@Sendable (ChildProcess, ExitStatus) -> Void)? = nil) throws -> ChildProcess {
        guard request.executable.hasPrefix("/") else { throw SpawnError.notAbsolute(request.executable) }

        if let log = request.logPath {
            let folder = (log as NSString).deletingLastPathComponent
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw SpawnError.spawnFailed(executable: request.executable,
                                             reason: "cannot create log folder \(folder): \(error)")
            }
        }
        if request.cgroup != nil || request.deathSignal != nil {
            return try CgroupSpawner.spawn(request, into: request.cgroup, onExit: onExit)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // A pumped log: the write end of a close-on-exec pipe becomes the child's 1 and 2 (dup2 clears
        // close-on-exec on the copies); the governor closes its own copy right after the spawn (and if the
        // spawn fails, the pump then sees EOF and lets the read end go). Without a pump (no epoll), the
        // child appends to the file itself.
        var pipe: (read: CInt, write: CInt)?
        if let log = request.logPath, let rotation = request.logRotation {
            pipe = LogPump.shared.openPipe(logPath: log, rotation: rotation)
        }
        defer { if let pipe { close(pipe.write) } }
        if let pipe {
            posix_spawn_file_actions_adddup2(&actions, pipe.write, 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, request.logPath ?? "/dev/null",
                                             O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0o644)
        }
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        _ = SystemCalls.addCloseFrom(&actions, 3)
        if let dir = request.workingDirectory, !SystemCalls.addChdir(&actions, dir) {
            throw SpawnError.spawnFailed(executable: request.executable,
                                         reason: "posix_spawn_file_actions_addchdir_np is unavailable")
        }

        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes,
                                 SpawnFlags.setSession | SpawnFlags.setSignalMask | SpawnFlags.setSignalDefaults)

        let argv = [request.argv0 ?? request.executable] + request.arguments
        let envp = request.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let cArgv = CStringArray(argv)
        let cEnvp = CStringArray(envp)
        defer { cArgv.free(); cEnvp.free() }

        var pid: pid_t = 0
        var rc = posix_spawn(&pid, request.executable, &actions, &attributes, cArgv.pointer, cEnvp.pointer)
        // ETXTBSY: an executable that was just written (a deployment's script, a fresh build) can still be
        // open for writing: in the writer, or in a child another thread forked while the writer's descriptor
        // was open, until that child execs (or, without close-on-exec, for its whole life). It usually lasts
        // microseconds, but a child descheduled between fork and exec on a saturated machine held it past the
        // 100 ms this loop used to allow. Try again with backoff for up to `Self.textBusyPatience`.
        if rc == ETXTBSY {
            let deadline = ContinuousClock.now.advanced(by: request.textBusyPatience)
            var pause: UInt32 = 1_000
            while rc == ETXTBSY && ContinuousClock.now < deadline {
                usleep(pause)
                pause = min(pause * 2, 50_000)
                rc = posix_spawn(&pid, request.executable, &actions, &attributes, cArgv.pointer, cEnvp.pointer)
            }
        }
        guard rc == 0 else {
            if rc == ETXTBSY { throw SpawnError.textBusy(executable: request.executable) }
            throw SpawnError.spawnFailed(executable: request.executable, reason: SystemCalls.describe(rc))
        }
        let pidfd = SystemCalls.pidfdOpen(pid)
        guard pidfd >= 0 else {
            let reason = SystemCalls.describe(errno)
            kill(-pid, SIGKILL)
            var status: CInt = 0
            waitpid(pid, &status, 0)
            throw SpawnError.pidfdFailed(pid: pid, reason: reason)
        }
        return ChildProcess(pid: pid, pidfd: pidfd, killGroupOnExit: request.killGroupOnExit, onExit: onExit)
    }
}

/// A NULL-terminated char*[] built with strdup; `free()` releases it.
struct CStringArray {
    let pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointer = .allocate(capacity: strings.count + 1)
        for (i, s) in strings.enumerated() { pointer[i] = strdup(s) }
        pointer[strings.count] = nil
    }

    func free() {
        for i in 0..<count { Glibc.free(pointer[i]) }
        pointer.deallocate()
    }
}
