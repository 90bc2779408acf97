import Foundation
import ZeroMQ

/// Fails the test run, at its exit, when it leaves anything behind: a temporary folder, a child process, a
/// ZeroMQ context, a client thread, a socket / pidfd / eventfd descriptor opened during the run, or a governor
/// cgroup (`szgovernor/<id>`) made for a deployment folder inside one of the run's temporary folders.
///
/// Installed on first use of any ScheduleZeroTesting resource; checked in an `atexit` handler, after every test has
/// finished, so parallel tests cannot blur the count. A leak prints what leaked and makes the exit status 1.
public enum LeakGuard {
    private static let state = GuardState()

    /// Installs the guard (idempotent). Resources call this; tests need not.
    public static func install() { _ = installed }
    private static let installed: Bool = {
        state.baseline = descriptorKinds()
        atexit { LeakGuard.checkAtExit() }
        return true
    }()

    /// Temporary folders that exist now, by path.
    public static func track(folder path: String) {
        install()
        state.withLock { _ = $0.folders.insert(path) }
        SuiteLeakScope.current?.track(folder: path)
    }
    public static func untrack(folder path: String) { state.withLock { $0.folders.remove(path) } }
    /// Child processes started by tests, by PID, with a name for the report.
    public static func track(pid: Int32, name: String) {
        install()
        state.withLock { $0.pids[pid] = name }
        SuiteLeakScope.current?.track(pid: pid, name: name)
    }
    public static func untrack(pid: Int32) { state.withLock { $0.pids[pid] = nil } }

    /// What is left right now (empty when nothing leaked).
    public static func leaks() -> [String] {
        var out: [String] = []
        let (folders, pids) = state.withLock { ($0.folders, $0.pids) }
        for f in folders.sorted() where FileManager.default.fileExists(atPath: f) {
            out.append("temporary folder \(f)")
        }
        for (pid, name) in pids.sorted(by: { $0.key < $1.key }) where LiveProcess.isAlive(pid) {
            out.append("process \(pid) (\(name))")
        }
        for pid in LiveProcess.children(of: getpid()) where pids[pid] == nil && LiveProcess.isAlive(pid) {
            out.append("child process \(pid) (\(commandLine(of: pid)))")
        }
        out += SuiteLeakScope.cgroups(of: folders).map { "cgroup \($0.group) (made for \($0.folder))" }
        if Context.liveCount > 0 { out.append("\(Context.liveCount) ZeroMQ context(s) not terminated") }
        if Context.terminatingCount > 0 {
            out.append("\(Context.terminatingCount) ZeroMQ context(s) stuck in termination (a socket's owner never left libzmq)")
        }
        let now = descriptorKinds()
        for (fd, kind) in now.sorted(by: { $0.key < $1.key }) where state.baseline[fd] != kind && isTracked(kind) {
            out.append("file descriptor \(fd) -> \(kind)")
        }
        return out
    }

    static func checkAtExit() {
        let env = ProcessInfo.processInfo.environment
        if env["SZ_LEAK_GUARD"] == "off" { return }
        // An exit test's child process (the test binary started by the test binary; Swift Testing clears its
        // SWT_EXIT_TEST_ID before the body runs) checks its own counts and reports by exit code.
        if isExitTestChild { return }
        // Give libzmq's I/O threads and exiting children a moment to finish what they are closing.
        var left = leaks()
        let deadline = Date().addingTimeInterval(3)
        while !left.isEmpty && Date() < deadline {
            usleep(20_000)
            left = leaks()
        }
        guard !left.isEmpty else { return }
        // Stop what is left before reporting it: a leaked process that holds the run's stdout would
        // otherwise keep the runner's pipe open, and the run waited for it (79 s once, instead of failing
        // at once). Folders are left for the runner's own check to name and remove.
        let killed = stopLeftoverProcesses()
        var text = "LEAK GUARD: the test run left these behind:\n" + left.map { "  - \($0)" }.joined(separator: "\n") + "\n"
        if !killed.isEmpty { text += "LEAK GUARD: killed (SIGKILL to each and its group): \(killed.map(String.init).joined(separator: ", "))\n" }
        fflush(nil)  // every C stream, stdout included
        FileHandle.standardError.write(Data(text.utf8))
        _exit(1)
    }

    /// Kills, with SIGKILL to each and to its process group, every process this run is answerable for that
    /// is still alive: the ones tests tracked, this process's children, and every process whose environment
    /// points into this run's `SZ_TEST_TMPDIR` (grandchildren, detached governors and their children, which
    /// carry `SZGOVERNOR_DIR`), never this process or its ancestors
    /// (the runner and `swift test` carry the variable too). Returns the PIDs killed.
    static func stopLeftoverProcesses() -> [Int32] {
        let me = getpid()
        var ancestors: Set<Int32> = [me]
        var p = getppid()
        while p > 1, ancestors.insert(p).inserted { p = LiveProcess.parent(of: p) ?? 1 }
        var victims = Set(state.withLock { Array($0.pids.keys) }).union(LiveProcess.children(of: me))
        if let runDir = ProcessInfo.processInfo.environment["SZ_TEST_TMPDIR"], !runDir.isEmpty {
            victims.formUnion(LiveProcess.all().filter { LiveProcess.environmentPoints(into: runDir, pid: $0) })
        }
        let killed = victims.subtracting(ancestors).filter { $0 > 1 && LiveProcess.isAlive($0) }.sorted()
        for pid in killed {
            kill(pid, SIGKILL)
            if getpgid(pid) == pid { kill(-pid, SIGKILL) }
        }
        return killed
    }

    static var isExitTestChild: Bool {
        let fm = FileManager.default
        guard let me = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
              let parent = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(getppid())/exe") else { return false }
        return me == parent
    }

    private static func isTracked(_ kind: String) -> Bool {
        // eventfd and epoll descriptors are left out: Dispatch and Foundation make their own lazily. libzmq's
        // come with a context, which the counts above catch.
        kind.hasPrefix("socket:") || kind.contains("pidfd") || kind.hasPrefix("/tmp/") || kind.contains("/sz-test-")
    }

    static func descriptorKinds() -> [Int32: String] {
        var out: [Int32: String] = [:]
        for fd in openFileDescriptors() {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)") {
                out[fd] = target
            }
        }
        return out
    }

    static func commandLine(of pid: Int32) -> String {
        let raw = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
        return String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }
}

final class GuardState: @unchecked Sendable {
    struct Tracked {
        var folders: Set<String> = []
        var pids: [Int32: String] = [:]
    }
    private let lock = NSLock()
    private var tracked = Tracked()
    var baseline: [Int32: String] = [:]
    func withLock<R>(_ body: (inout Tracked) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&tracked)
    }
}
