import Foundation
import ScheduleZeroWire
#if canImport(Glibc)
import Glibc
#endif

/// The methods of the mock handler and the protocol errors, without sockets: frames in, reply bytes out.
///
/// Owned by the handler's data thread (not `Sendable`). Upstream's test handler is the model: `ping`,
/// `echo`, `sleep {ms}`, `fail {error}`, `increment_counter {counter_name}`, `heartbeat`,
/// `get_execution_count`, `write_file {filename, content}` (inside the sandbox only), `crash {exit_code}`.
public final class HandlerCore {
    public enum Outcome: Equatable {
        /// Send these bytes; `isError` when it is a `success: false` reply.
        case reply([UInt8], isError: Bool)
        /// The `crash` method: end the process with this exit code, sending nothing.
        case crash(Int32)
    }

    public let handlerID: String
    public let sandbox: String?
    public let maxMessageBytes: Int
    /// Longest `sleep` accepted.
    public let maxSleep: Duration
    /// Interrupts a `sleep` when the handler stops.
    let stop: Latch

    /// Methods that count as executions (as upstream's execution log).
    static let countedMethods: Set<String> = ["echo", "sleep", "fail", "increment_counter", "heartbeat", "write_file"]
    public static let methods = ["ping", "echo", "sleep", "fail", "increment_counter", "heartbeat",
                                 "get_execution_count", "write_file", "crash"]

    private(set) var executions: [String: Int64] = [:]
    private(set) var totalExecutions: Int64 = 0
    private var counterValues: [String: Int64] = [:]
    private let pingReply: [UInt8]

    public init(handlerID: String, sandbox: String? = nil, maxMessageBytes: Int = 1 << 20,
                maxSleep: Duration = .seconds(60), stop: Latch = Latch()) {
        self.handlerID = handlerID
        self.sandbox = sandbox
        self.maxMessageBytes = maxMessageBytes
        self.maxSleep = maxSleep
        self.stop = stop
        pingReply = Reply.ok(["message": "pong", "handler_id": .string(handlerID)]).encoded()
    }

    /// The method named by a frame, if it parses (for logging only).
    public static func methodName(of frame: [UInt8]) -> String? {
        (try? Request.decode(frame))?.method
    }

    /// Handles one message's body frames (the routing envelope already removed).
    public func handle(_ frames: [[UInt8]]) -> Outcome {
        if frames.count != 1 { return error(Wire.multipartRejected) }
        let frame = frames[0]
        if frame.count > maxMessageBytes { return error(Wire.tooLarge(frame.count, limit: maxMessageBytes)) }
        let request: Request
        do { request = try Request.decode(frame) } catch { return self.error(error.replyText) }
        return handle(request)
    }

    public func handle(_ request: Request) -> Outcome {
        let p = request.params
        if HandlerCore.countedMethods.contains(request.method) {
            executions[request.method, default: 0] += 1
            totalExecutions += 1
        }
        switch request.method {
        case "ping":
            return .reply(pingReply, isError: false)
        case "echo":
            return ok(.object(p))
        case "sleep":
            let ms = p["ms"]?.intValue ?? 0
            guard ms >= 0, Duration.milliseconds(ms) <= maxSleep else {
                return error("sleep: ms must be in 0...\(maxSleep.wholeMilliseconds)")
            }
            let stopped = sleep(.milliseconds(ms), unless: stop)
            return ok(["slept_ms": .int(ms), "interrupted": .bool(stopped)])
        case "fail":
            return error(p["error"]?.stringValue ?? "requested failure")
        case "increment_counter":
            let name = p["counter_name"]?.stringValue ?? "default"
            let v = (counterValues[name] ?? 0) + 1
            counterValues[name] = v
            return ok(["status": "success", "counter": .string(name), "value": .int(v)])
        case "heartbeat":
            return ok(["status": "alive", "handler_id": .string(handlerID), "timestamp": .string(isoNow())])
        case "get_execution_count":
            return ok(["total_executions": .int(totalExecutions),
                       "by_method": .object(executions.mapValues { .int($0) }),
                       "handler_id": .string(handlerID)])
        case "write_file":
            return writeFile(p)
        case "crash":
            let code = p["exit_code"]?.intValue ?? Int64(FaultSettings.defaultCrashExitCode)
            guard (0...255).contains(code) else { return error("crash: exit_code must be in 0...255") }
            return .crash(Int32(code))
        default:
            return error(Wire.unknownMethod(request.method))
        }
    }

    private func ok(_ v: JSONValue) -> Outcome { .reply(Reply.wrapping(v).encoded(), isError: false) }
    private func error(_ text: String) -> Outcome { .reply(Reply.failure(text).encoded(), isError: true) }

    private func writeFile(_ p: [String: JSONValue]) -> Outcome {
        guard let sandbox else { return error("write_file: this handler has no sandbox (start it with --sandbox DIR)") }
        let name = p["filename"]?.stringValue ?? "default.txt"
        let content = p["content"]?.stringValue ?? ""
        guard let path = HandlerCore.sandboxed(name, in: sandbox) else {
            return error("write_file: filename must be a relative path inside the sandbox: \(name)")
        }
        do {
            let url = URL(fileURLWithPath: path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            // The real parent must still be inside the sandbox (no escape through a symbolic link).
            guard let realParent = realPath(url.deletingLastPathComponent().path),
                  let realRoot = realPath(sandbox),
                  realParent == realRoot || realParent.hasPrefix(realRoot + "/") else {
                return error("write_file: filename must be a relative path inside the sandbox: \(name)")
            }
            if let attrs = try? FileManager.default.attributesOfItem(atPath: path),
               attrs[.type] as? FileAttributeType == .typeSymbolicLink {
                return error("write_file: refusing to write through a symbolic link: \(name)")
            }
            try Data(content.utf8).write(to: url, options: .atomic)
        } catch {
            return self.error("write_file: \(error.localizedDescription)")
        }
        return ok(["status": "success", "file": .string(path), "size": .int(Int64(content.utf8.count))])
    }

    /// `sandbox/name` when `name` is a plain relative path (no `..`, not absolute, no NUL); else nil.
    public static func sandboxed(_ name: String, in sandbox: String) -> String? {
        guard !name.isEmpty, !name.hasPrefix("/"), !name.contains("\0") else { return nil }
        let parts = name.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.isEmpty, !parts.contains(where: { $0 == ".." || $0 == "." }) else { return nil }
        return (sandbox.hasSuffix("/") ? sandbox : sandbox + "/") + parts.joined(separator: "/")
    }

    private func realPath(_ p: String) -> String? {
        guard let r = Glibc.realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    private func isoNow() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }
}
