import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_Spawner {
    let dir = TemporaryDirectory()
    let tracker = ProcessTracker()
    let probe: ProbeGroup

    init() { probe = ProbeGroup(folder: dir.path) }

    /// Through posix_spawn, clone3 into a cgroup, or clone(CLONE_VM) with a parent-death signal (the same inputs, the
    /// same child: CgroupSpawner); the last on the event loop's thread, as the governor does.
    func spawn(_ path: SpawnPath, _ script: String, env: [String: String] = [:], log: String = "child.log") async throws -> ChildProcess {
        let request = SpawnRequest(
            executable: "/bin/sh", arguments: ["-c", script], environment: env,
            logPath: dir.appending(log).path, cgroup: probe.cgroup(for: path),
            deathSignal: path == .deathSignal ? SIGTERM : nil)
        let child = path == .deathSignal ? try await EventLoop.shared.perform { try Spawner.spawn(request) }
                                         : try Spawner.spawn(request)
        tracker.track(child.pid)
        return child
    }

    @Test(arguments: SpawnPath.allCases) func exitCodeIsReportedAtOnce(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let child = try await spawn(path, "exit 3")
        let status = await child.waitForExit(timeout: .seconds(30))
        #expect(status == .exited(code: 3))
        #expect(child.hasExited)
    }

    @Test(arguments: SpawnPath.allCases) func killSignalIsReported(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let child = try await spawn(path, "exec /bin/sleep 300")
        #expect(child.signal(SIGKILL))
        let status = await child.waitForExit(timeout: .seconds(30))
        #expect(status == .signaled(signal: SIGKILL, coreDumped: false))
        #expect(child.signal(SIGKILL) == false, "a reaped child must not be signalled again")
    }

    @Test(arguments: SpawnPath.allCases) func childLeadsItsOwnSessionAndGroup(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let child = try await spawn(path, "exec /bin/sleep 300")
        let stat = try #require(ProcStat.read(pid: child.pid))
        #expect(stat.processGroup == child.pid)
        #expect(stat.session == child.pid)
        #expect(stat.processGroup != getpgrp())
        child.signalGroup(SIGKILL)
        _ = await child.waitForExit(timeout: .seconds(30))
    }

    @Test(arguments: SpawnPath.allCases) func groupSignalKillsTheGrandchildToo(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let pidFile = dir.appending("grandchild.pid").path
        let child = try await spawn(path, "/bin/sleep 300 & echo $! > \(pidFile).tmp; mv \(pidFile).tmp \(pidFile); wait")
        try await waitUntil("the grandchild's pid file") { FileManager.default.fileExists(atPath: pidFile) }
        let grandchild = try #require(pid_t(try String(contentsOfFile: pidFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        tracker.track(grandchild)
        #expect(LiveProcess.isAlive(grandchild))
        #expect(child.signalGroup(SIGTERM))
        #expect(await child.waitForExit(timeout: .seconds(30)) != nil)
        try await waitUntil("the grandchild \(grandchild) to die with its group") { !LiveProcess.isAlive(grandchild) }
    }

    @Test(arguments: SpawnPath.allCases) func leaderExitTakesItsGroupAlong(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let pidFile = dir.appending("orphan.pid").path
        // The shell starts a background sleep and exits at once: the sleep must not outlive it.
        let child = try await spawn(path, "/bin/sleep 300 & echo $! > \(pidFile).tmp; mv \(pidFile).tmp \(pidFile); exit 0")
        _ = await child.waitForExit(timeout: .seconds(30))
        let orphan = try #require(pid_t(try String(contentsOfFile: pidFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        tracker.track(orphan)
        try await waitUntil("the orphan \(orphan) to die with its leader") { !LiveProcess.isAlive(orphan) }
    }

    @Test(arguments: SpawnPath.allCases) func outputIsAppendedToTheLog(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        for word in ["first", "second"] {
            let child = try await spawn(path, "echo \(word); echo \(word)-err >&2")
            #expect(await child.waitForExit(timeout: .seconds(30)) == .exited(code: 0))
        }
        let log = try String(contentsOf: dir.appending("child.log"), encoding: .utf8)
        #expect(log == "first\nfirst-err\nsecond\nsecond-err\n")
    }

    @Test(arguments: SpawnPath.allCases) func environmentIsExactlyTheOneGiven(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let child = try await spawn(path, "env", env: ["ONLY_THIS": "yes", "PATH": "/usr/bin:/bin"])
        #expect(await child.waitForExit(timeout: .seconds(30)) == .exited(code: 0))
        let lines = try String(contentsOf: dir.appending("child.log"), encoding: .utf8)
            .split(separator: "\n").map(String.init).filter { !$0.hasPrefix("PWD=") && !$0.hasPrefix("SHLVL=") && !$0.hasPrefix("_=") }
        #expect(lines.sorted() == ["ONLY_THIS=yes", "PATH=/usr/bin:/bin"])
    }

    @Test(arguments: SpawnPath.allCases) func stdinIsDevNullAndNoOtherFdIsInherited(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let child = try await spawn(path, "ls /proc/$$/fd; readlink /proc/$$/fd/0")
        #expect(await child.waitForExit(timeout: .seconds(30)) == .exited(code: 0))
        let lines = try String(contentsOf: dir.appending("child.log"), encoding: .utf8).split(separator: "\n")
        #expect(Array(lines.prefix(3)) == ["0", "1", "2"])
        #expect(lines.last == "/dev/null")
    }

    @Test(arguments: SpawnPath.allCases) func signalMaskAndDispositionsAreClean(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        // Block SIGUSR2 on this thread and ignore it process-wide while spawning: the child inherits neither.
        var block = sigset_t(), previousMask = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGUSR2)
        pthread_sigmask(SIG_BLOCK, &block, &previousMask)
        let previousHandler = Glibc.signal(SIGUSR2, SIG_IGN)
        let child: ChildProcess
        do {
            defer {
                Glibc.signal(SIGUSR2, previousHandler)
                pthread_sigmask(SIG_SETMASK, &previousMask, nil)
            }
            child = try await spawn(path, "exec /bin/grep -E '^(SigBlk|SigIgn)' /proc/self/status")
        }
        #expect(await child.waitForExit(timeout: .seconds(30)) == .exited(code: 0))
        let log = try String(contentsOf: dir.appending("child.log"), encoding: .utf8)
        #expect(log.contains("SigBlk:\t0000000000000000"))
        // Signals 32 and 33 are glibc's own (thread cancellation, setxid) and cannot be reset through libc.
        let ignored = log.split(separator: "\n").first { $0.hasPrefix("SigIgn:") }
            .flatMap { UInt64($0.dropFirst("SigIgn:".count).trimmingCharacters(in: .whitespaces), radix: 16) }
        #expect(ignored.map { $0 & 0x7fff_ffff } == 0, "no standard signal may be ignored in the child")
    }

    @Test func relativeExecutableIsRefused() throws {
        #expect(throws: SpawnError.notAbsolute("sleep")) {
            try Spawner.spawn(SpawnRequest(executable: "sleep"))
        }
    }

    @Test(arguments: SpawnPath.allCases) func missingExecutableNamesIt(_ path: SpawnPath) throws {
        let error = #expect(throws: SpawnError.self) {
            try Spawner.spawn(SpawnRequest(executable: "/nonexistent/szmock", cgroup: probe.cgroup(for: path),
                                           deathSignal: path == .deathSignal ? SIGTERM : nil))
        }
        #expect("\(error!)".contains("/nonexistent/szmock"))
    }

    @Test(arguments: SpawnPath.allCases) func identityIsReadAfterExec(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let request = SpawnRequest(executable: "/bin/sleep", arguments: ["300"], cgroup: probe.cgroup(for: path),
                                   deathSignal: path == .deathSignal ? SIGTERM : nil)
        let child = try await EventLoop.shared.perform { try Spawner.spawn(request) }
        tracker.track(child.pid)
        let identity = try #require(child.identity)
        #expect(identity.executable == "/usr/bin/sleep" || identity.executable == "/bin/sleep")
        #expect(identity.matches(try #require(ProcessIdentity.of(pid: child.pid))))
        child.signalGroup(SIGKILL)
        _ = await child.waitForExit(timeout: .seconds(30))
    }

    @Test func aCgroupChildIsInItsGroupFromTheStartAndTakesASetsidGrandchildAlong() async throws {
        defer { tracker.killAll() }
        guard let cgroup = probe.cgroup(for: .cgroup) else { return }  // no cgroup on this machine
        let pidFile = dir.appending("escapee.pid").path
        let script = "cat /proc/self/cgroup; setsid /bin/sleep 300 & echo $! > \(pidFile).tmp; mv \(pidFile).tmp \(pidFile); exec /bin/sleep 300"
        let child = try Spawner.spawn(SpawnRequest(executable: "/bin/sh", arguments: ["-c", script],
                                                   logPath: dir.appending("child.log").path, cgroup: cgroup))
        tracker.track(child.pid)
        try await waitUntil("the escapee's pid file") { FileManager.default.fileExists(atPath: pidFile) }
        let escapee = try #require(pid_t(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        tracker.track(escapee)
        #expect(child.cgroup == cgroup)
        #expect(ProcessTree.cgroup(of: escapee) == cgroup.path, "forked inside the group, it stays there")
        // `$!` is known before the escapee's own setsid has run: wait for it (it used to be read at once).
        try await waitUntil("the escapee to leave the child's process group") { LiveProcess.processGroup(of: escapee) != child.pid }
        let log = try String(contentsOf: dir.appending("child.log"), encoding: .utf8)
        #expect(log.contains("0::/" + ProcessTree.topGroup + "/"), "\(log)")
        // The shell's helpers (cat, mv) are in the group too until they have exited: seen once under load,
        // a third PID read right after the PID file appeared.
        try await waitUntil("the group to hold the child and the escapee only (\(cgroup.processes))") {
            Set(cgroup.processes) == [child.pid, escapee]
        }
        // The leader dies: what is left in its cgroup goes before the exit is reported, then the group.
        #expect(child.signal(SIGKILL))
        #expect(await child.waitForExit(timeout: .seconds(30)) != nil)
        #expect(!LiveProcess.isAlive(escapee))
        #expect(!cgroup.exists, "the process cgroup is removed once empty")
    }
}

enum SpawnPath: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case posixSpawn = "posix_spawn", cgroup = "clone3 into a cgroup", deathSignal = "clone with a parent-death signal"
    var testDescription: String { rawValue }
}

/// A deployment cgroup for the spawner tests, made on first use (nil where no cgroup can be made) and
/// removed, with whatever is left in it, when the suite instance goes.
final class ProbeGroup: @unchecked Sendable {
    private let folder: String
    private let lock = NSLock()
    private var mode: ProcessTreeMode?
    private var count = 0

    init(folder: String) { self.folder = folder }

    /// A fresh process cgroup in the probe's deployment group for `.cgroup`, nil for `.posixSpawn`.
    func cgroup(for path: SpawnPath) -> ProcessCgroup? {
        guard path == .cgroup else { return nil }
        return lock.withLock {
            if mode == nil { mode = ProcessTree.prepare(name: "spawner", folder: folder, environment: [:]) }
            guard case .cgroup(let group)? = mode else { return nil }
            count += 1
            return ProcessCgroup(path: group + "/p\(count)")
        }
    }

    deinit {
        if case .cgroup(let group)? = mode { ProcessTree.removeDeploymentGroup(group, timeout: .seconds(5)) }
    }
}

/// A stop sent SIGTERM twice to a child in cgroup mode (once through its process group, once as a member of
/// its cgroup). Many programs take a second SIGTERM as "stop now"; a Python peer whose signal handler was
/// entered a second time deadlocked on its own lock and was killed at its stop timeout. Each process of the
/// tree gets a signal once.
@Suite(.tags(.regression, .integration, .governor), .leakChecked)
struct regression_integration_governor_SignalOncePerProcess {
    let dir = TemporaryDirectory()
    let tracker = ProcessTracker()

    /// A real-time signal queues (an ordinary one would merge), so a child that blocks it and then takes the
    /// queue with sigtimedwait counts every delivery.
    @Test(arguments: SpawnPath.allCases) func signalTreeDeliversOncePerProcess(_ path: SpawnPath) async throws {
        defer { tracker.killAll() }
        let probe = ProbeGroup(folder: dir.path)
        let count = dir.file("count")
        let script = try dir.write("""
            import os, signal, sys, time
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
            open(sys.argv[1] + ".ready", "w").close()
            while not os.path.exists(sys.argv[1] + ".go"):
                time.sleep(0.01)
            n = 0
            while signal.sigtimedwait({signal.SIGRTMIN}, 0.5) is not None:
                n += 1
            with open(sys.argv[1] + ".tmp", "w") as f:
                f.write(str(n))
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
            time.sleep(300)
            """, to: "count.py")
        let child = try Spawner.spawn(SpawnRequest(executable: "/usr/bin/python3", arguments: [script.path, count],
                                                   environment: ["PATH": "/usr/bin:/bin"], cgroup: probe.cgroup(for: path)))
        tracker.track(child.pid)
        try await waitUntil("the child to block the signal") { FileManager.default.fileExists(atPath: count + ".ready") }
        #expect(child.signalTree(__libc_current_sigrtmin()))
        try dir.write("", to: "count.go")
        try await waitUntil("the child to count its deliveries") { FileManager.default.fileExists(atPath: count) }
        #expect(try String(contentsOfFile: count, encoding: .utf8) == "1", "deliveries of one signalTree")
        child.killTree()
        _ = await child.waitForExit(timeout: .seconds(30))
    }
}
