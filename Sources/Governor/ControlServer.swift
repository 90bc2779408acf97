// The running governor's control endpoint: a ZeroMQ REP socket (normally
// `ipc://<root>/<deployment>/run/governor.control`) served by a thread of its own, speaking the ScheduleZero
// JSON shape: `{"method": M, "params": {...}}` -> `{"success": true, ...}` or `{"success": false, "error": ...}`.
// Each request is handed to an async handler; the serving thread (never a cooperative-pool thread) waits
// for its answer, so requests are answered one at a time, in order.
// Hardening: requests larger than `ReplyService.controlMaxMessageSize` (1 MiB) drop the connection; the
// ipc socket file is 0600 (its folder run/ is 0700); every request's peer must be the governor's own uid
// or root (ipc credentials), others get an error reply and `onRefused` (events.jsonl: control_refused).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ScheduleZeroWire
import Synchronization
import ZeroMQ
import ZMQClient

public final class ControlServer: Sendable {
    public typealias Handler = @Sendable (Request) async -> Reply
    public let endpoint: String
    private let context: Context
    private let stopFlag = CancelFlag()
    private let done = Mutex<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Binds `endpoint` now (throws when it cannot: the error names the endpoint) and starts serving.
    public init(endpoint: String, onRefused: (@Sendable (PeerRefusal) -> Void)? = nil,
                handler: @escaping Handler) throws {
        self.endpoint = endpoint
        let context = try Context()
        self.context = context
        let socket: Socket
        // The last reply (to `down`) must still go out: the send timeout is ReplyService's, linger a second.
        let service = ReplyService.control(pollInterval: .milliseconds(50), onRefused: onRefused)
        do {
            socket = try service.bind(endpoint, in: context).socket
        } catch {
            try? context.terminate(timeout: .seconds(1))
            throw GovernorError.invalidConfig("cannot serve the control endpoint \(endpoint): \(error)")
        }
        nonisolated(unsafe) let owned = socket  // handed to the serving thread, used only there
        let stopFlag = self.stopFlag
        let finished = self.finished
        let thread = Thread {
            // The last reply (to `down`) must still go out: linger a second on close.
            service.serve(owned, in: context, endpoint: endpoint, lingerOnClose: .seconds(1),
                          shouldStop: { stopFlag.isSet }) { Self.answer($0, handler) }
            finished.signal()
        }
        thread.name = "governor-control"
        thread.start()
    }

    /// Asks the serving thread to stop after the request it is answering (if any): non-blocking, so a
    /// request handler (`down`) may call it. `join()` waits for the thread.
    public func stop() {
        stopFlag.set()
    }

    /// Stops serving and waits until the thread has sent its last reply and closed the socket (libzmq then
    /// removes the ipc file), then terminates the context. Blocking: not from a request handler or the
    /// cooperative pool. Idempotent.
    public func join() {
        stopFlag.set()
        let first = done.withLock { d -> Bool in
            if d { return false }
            d = true
            return true
        }
        guard first else { return }
        finished.wait()
        try? context.terminate(timeout: .seconds(2))
        if endpoint.hasPrefix("ipc://") { unlink(String(endpoint.dropFirst(6))) }
    }

    /// Runs the async handler and blocks this (dedicated) thread until it answers.
    private static func answer(_ request: Request, _ handler: @escaping Handler) -> Reply {
        let box = Mutex<Reply?>(nil)
        let sem = DispatchSemaphore(value: 0)
        Task {
            let r = await handler(request)
            box.withLock { $0 = r }
            sem.signal()
        }
        sem.wait()
        return box.withLock { $0 } ?? .failure("no answer")
    }
}

/// Talks to a running governor's control endpoint. Blocking: call it from a thread of its own (the CLI's
/// main thread, a test's `onThread`).
public enum ControlClient {
    /// Sends one request; nil when nothing answers within `timeout` (no governor, or a dead one).
    public static func call(_ endpoint: String, _ method: String, params: [String: JSONValue] = [:],
                            timeout: Duration = .seconds(2)) -> Reply? {
        if endpoint.hasPrefix("ipc://"), !FileManager.default.fileExists(atPath: String(endpoint.dropFirst(6))) {
            return nil
        }
        let config = ClientConfiguration(timeout: timeout, attempts: 1)
        guard let client = try? SyncClient(endpoint: endpoint, configuration: config) else { return nil }
        defer { client.terminate() }
        return try? client.call(method, params: params)
    }
}
