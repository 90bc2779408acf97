// Children's stdout and stderr go into a pipe; ONE thread per governor process (the log pump) reads every
// pipe with epoll and writes `logs/<name>.log`, rotating it by size (docs/ARCHITECTURE.md, "Child logs").
//
// - Constant thread count: one pump for all children, however many (issue 15's direction), started on first use.
// - Read ends are O_NONBLOCK and O_CLOEXEC (another child spawned at the same moment never inherits one);
//   the write end reaches the child through posix_spawn's dup2 and is closed in the governor right after.
// - Nothing waits on the spawn or exit path: `register` is a lock, a map insert and an epoll_ctl. A child's
//   pipe is read to EOF after it exits (the pump keeps it until every writer, descendants included, is gone),
//   so its last lines (a crash message) reach the log; `waitDrained` lets a stopping governor wait for that,
//   with a deadline.
// - Order: all pipes of one log file (a dead child's and its replacement's) are read oldest first, so the
//   dead child's last lines come before the new child's first.
// - Rotation: before a write would take the file past `maxSize`, `<name>.log.N-1` -> `.N`, ..., `<name>.log`
//   -> `.1` (the oldest beyond `backups` deleted) and a new file is opened; a write is cut at its last newline
//   within the room left, so lines stay whole unless one line is longer than `maxSize`.
#if canImport(Glibc)
import Glibc
#endif
import CSystem
import Foundation

/// Size-based rotation of a child's log: supervisord's defaults, 50 MiB and 10 backups.
public struct LogRotation: Sendable, Hashable {
    public var maxSize: Int
    public var backups: Int

    public static let minimumSize = 4096
    public static let maximumSize = 1 << 40
    public static let maximumBackups = 1000

    public init(maxSize: Int = 50 << 20, backups: Int = 10) {
        self.maxSize = maxSize
        self.backups = backups
    }

    /// `512KiB`, `50MiB`, `1GiB`, `4096B`, also `KB`/`MB`/`GB` (powers of 1000). A bare number is refused.
    public static func parseSize(_ text: String) -> Int? {
        let units: [(String, Double)] = [("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776),
                                         ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1)]
        let t = text.trimmingCharacters(in: .whitespaces)
        for (unit, factor) in units where t.hasSuffix(unit) {
            let number = t.dropLast(unit.count).trimmingCharacters(in: .whitespaces)
            guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }), let n = Double(number) else { return nil }
            let bytes = n * factor
            guard bytes.isFinite, bytes <= Double(Int.max / 2) else { return nil }
            return Int(bytes.rounded())
        }
        return nil
    }
}

public final class LogPump: @unchecked Sendable {
    public static let shared = LogPump()

    private final class Source {
        let fd: CInt
        let id: UInt64
        init(fd: CInt, id: UInt64) { self.fd = fd; self.id = id }
    }

    private final class LogFile {
        let path: String
        var rotation: LogRotation
        /// The pump thread's copy of `rotation`, taken under the lock before each round of writes.
        var current = LogRotation()
        var fd: CInt = -1
        var size = 0
        var sources: [Source] = []
        init(path: String, rotation: LogRotation) { self.path = path; self.rotation = rotation }
    }

    private struct State {
        var files: [String: LogFile] = [:]
        var byID: [UInt64: (Source, LogFile)] = [:]
        var nextID: UInt64 = 1
        var started = false
        /// Stopping governors waiting until these log files' pipes have all reached EOF.
        var drainWaiters: [UInt64: (paths: Set<String>, once: OneShot<Bool>)] = [:]
    }

    /// Guarded by `lock` (Mutex would need Sendable contents; these classes live only here).
    private var stateStorage = State()
    private let lock = NSLock()
    private var state: LockedState { LockedState(pump: self) }
    private struct LockedState {
        let pump: LogPump
        func withLock<R>(_ body: (inout State) -> R) -> R {
            pump.lock.lock()
            defer { pump.lock.unlock() }
            return body(&pump.stateStorage)
        }
    }
    private let epollFD: CInt

    private init() {
        epollFD = Epoll.create()
    }

    /// A pipe for a child's stdout and stderr, its read end already watched by the pump (which owns it and
    /// closes it at EOF). Both ends are close-on-exec, the read end non-blocking. The caller dup2s the write
    /// end onto the child's 1 and 2 and closes it after the spawn. nil when there is no pump (epoll or pipe2
    /// failed): the caller then lets the child append to the file directly.
    func openPipe(logPath: String, rotation: LogRotation) -> (read: CInt, write: CInt)? {
        guard epollFD >= 0 else { return nil }
        var fds: [CInt] = [-1, -1]
        guard Epoll.pipe2(&fds, O_CLOEXEC) == 0 else { return nil }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        guard register(readEnd: fds[0], logPath: logPath, rotation: rotation) else {
            close(fds[0])
            close(fds[1])
            return nil
        }
        return (fds[0], fds[1])
    }

    private func register(readEnd fd: CInt, logPath: String, rotation: LogRotation) -> Bool {
        let (added, needsThread): (Bool, Bool) = state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            guard Epoll.add(epollFD, fd, id: id) else { return (false, false) }
            let file = s.files[logPath] ?? LogFile(path: logPath, rotation: rotation)
            file.rotation = rotation
            s.files[logPath] = file
            let source = Source(fd: fd, id: id)
            file.sources.append(source)
            s.byID[id] = (source, file)
            defer { s.started = true }
            return (true, !s.started)
        }
        if needsThread {
            let thread = Thread { [self] in self.run() }
            thread.name = "log-pump"
            thread.start()
        }
        return added
    }

    /// Pipes not yet at EOF that write into one of `logPaths`.
    public func openPipes(for logPaths: Set<String>) -> Int {
        state.withLock { s in logPaths.reduce(0) { $0 + (s.files[$1]?.sources.count ?? 0) } }
    }

    /// Waits (suspending, never blocking a thread) until every pipe writing into `logPaths` has reached EOF,
    /// or the deadline. Returns whether everything was drained. No polling: the pump resumes the wait when
    /// the last of those pipes ends; the deadline is a timer of the event loop.
    @discardableResult
    public func waitDrained(_ logPaths: Set<String>, timeout: Duration) async -> Bool {
        let once = OneShot<Bool>()
        let id: UInt64? = state.withLock { s in
            guard logPaths.contains(where: { !(s.files[$0]?.sources.isEmpty ?? true) }) else { return nil }
            let id = s.nextID
            s.nextID += 1
            s.drainWaiters[id] = (logPaths, once)
            return id
        }
        guard let id else { return true }
        let timer = EventLoop.shared.schedule(after: timeout) { [self] in
            _ = state.withLock { $0.drainWaiters.removeValue(forKey: id) }
            once.fire(.success(false))
        }
        let drained = (try? await withCheckedThrowingContinuation { (c: CheckedContinuation<Bool, any Error>) in
            _ = once.arm(c)
        }) ?? false
        EventLoop.shared.cancel(timer)
        return drained
    }

    private func run() {
        // The kernel's name of this thread too (top -H, /proc/PID/task/TID/comm); Foundation's is its own.
        let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        if comm >= 0 { _ = Glibc.write(comm, "log-pump", 8); close(comm) }
        while true {
            let ids = Epoll.wait(epollFD, max: 64)
            guard let ids else { usleep(10_000); continue }
            var files: [ObjectIdentifier: LogFile] = [:]
            state.withLock { s in
                for id in ids {
                    if let (_, file) = s.byID[id] { files[ObjectIdentifier(file)] = file }
                }
            }
            for file in files.values { pump(file) }
        }
    }

    private var buffer = [UInt8](repeating: 0, count: 65_536)

    /// Reads every pipe of `file`, oldest first: each until it would block (at most 1 MiB per round, so one
    /// busy child cannot starve the others) or EOF.
    private func pump(_ file: LogFile) {
        let sources = state.withLock { _ in
            file.current = file.rotation
            return file.sources
        }
        var finished: [Source] = []
        for source in sources {
            var rounds = 0
            reading: while rounds < 16 {
                rounds += 1
                let got = buffer.withUnsafeMutableBytes { read(source.fd, $0.baseAddress, $0.count) }
                if got > 0 {
                    buffer.withUnsafeBytes { write(file, UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
                } else if got == 0 {
                    finished.append(source)
                    break reading
                } else if errno == EINTR {
                    continue
                } else {
                    if errno != EAGAIN && errno != EWOULDBLOCK { finished.append(source) }
                    break reading
                }
            }
        }
        guard !finished.isEmpty else { return }
        var drained: [OneShot<Bool>] = []
        state.withLock { s in
            for source in finished {
                Epoll.remove(epollFD, source.fd)
                close(source.fd)
                s.byID[source.id] = nil
                file.sources.removeAll { $0 === source }
            }
            if file.sources.isEmpty {
                if file.fd >= 0 { close(file.fd) }
                file.fd = -1
                if s.files[file.path] === file { s.files[file.path] = nil }
            }
            for (id, waiter) in s.drainWaiters
            where !waiter.paths.contains(where: { !(s.files[$0]?.sources.isEmpty ?? true) }) {
                s.drainWaiters[id] = nil
                drained.append(waiter.once)
            }
        }
        for once in drained { once.fire(.success(true)) }
    }

    // MARK: writing and rotating (pump thread only)

    private func openFile(_ file: LogFile) -> Bool {
        if file.fd >= 0 { return true }
        file.fd = open(file.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard file.fd >= 0 else { return false }
        var st = stat()
        file.size = fstat(file.fd, &st) == 0 ? Int(st.st_size) : 0
        return true
    }

    private func write(_ file: LogFile, _ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        while !rest.isEmpty {
            guard openFile(file) else { return }  // the folder is gone: the output is dropped
            let room = file.current.maxSize - file.size
            var cut = rest.count
            if rest.count > room {
                // Keep lines whole: cut after the last newline that fits; a fresh file takes a line longer
                // than maxSize in pieces.
                if let nl = rest[0..<max(room, 0)].lastIndex(of: 0x0A) {
                    cut = nl + 1
                } else if file.size > 0 {
                    rotate(file)
                    continue
                } else {
                    cut = max(room, 1)
                }
            }
            writeAll(file.fd, UnsafeRawBufferPointer(rebasing: rest[0..<cut]))
            file.size += cut
            rest = UnsafeRawBufferPointer(rebasing: rest[cut...])
            if file.size >= file.current.maxSize || !rest.isEmpty { rotate(file) }
        }
    }

    private func writeAll(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 { if errno == EINTR { continue }; return }
            offset += n
        }
    }

    private func rotate(_ file: LogFile) {
        guard file.fd >= 0 else { return }
        let backups = file.current.backups
        if backups == 0 {
            _ = ftruncate(file.fd, 0)
            file.size = 0
            return
        }
        close(file.fd)
        file.fd = -1
        // Whatever lies beyond the kept count (also from a larger `backups` before) goes.
        var extra = backups + 1
        while unlink("\(file.path).\(extra)") == 0 { extra += 1 }
        unlink("\(file.path).\(backups)")
        if backups > 1 {
            for n in stride(from: backups - 1, through: 1, by: -1) { rename("\(file.path).\(n)", "\(file.path).\(n + 1)") }
        }
        rename(file.path, "\(file.path).1")
        file.size = 0
        _ = openFile(file)  // `<name>.log` exists at all times, empty until the next write
    }
}

/// epoll, eventfd, signalfd and pipe2 through the CSystem shim (Swift's Glibc module does not import them).
/// `struct epoll_event` is packed on x86_64 (12 bytes: events at 0, data at 4) and naturally aligned elsewhere
/// (16 bytes: data at 8); it is read and written by offset, the sizes the C compiler gives.
enum Epoll {
    static let inEvent: UInt32 = 0x001, priority: UInt32 = 0x002, hangUp: UInt32 = 0x010, readHangUp: UInt32 = 0x2000
    static let edgeTriggered: UInt32 = 1 << 31
    static let ctlAdd: CInt = 1, ctlDel: CInt = 2
    static let eventSize = Int(sz_epoll_event_size()), dataOffset = Int(sz_epoll_data_offset())

    static func create() -> CInt { sz_epoll_create() }
    static func pipe2(_ fds: UnsafeMutablePointer<CInt>, _ flags: CInt) -> CInt { sz_pipe2(fds, flags) }

    /// An eventfd (non-blocking, close-on-exec): what wakes an epoll wait from another thread.
    static func eventFD() -> CInt { sz_eventfd() }
    /// A signalfd (non-blocking, close-on-exec) for `set`; the signals must be blocked in every thread.
    static func signalFD(_ set: sigset_t) -> CInt { withUnsafePointer(to: set) { sz_signalfd($0) } }
    /// `struct signalfd_siginfo`: 128 bytes, `ssi_signo` (UInt32) first.
    static let signalInfoSize = 128

    static func add(_ epfd: CInt, _ fd: CInt, id: UInt64, events: UInt32 = inEvent | hangUp | readHangUp) -> Bool {
        let event = UnsafeMutableRawPointer.allocate(byteCount: eventSize, alignment: 8)
        defer { event.deallocate() }
        event.storeBytes(of: events, toByteOffset: 0, as: UInt32.self)
        event.storeBytes(of: id, toByteOffset: dataOffset, as: UInt64.self)
        return sz_epoll_ctl(epfd, ctlAdd, fd, event) == 0
    }

    static func remove(_ epfd: CInt, _ fd: CInt) {
        let event = UnsafeMutableRawPointer.allocate(byteCount: eventSize, alignment: 8)
        defer { event.deallocate() }
        _ = sz_epoll_ctl(epfd, ctlDel, fd, event)
    }

    /// The ready descriptors' ids and events, waiting at most `timeoutMs` (-1: until there is one); [] on
    /// EINTR or timeout, nil on another error.
    static func waitEvents(_ epfd: CInt, max: Int, timeoutMs: CInt) -> [(id: UInt64, events: UInt32)]? {
        let events = UnsafeMutableRawPointer.allocate(byteCount: eventSize * max, alignment: 8)
        defer { events.deallocate() }
        let n = sz_epoll_wait(epfd, events, CInt(max), timeoutMs)
        if n < 0 { return errno == EINTR ? [] : nil }
        return (0..<Int(n)).map { i in
            (events.loadUnaligned(fromByteOffset: i * eventSize + dataOffset, as: UInt64.self),
             events.loadUnaligned(fromByteOffset: i * eventSize, as: UInt32.self))
        }
    }

    /// The ids of the ready descriptors (blocks until there is one); nil on an error other than EINTR.
    static func wait(_ epfd: CInt, max: Int) -> [UInt64]? {
        let events = UnsafeMutableRawPointer.allocate(byteCount: eventSize * max, alignment: 8)
        defer { events.deallocate() }
        let n = sz_epoll_wait(epfd, events, CInt(max), -1)
        if n < 0 { return errno == EINTR ? [] : nil }
        return (0..<Int(n)).map { events.loadUnaligned(fromByteOffset: $0 * eventSize + dataOffset, as: UInt64.self) }
    }
}

/// Reading a rotated log: `<name>.log` and its backups `<name>.log.1` (newest) .. `.N`.
public enum RotatedLog {
    /// The last `lines` lines across the rotation, oldest first (newest last): from the current file, then
    /// from `.1`, `.2`, ... while the newer files hold fewer lines than asked for.
    public static func tail(of path: String, lines: Int) -> [String] {
        guard lines > 0 else { return [] }
        var collected: [String] = []
        var index = 0
        while collected.count < lines {
            let file = index == 0 ? path : "\(path).\(index)"
            guard let part = tailOfFile(file, lines: lines - collected.count) else {
                if index == 0 { index = 1; continue }  // only backups (the current file was removed)
                break
            }
            collected = part + collected
            index += 1
        }
        return collected
    }

    /// The files of the rotation that exist, newest first.
    public static func files(of path: String) -> [String] {
        var out: [String] = []
        if access(path, F_OK) == 0 { out.append(path) }
        var n = 1
        while access("\(path).\(n)", F_OK) == 0 { out.append("\(path).\(n)"); n += 1 }
        return out
    }

    /// Follows `path` as `tail -F` does: calls `emit` with each complete line written after `offset` (the
    /// file's size when the tail was printed), and with the new file's lines after a rotation (the governor
    /// renames the file to `.1` and opens a new one). Woken by inotify on the log folder, no periodic poll;
    /// returns when `shouldStop` says so (checked at each wake-up and at least every `check`).
    public static func follow(_ path: String, from offset: Int, check: Duration = .milliseconds(500),
                              shouldStop: () -> Bool = { false }, emit: (String) -> Void) {
        let folder = (path as NSString).deletingLastPathComponent
        let inotify = inotify_init1(Int32(IN_CLOEXEC))
        defer { if inotify >= 0 { close(inotify) } }
        if inotify >= 0 {
            _ = inotify_add_watch(inotify, folder, UInt32(IN_MODIFY | IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE))
        }
        var position = offset
        var inode: ino_t = 0
        var st = stat()
        if stat(path, &st) == 0 { inode = st.st_ino }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let checkMs = Int32(max(1, check.components.seconds * 1000 + check.components.attoseconds / 1_000_000_000_000_000))
        /// Reads `file` from `position` to its end, emitting complete lines.
        func drain(_ file: String) {
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            defer { close(fd) }
            while true {
                let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(position)) }
                guard got > 0 else { break }
                position += got
                pending += buffer[0..<got]
                while let nl = pending.firstIndex(of: 0x0A) {
                    emit(String(decoding: pending[..<nl], as: UTF8.self))
                    pending.removeSubrange(...nl)
                }
            }
        }
        while !shouldStop() {
            if stat(path, &st) == 0 {
                if st.st_ino != inode {
                    // Rotated: the old file is `.1` now; its last lines first, then the new file from its start.
                    var old = stat()
                    if inode != 0, stat("\(path).1", &old) == 0, old.st_ino == inode { drain("\(path).1") }
                    inode = st.st_ino
                    position = 0
                    pending.removeAll()
                } else if Int(st.st_size) < position {
                    position = 0  // truncated in place
                    pending.removeAll()
                }
                if Int(st.st_size) > position { drain(path) }
            }
            if inotify >= 0 {
                var pfd = pollfd(fd: inotify, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, checkMs) > 0 { _ = buffer.withUnsafeMutableBytes { read(inotify, $0.baseAddress, $0.count) } }
            } else {
                usleep(UInt32(checkMs) * 1000)
            }
        }
    }

    /// The last `lines` lines of one file, read backwards in 64 KiB blocks; nil when it does not exist.
    static func tailOfFile(_ path: String, lines: Int) -> [String]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return [] }
        var end = Int(st.st_size)
        var data: [UInt8] = []
        let block = 65_536
        while end > 0 {
            let start = max(0, end - block)
            var chunk = [UInt8](repeating: 0, count: end - start)
            let got = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, end - start, off_t(start)) }
            guard got > 0 else { break }
            data = Array(chunk[0..<got]) + data
            end = start
            // lines + 1 newlines (the last may end the file) are enough to know the last `lines` lines.
            if data.reduce(0, { $0 + ($1 == 0x0A ? 1 : 0) }) > lines { break }
        }
        var all = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if all.last == "" { all.removeLast() }
        // A read that stopped before the file's start may begin mid-line: drop that partial line.
        if end > 0 && all.count > lines { all.removeFirst() }
        return Array(all.suffix(lines))
    }
}
