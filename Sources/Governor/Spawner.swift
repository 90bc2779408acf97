// Spawning children with glibc posix_spawn.
//
// Why posix_spawn rather than swift-subprocess or Foundation.Process, with the stress figures:
// docs/ARCHITECTURE.md, "Spawning children".
//
// Every child: own session (POSIX_SPAWN_SETSID, so its group id is its PID and a group signal reaches its
// descendants), empty signal mask and default dispositions, stdin from /dev/null, stdout and stderr
// appended to its log file, every other fd closed (closefrom 3), exactly the environment given, and an
// executable that is an absolute path resolved beforehand (ExecutableResolver), never a PATH search here.
// With `cgroup` set, the same child is made by clone3 straight into that cgroup2 group instead
// (CgroupSpawner.swift), so no descendant can start outside it.
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
    public var workingDirectory: String?
    /// SIGKILL the rest of the process group when the leader exits, so no descendant outlives it unnoticed.
    public var killGroupOnExit: Bool
    /// The cgroup2 group to start the child in (made if missing); nil: posix_spawn, process group only.
    public var cgroup: ProcessCgroup?

    public init(executable: String, arguments: [String] = [], argv0: String? = nil,
                environment: [String: String] = [:], logPath: String? = nil,
                workingDirectory: String? = nil, killGroupOnExit: Bool = true, cgroup: ProcessCgroup? = nil) {
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

    public var description: String {
        switch self {
        case .notAbsolute(let path):
            return "executable \"\(path)\" is not an absolute path (resolve it with ExecutableResolver first)"
        case .spawnFailed(let exe, let reason): return "cannot start \"\(exe)\": \(reason)"
        case .pidfdFailed(let pid, let reason): return "pidfd_open(\(pid)) failed: \(reason)"
        case .cgroupFailed(let cgroup, let reason): return "cannot start a child in cgroup \(cgroup): \(reason)"
        }
    }
}

public enum Spawner {
    /// Spawns the child and starts its exit monitor. `onExit` runs on the monitor thread after the reap.
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
        if let cgroup = request.cgroup { return try CgroupSpawner.spawn(request, into: cgroup, onExit: onExit) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, request.logPath ?? "/dev/null",
                                         O_WRONLY | O_APPEND | O_CREAT, 0o644)
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
        // open for writing in a child that another thread is forking at that moment, until that child
        // execs. The condition lasts microseconds; try again briefly before calling it a failure.
        var busyRetries = 0
        while rc == ETXTBSY && busyRetries < 50 {
            busyRetries += 1
            usleep(2_000)
            rc = posix_spawn(&pid, request.executable, &actions, &attributes, cArgv.pointer, cEnvp.pointer)
        }
        guard rc == 0 else {
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
