#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// A fresh directory under /tmp (short path: ipc socket paths are limited to 107 bytes) that deletes itself,
/// with everything in it, when released or when `remove()` is called. The leak guard reports one left behind.
public final class TemporaryDirectory: @unchecked Sendable {
    public let url: URL
    public var path: String { url.path }

    public init(prefix: String = "sz-test") {
        // run_tests.sh gives each run a folder of its own (SZ_TEST_TMPDIR) and fails the run when anything is
        // left in it; the path stays short for ipc endpoints.
        let base = ProcessInfo.processInfo.environment["SZ_TEST_TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed: \(String(cString: strerror(errno)))")
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        url = URL(fileURLWithPath: path, isDirectory: true)
        LeakGuard.track(folder: path)
    }

    deinit { remove() }

    public func remove() {
        try? FileManager.default.removeItem(at: url)
        LeakGuard.untrack(folder: url.path)
    }

    /// `url/component`.
    public func appending(_ component: String) -> URL { url.appendingPathComponent(component) }

    /// The path of `name` inside the directory.
    public func file(_ name: String) -> String { appending(name).path }

    /// An ipc endpoint in this directory.
    public func ipcEndpoint(_ name: String) -> String { "ipc://\(file(name))" }

    /// Writes `text` to `name` inside the directory (creating intermediate folders) and returns its URL.
    @discardableResult
    public func write(_ text: String, to name: String, executable: Bool = false) throws -> URL {
        let file = appending(name)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        // Close-on-exec, unlike Foundation's `String.write`: a process that another test starts while this
        // descriptor is open must not take it along, or spawning the script fails with "Text file busy" for
        // as long as that process lives.
        let fd = open(file.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, executable ? 0o755 : 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file.path]) }
        defer { close(fd) }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file.path]) }
            bytes = bytes.dropFirst(n)
        }
        fchmod(fd, executable ? 0o755 : 0o644)
        return file
    }
}

/// The same thing under the name the ZeroMQ tests use.
public typealias TemporaryFolder = TemporaryDirectory

/// Runs `body` with a temporary directory that is removed afterwards, even when `body` throws.
public func withTemporaryDirectory<T>(prefix: String = "sz-test",
                                      _ body: (TemporaryDirectory) async throws -> T) async rethrows -> T {
    let dir = TemporaryDirectory(prefix: prefix)
    defer { dir.remove() }
    return try await body(dir)
}

/// The open file descriptors of this process, by number.
public func openFileDescriptors() -> Set<Int32> {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return Set(names.compactMap { Int32($0) })
}

/// A free TCP port on 127.0.0.1 for a peer to bind next.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`, 32768-60999 here), never from it: the
/// outgoing connections of every test (thousands of reconnects in a run) take their local ports from that
/// range, and one of them took a port handed out by "bind to 0, read it, release it" before its test could
/// bind it (seen once as EADDRINUSE in 20 busy runs). Below the range only explicit binds compete; a counter
/// never hands the same port out twice in one process, and its start depends on the PID so that parallel
/// test processes walk different ports. Each port is checked free by a bind before it is returned.
public func freeTCPPort() -> Int {
    let (low, span) = testPortRange
    for _ in 0..<span {
        let port = low + portCursor.withLock { c -> Int in
            defer { c = (c + 1) % span }
            return c
        }
        if tcpPortIsFree(port) { return port }
    }
    preconditionFailure("no free TCP port in \(low)..<\(low + span)")
}

/// The ports `freeTCPPort` walks: the 12000 ports just below the ephemeral range, the top 2000 of them for
/// exit tests' child processes and the rest for the test process. A port is handed out some time before its
/// test binds it; a child walking the same ports took one in that window (EADDRINUSE at a deployment's `up`).
let testPortRange: (low: Int, span: Int) = {
    let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
    let ephemeralLow = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32768
    let low = max(1024, ephemeralLow - 12000)
    let span = max(4000, ephemeralLow - low)
    return LeakGuard.isExitTestChild ? (low + span - 2000, 2000) : (low, span - 2000)
}()

private let portCursor = Mutex<Int>(Int(getpid()) &* 7919 % testPortRange.span)

/// Whether 127.0.0.1:`port` can be bound right now.
func tcpPortIsFree(_ port: Int) -> Bool {
    // Close-on-exec: a child spawned meanwhile by another thread would otherwise hold the probed port.
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let len = socklen_t(MemoryLayout<sockaddr_in>.size)
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
    } == 0
}

/// Debian's pyzmq (python3-zmq) works only with this interpreter, not with the `python3` first on PATH.
public let pyzmqPython = "/usr/bin/python3"

/// Whether the interop peers can run here (scripts/install-deps.sh installs python3-zmq).
public let pyzmqAvailable: Bool = {
    FileManager.default.isExecutableFile(atPath: pyzmqPython)
        && FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/zmq")
}()

/// A file of the harness's own `Fixtures/` folder (its deployments, experiments and pyzmq peers), found from
/// this source file's place in the harness's checkout. A dependent package finds its own files from its
/// tests' `#filePath` (as Examples/pyservice does).
public func fixturePath(_ relative: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(relative).path
}
