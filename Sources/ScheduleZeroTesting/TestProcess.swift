import Foundation
import Testing
import ScheduleZeroWire
import CSystem
#if canImport(Glibc)
import Glibc
#endif

extension TestProcess {
    /// How a child process ended. (Nested: the Governor library has an `ExitStatus` of its own, and tests
    /// import both.)
    public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)
        public var description: String {
            switch self {
            case .exited(let c): "exited with \(c)"
            case .signaled(let s): "killed by signal \(s)"
            }
        }
    }
}

/// A real child process for integration tests, started with `posix_spawn` in a process group of its own.
///
/// stdout and stderr are read on threads of their own into memory (the child never blocks on a full pipe);
/// `event(_:)` waits with a deadline for a JSON line. The group is killed (SIGKILL) and the child reaped
/// by `stop()` and at the latest on `deinit`, so a failing test leaves nothing behind.
public final class TestProcess: @unchecked Sendable {
    public let pid: pid_t
    public let executable: String
    private let lock = NSLock()
    private var out: [String] = []
    private var partial: [UInt8] = []
    private var err: [UInt8] = []
    private var status: ExitStatus?
    private var readersDone = 0
    /// The read ends still open (stdout, stderr), for `caughtUp`: -1 once the reader closed it.
    private var openReadEnds: [Int32] = [-1, -1]

    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        self.executable = executable
        // Both pipes close-on-exec from the start (pipe2), so no child spawned by another thread inherits one
        // (which would hide this child's EOF). This used to be pipe + FD_CLOEXEC under a lock shared by every
        // spawn, and threads queued on that lock for seconds on a busy machine (flake 23, docs/TESTING.md).
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        guard sz_pipe2(&outPipe, O_CLOEXEC) == 0 else { throw Self.posix("pipe2") }
        guard sz_pipe2(&errPipe, O_CLOEXEC) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            throw Self.posix("pipe2")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Nothing else of the test process: without this, every child held whatever descriptor another
        // thread had open without FD_CLOEXEC at that moment (a pipe of swift-test's, seen in every szmock
        // and Python peer), which can hold a pipe of another test or of an exit test open past its end.
        _ = sz_spawn_add_close_from(&actions, 3)  // glibc 2.34+ (an older one: ENOSYS, and only close-on-exec descriptors close)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)

        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child = pid_t()
        let rc = posix_spawn(&child, executable, &actions, &attr, argv, envp)
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO, userInfo: [NSLocalizedDescriptionKey: "posix_spawn \(executable)"])
        }
        pid = child
        LeakGuard.track(pid: child, name: (executable as NSString).lastPathComponent + " " + arguments.prefix(3).joined(separator: " "))
        startReader(outPipe[0], isStdout: true)
        startReader(errPipe[0], isStdout: false)
    }

    deinit { stop() }


    private static func posix(_ what: String) -> Error {
        POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO, userInfo: [NSLocalizedDescriptionKey: what])
    }

    /// One thread per pipe. It waits in poll(2) outside the lock and reads (non-blocking) and stores what it
    /// read inside it, so that "no unread byte in the pipe", looked at under the lock, means every byte the
    /// child wrote so far is in `lines` or `stderrText` (`caughtUp`).
    private func startReader(_ fd: Int32, isStdout: Bool) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        lock.withLock { openReadEnds[isStdout ? 0 : 1] = fd }
        let t = Thread { [weak self] in
            var buf = [UInt8](repeating: 0, count: 65536)
            var ended = false, closed = false
            while !ended {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, -1) < 0 {
                    if errno == EINTR { continue }
                    break
                }
                guard let self else {
                    // Nobody to store for: drain to the end so the child is never blocked on a full pipe.
                    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) { ended = true }
                    continue
                }
                self.lock.lock()
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if isStdout {
                        self.partial += buf[0..<n]
                        while let nl = self.partial.firstIndex(of: 0x0A) {
                            self.out.append(String(decoding: self.partial[..<nl], as: UTF8.self))
                            self.partial.removeSubrange(...nl)
                        }
                    } else {
                        self.err += buf[0..<n]
                    }
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    ended = true
                    self.openReadEnds[isStdout ? 0 : 1] = -1
                    close(fd)  // under the lock: `caughtUp` never asks a closed (or reused) descriptor
                    closed = true
                }
                self.lock.unlock()
            }
            if let self {
                self.lock.lock()
                if !closed {
                    self.openReadEnds[isStdout ? 0 : 1] = -1
                    close(fd)
                    closed = true
                }
                self.readersDone += 1
                self.lock.unlock()
            }
            if !closed { close(fd) }
        }
        t.start()
    }

    /// True when every byte the child has written to stdout and stderr so far is in `lines` and `stderrText`.
    private var isCaughtUp: Bool {
        lock.withLock { openReadEnds.allSatisfy { $0 < 0 || sz_unread_bytes($0) == 0 } }
    }

    /// Waits until `lines`, `events` and `stderrText` hold everything the child has written so far. The
    /// reader threads store output on their own schedule: a line the child printed before an effect the
    /// test has just seen (a reply, a file) may not be in `lines` yet on a loaded machine (seen: a count of
    /// 2 where the peer had printed 3). Call this after the effect, before reading the snapshot.
    public func caughtUp(timeout: Duration = .seconds(10)) async throws {
        try await waitUntil("the output of \(executable) (pid \(pid)) to be read", timeout: timeout) { self.isCaughtUp }
    }

    /// True once stdout and stderr are both closed (the child and anything that inherited them are gone):
    /// `lines` and `stderrText` are then complete.
    public var outputClosed: Bool { lock.withLock { readersDone == 2 } }

    /// Every complete stdout line so far.
    public var lines: [String] { lock.withLock { out } }
    /// stdout lines that are JSON objects, parsed.
    public var events: [[String: JSONValue]] { lines.compactMap { (try? JSON.parse($0))?.objectValue } }
    public var stderrText: String { lock.withLock { String(decoding: err, as: UTF8.self) } }

    /// Waits for the first stdout JSON event named `name` (and matching `predicate`), with a deadline.
    @discardableResult
    public func event(_ name: String, timeout: Duration = .seconds(10),
                      where predicate: @escaping ([String: JSONValue]) -> Bool = { _ in true }) async throws -> [String: JSONValue] {
        var found: [String: JSONValue]?
        do {
            try await waitUntil("event \(name) from \(executable) (pid \(pid))", timeout: timeout) {
                found = self.events.first { $0["event"]?.stringValue == name && predicate($0) }
                if found == nil, self.hasExited { return self.readersDone == 2 }
                return found != nil
            }
        } catch {
            throw WaitTimedOut(what: "event \(name) (stdout: \(lines.suffix(20)), stderr: \(stderrText.suffix(2000)))", after: timeout)
        }
        guard let found else {
            throw WaitTimedOut(what: "event \(name): the process ended (\(exitStatus.map { "\($0)" } ?? "?")); stdout: \(lines.suffix(20)); stderr: \(stderrText.suffix(2000))", after: timeout)
        }
        return found
    }

    /// The `ready` event (`{"event":"ready",...}`), waited for with a deadline.
    public func ready(timeout: Duration = .seconds(10)) async throws -> [String: JSONValue] {
        try await event("ready", timeout: timeout)
    }

    /// Sends `sig` to the child (not its group).
    public func signal(_ sig: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if status == nil { kill(pid, sig) }
    }

    /// Reaps the child if it has ended; nil while it runs.
    public var exitStatus: ExitStatus? {
        lock.lock()
        defer { lock.unlock() }
        if status == nil {
            var st: Int32 = 0
            let r = waitpid(pid, &st, WNOHANG)
            if r == pid { status = Self.decode(st) }
        }
        return status
    }

    private var hasExited: Bool { exitStatus != nil }

    private static func decode(_ st: Int32) -> ExitStatus {
        if st & 0x7f == 0 { return .exited((st >> 8) & 0xff) }
        return .signaled(st & 0x7f)
    }

    /// Waits for the child to end, with a deadline (it is not killed on timeout: `stop()` does that), and
    /// then, for up to `outputGrace`, until its output is read to the end: the reader threads get the last
    /// lines a moment after the exit, and tests that read `lines` right after `waitExit` missed them on a
    /// loaded machine (szchaos's last line, szmock call's reply). Output a descendant still holds open is not
    /// waited for past the grace.
    @discardableResult
    public func waitExit(timeout: Duration = .seconds(10), outputGrace: Duration = .seconds(10)) async throws -> ExitStatus {
        try await waitUntil("exit of \(executable) (pid \(pid))", timeout: timeout) { self.exitStatus != nil }
        try? await waitUntil("the output of \(executable) (pid \(pid)) to end", timeout: outputGrace) { self.outputClosed }
        return exitStatus!
    }

    /// Kills the child's whole process group with SIGKILL (unless it was already reaped) and reaps it.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard status == nil else { return }
        kill(-pid, SIGKILL)
        var st: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &st, 0) } while r < 0 && errno == EINTR
        status = r == pid ? Self.decode(st) : .signaled(SIGKILL)
    }
}

/// The directory of the running test bundle's executable (where SwiftPM puts `szmock` too).
public func builtProductsDirectory() -> String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().path
}

/// The path of a built executable of this package (`szgovernor`, `szchaos`, `szmock`): in `SZ_BIN_DIR` when
/// that is set, else next to the test bundle. SwiftPM builds an executable there when the test target
/// depends on it: this package's test targets list them; a package depending on this one lists the
/// products (`.product(name: "szgovernor", package: ...)`, see docs/TESTING.md, "The test kit").
public func builtExecutable(_ name: String) -> String {
    if let dir = ProcessInfo.processInfo.environment["SZ_BIN_DIR"], !dir.isEmpty { return dir + "/" + name }
    return builtProductsDirectory() + "/" + name
}

/// A process run to its end (`TestProcess.run`): how it ended and everything it printed.
public struct FinishedProcess: Sendable, CustomStringConvertible {
    public var status: TestProcess.ExitStatus
    /// stdout, line by line.
    public var lines: [String]
    public var stderr: String

    public init(status: TestProcess.ExitStatus, lines: [String], stderr: String) {
        self.status = status
        self.lines = lines
        self.stderr = stderr
    }

    /// stdout as one text.
    public var stdout: String { lines.joined(separator: "\n") }
    /// The same (the name the szchaos tests use).
    public var text: String { stdout }
    /// The exit code, nil when a signal ended it.
    public var code: Int32? { if case .exited(let c) = status { c } else { nil } }
    /// It exited 0.
    public var ok: Bool { status == .exited(0) }
    /// The `--json` document: stdout parsed as one JSON object, else its last line that is one.
    public var json: [String: JSONValue]? {
        if let o = (try? JSON.parse(Array(stdout.utf8)))?.objectValue { return o }
        return record
    }
    /// The last stdout line that is a JSON object.
    public var record: [String: JSONValue]? { lines.reversed().lazy.compactMap { (try? JSON.parse($0))?.objectValue }.first }
    public var description: String { "\(status); stdout: \(stdout); stderr: \(stderr)" }
}

extension TestProcess {
    /// Runs `executable ARGS` (environment added to the test process's own) to its end within `timeout`,
    /// and its output to its end (`waitExit`); the process group is killed if the deadline passes.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                           timeout: Duration = .seconds(30)) async throws -> FinishedProcess {
        let p = try TestProcess(executable, arguments, environment: environment)
        defer { p.stop() }
        let status = try await p.waitExit(timeout: timeout)
        return FinishedProcess(status: status, lines: p.lines, stderr: p.stderrText)
    }
}
