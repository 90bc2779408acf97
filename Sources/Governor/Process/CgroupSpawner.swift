// Spawner's cgroup path: the child made by clone3(CLONE_VFORK | CLONE_INTO_CGROUP | CLONE_PIDFD) straight
// into its cgroup2 group (Sources/CSystem), so it and everything it forks are members from the first
// instruction: no window in which a descendant could start outside the group. The child's setup mirrors
// Spawner's posix_spawn file actions and attributes exactly and takes the same inputs (SpawnRequest):
// own session, default dispositions, empty mask, stdin /dev/null, stdout and stderr appended to the log
// (or dup2'ed from a descriptor), every other fd closed, chdir, execve of the absolute executable with
// exactly the given environment. Why not posix_spawn and a write to cgroup.procs: docs/ARCHITECTURE.md.
// Without a cgroup (nil), the same child made by glibc's clone(CLONE_VM | CLONE_VFORK) outside any new
// group: the path of a child that needs a parent-death signal (`SpawnRequest.deathSignal`), which
// posix_spawn has no attribute for.
#if canImport(Glibc)
import Glibc
#endif
import CSystem
import Foundation

enum CgroupSpawner {
    static func spawn(_ request: SpawnRequest, into cgroup: ProcessCgroup?,
                      onExit: (@Sendable (ChildProcess, ExitStatus) -> Void)?) throws -> ChildProcess {
        var dirfd: CInt = -1
        if let cgroup {
            do {
                try cgroup.create()
            } catch {
                throw SpawnError.cgroupFailed(cgroup: cgroup.path, reason: error.description)
            }
            dirfd = cgroup.openDirectory()
            guard dirfd >= 0 else {
                throw SpawnError.cgroupFailed(cgroup: cgroup.path, reason: "open: \(SystemCalls.describe(errno))")
            }
        }
        defer { if dirfd >= 0 { close(dirfd) } }

        let argv = [request.argv0 ?? request.executable] + request.arguments
        let envp = request.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let cArgv = CStringArray(argv)
        let cEnvp = CStringArray(envp)
        defer { cArgv.free(); cEnvp.free() }

        // A pumped log, as in Spawner: the pipe's write end becomes the child's 1 and 2; ours is closed after.
        var pipe: (read: CInt, write: CInt)?
        if let log = request.logPath, let rotation = request.logRotation {
            pipe = LogPump.shared.openPipe(logPath: log, rotation: rotation)
        }
        defer { if let pipe { close(pipe.write) } }
        let stdoutFD = pipe?.write ?? -1

        var pid: pid_t = -1
        var pidfd: CInt = -1
        var code: CInt = 0
        var inChild: CInt = 0
        func attempt() {
            request.executable.withCString { exe in
                withOptionalCString(request.logPath) { log in
                    withOptionalCString(request.workingDirectory) { dir in
                        var r = sz_spawn_request(executable: exe, argv: UnsafePointer(cArgv.pointer),
                                                 envp: UnsafePointer(cEnvp.pointer), stdout_fd: stdoutFD, stdout_path: log,
                                                 working_directory: dir, cgroup_fd: dirfd,
                                                 death_signal: request.deathSignal ?? 0)
                        pid = sz_spawn_into_cgroup(&r, &pidfd, &code, &inChild)
                    }
                }
            }
        }
        attempt()
        // ETXTBSY: as in Spawner (an executable just written may still be open for writing in a child another
        // thread is forking); here it comes back from the child's execve.
        if pid < 0 && inChild == 1 && code == ETXTBSY {
            let deadline = ContinuousClock.now.advanced(by: request.textBusyPatience)
            var pause: UInt32 = 1_000
            while pid < 0 && inChild == 1 && code == ETXTBSY && ContinuousClock.now < deadline {
                usleep(pause)
                pause = min(pause * 2, 50_000)
                attempt()
            }
        }
        guard pid > 0 else {
            cgroup?.remove()
            if inChild == 0 {
                guard let cgroup else {
                    throw SpawnError.spawnFailed(executable: request.executable, reason: "clone: \(SystemCalls.describe(code))")
                }
                throw SpawnError.cgroupFailed(cgroup: cgroup.path, reason: "clone3: \(SystemCalls.describe(code))")
            }
            if code == ETXTBSY { throw SpawnError.textBusy(executable: request.executable) }
            throw SpawnError.spawnFailed(executable: request.executable, reason: SystemCalls.describe(code))
        }
        return ChildProcess(pid: pid, pidfd: pidfd, killGroupOnExit: request.killGroupOnExit, cgroup: cgroup,
                            onExit: onExit)
    }

    private static func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
        guard let s else { return body(nil) }
        return s.withCString { body($0) }
    }
}
