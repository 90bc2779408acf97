#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CSystem

/// Runs `ip`, `iptables` and `tc` for the network faults: posix_spawn with stdout and stderr captured, then a
/// blocking wait. Blocking: call it from a thread of your own or a synchronous command, never from the
/// cooperative pool (the actuator wraps it in `onOwnThread`).
public enum HostCommand {
    public struct Result: Sendable, Equatable {
        public var status: Int32
        public var output: String
        public var errorOutput: String
        public var ok: Bool { status == 0 }
        /// stderr, else stdout, on one line (for messages).
        public var message: String {
            let t = (errorOutput.isEmpty ? output : errorOutput).trimmingCharacters(in: .whitespacesAndNewlines)
            return t.replacingOccurrences(of: "\n", with: "; ")
        }
    }

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case notFound(String)
        case failed(command: [String], result: Result)
        public var description: String {
            switch self {
            case let .notFound(t):
                "\(t) is not installed (Debian packages iproute2 and iptables: scripts/install-deps.sh network)"
            case let .failed(c, r): "`\(c.joined(separator: " "))` exited \(r.status): \(r.message)"
            }
        }
    }

    /// Where the tools are looked for (root's PATH need not hold /usr/sbin under every runner).
    static let searchPath = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]

    /// The absolute path of a tool, or nil.
    public static func which(_ tool: String) -> String? {
        if tool.hasPrefix("/") { return access(tool, X_OK) == 0 ? tool : nil }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + searchPath
        return path.map { "\($0)/\(tool)" }.first { access($0, X_OK) == 0 }
    }

    /// Runs `argv` (the first word looked up with `which`) and returns its status and output. The child gets
    /// a plain environment (PATH, LC_ALL=C) plus `environment`.
    public static func run(_ argv: [String], environment: [String: String] = [:]) throws(Failure) -> Result {
        guard let tool = argv.first, let exe = which(tool) else { throw .notFound(argv.first ?? "") }
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        // Close-on-exec from the start, so no child spawned meanwhile by another thread inherits them.
        guard sz_pipe2(&outPipe, O_CLOEXEC) == 0 else { return Result(status: -1, output: "", errorOutput: "pipe2: \(String(cString: strerror(errno)))") }
        guard sz_pipe2(&errPipe, O_CLOEXEC) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            return Result(status: -1, output: "", errorOutput: "pipe2: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // Nothing else of this process: a child must not hold another thread's pipe open past its end.
        _ = sz_spawn_add_close_from(&actions, 3)  // glibc 2.34+ (an older one: ENOSYS, and only close-on-exec descriptors close)
        let args = [exe] + argv.dropFirst()
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        // A plain environment: the tools need no more, and LC_ALL=C keeps their messages parseable.
        let envText = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"] + environment.map { "\($0.key)=\($0.value)" }
        var cEnv: [UnsafeMutablePointer<CChar>?] = envText.map { strdup($0) } + [nil]
        defer { for p in cEnv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, nil, &cArgs, &cEnv)
        close(outPipe[1]); close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            return Result(status: -1, output: "", errorOutput: "posix_spawn \(exe): \(String(cString: strerror(rc)))")
        }
        let (out, err) = readBoth(outPipe[0], errPipe[0])
        close(outPipe[0]); close(errPipe[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: code, output: out, errorOutput: err)
    }

    /// Runs `argv` and throws unless it exits 0.
    @discardableResult
    public static func check(_ argv: [String]) throws(Failure) -> String {
        let r = try run(argv)
        guard r.ok else { throw .failed(command: argv, result: r) }
        return r.output
    }

    /// `argv` run inside network namespace `ns` (`ip netns exec NS ...`).
    public static func inNamespace(_ ns: String, _ argv: [String]) -> [String] { ["ip", "netns", "exec", ns] + argv }


    private static func readBoth(_ a: Int32, _ b: Int32) -> (String, String) {
        var bufs: [[UInt8]] = [[], []]
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var open = 2
        var chunk = [UInt8](repeating: 0, count: 65536)
        while open > 0 {
            let r = poll(&fds, 2, -1)
            if r < 0 { if errno == EINTR { continue }; break }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if n > 0 { bufs[i].append(contentsOf: chunk[..<n]) } else if n == 0 || errno != EINTR {
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        return (String(decoding: bufs[0], as: UTF8.self), String(decoding: bufs[1], as: UTF8.self))
    }
}
