import Foundation

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
        try text.write(to: file, atomically: true, encoding: .utf8)
        if executable { chmod(file.path, 0o755) }
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

/// A free TCP port on 127.0.0.1 (bound and released, so a peer can bind it next).
public func freeTCPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
    }
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Debian's pyzmq (python3-zmq) works only with this interpreter, not with the `python3` first on PATH.
public let pyzmqPython = "/usr/bin/python3"

/// Whether the interop peers can run here (scripts/install-deps.sh installs python3-zmq).
public let pyzmqAvailable: Bool = {
    FileManager.default.isExecutableFile(atPath: pyzmqPython)
        && FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/zmq")
}()

/// A file of the package's `Fixtures/` folder.
public func fixturePath(_ relative: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(relative).path
}
