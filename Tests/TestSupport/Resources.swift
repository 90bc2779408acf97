import Foundation

/// A temporary folder that removes itself (and everything in it) when released.
public final class TemporaryFolder: @unchecked Sendable {
    public let url: URL
    public var path: String { url.path }

    public init(prefix: String = "sz-test") throws {
        let base = URL(fileURLWithPath: NSTemporaryDirectory())
        url = base.appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        LeakGuard.track(folder: url.path)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
        LeakGuard.untrack(folder: url.path)
    }

    public func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// An ipc endpoint in this folder (short: ipc paths are limited to ~107 bytes).
    public func ipcEndpoint(_ name: String) -> String { "ipc://\(file(name))" }
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
