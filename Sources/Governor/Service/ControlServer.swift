// The running governor's control endpoint: a ZeroMQ REP socket (normally
// `ipc://<root>/<deployment>/run/governor.control`) served by the governor's event loop (EventLoop.swift),
// speaking the ScheduleZero JSON shape: `{"method": M, "params": {...}}` -> `{"success": true, ...}` or
// `{"success": false, "error": ...}`. The socket's ZMQ_FD is in the loop's epoll set, edge-triggered: after
// every wake, and after every send, the loop reads ZMQ_EVENTS and receives while it says POLLIN (libzmq
// signals the descriptor only when that state may have changed, so stopping before POLLIN is gone would
// lose the wake). Each request is handed to an async handler in a Task; the socket is left alone until
// its answer comes back to the loop, so requests are answered one at a time, in order, and the loop never
// waits. `stop()` closes the socket right after the reply in flight (if any) is sent: no poll interval.
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
    private let serving: Serving
    private let done = Mutex<Bool>(false)

    /// Binds `endpoint` now (throws when it cannot: the error names the endpoint) and starts serving.
    public init(endpoint: String, onRefused: (@Sendable (PeerRefusal) -> Void)? = nil,
                handler: @escaping Handler) throws {
        self.endpoint = endpoint
        let context = try Context()
        self.context = context
        let socket: Socket
        let fd: Int32
        let service = ReplyService.control(onRefused: onRefused)
        do {
            socket = try service.bind(endpoint, in: context).socket
            fd = try socket.fileDescriptor
        } catch {
            try? context.terminate(timeout: .seconds(1))
            throw GovernorError.invalidConfig("cannot serve the control endpoint \(endpoint): \(error)")
        }
        serving = Serving(socket: socket, fd: fd, service: service, endpoint: endpoint, handler: handler)
        guard serving.register() else {
            socket.close(linger: .zero)
            try? context.terminate(timeout: .seconds(1))
            throw GovernorError.invalidConfig("cannot serve the control endpoint \(endpoint): epoll refused its ZMQ_FD")
        }
    }

    /// Whether the socket is closed (after `stop()`, once the reply in flight, if any, has been sent).
    public var isClosed: Bool { serving.isClosed }

    /// Asks the loop to stop serving after the request it is answering (if any): non-blocking, so a request
    /// handler (`down`) may call it. `join()` waits until the socket is closed.
    public func stop() {
        let serving = self.serving
        EventLoop.shared.post { serving.stopRequested() }
    }

    /// Stops serving and waits until the last reply has been handed to libzmq and the socket is closed
    /// (libzmq then removes the ipc file), then terminates the context (the 1 s linger lets that last reply
    /// leave). Blocking: not from a request handler, the loop or the cooperative pool. Idempotent.
    public func join() {
        stop()
        let first = done.withLock { d -> Bool in
            if d { return false }
            d = true
            return true
        }
        guard first else { return }
        serving.finished.wait()
        try? context.terminate(timeout: .seconds(2))
        if endpoint.hasPrefix("ipc://") { unlink(String(endpoint.dropFirst(6))) }
    }
}

/// The socket's state, touched on the loop thread only (after `register`).
private final class Serving: @unchecked Sendable {
    let socket: Socket
    let fd: Int32
    let service: ReplyService
    let endpoint: String
    let handler: ControlServer.Handler
    let finished = DispatchSemaphore(value: 0)
    private let token = Mutex<EventLoop.Token?>(nil)
    private var busy = false
    private var stopping = false
    private var closed = false
    private let closedFlag = Atomic<Bool>(false)
    var isClosed: Bool { closedFlag.load(ordering: .acquiring) }

    init(socket: Socket, fd: Int32, service: ReplyService, endpoint: String, handler: @escaping ControlServer.Handler) {
        self.socket = socket
        self.fd = fd
        self.service = service
        self.endpoint = endpoint
        self.handler = handler
    }

    func register() -> Bool {
        let loop = EventLoop.shared
        let ok = token.withLock { t in
            t = loop.watch(fd, events: Epoll.inEvent | Epoll.edgeTriggered) { [self] _ in drain() }
            return t != nil
        }
        // What arrived before the descriptor was watched (its edge may be gone) is read now.
        if ok { loop.post { [self] in drain() } }
        return ok
    }

    /// Receives and dispatches while ZMQ_EVENTS says POLLIN and no request is being answered.
    private func drain() {
        while !closed && !busy {
            if stopping { close(); return }
            guard let events = try? socket.events, events.contains(.pollIn),
                  let message = try? socket.receiveMessage(flags: .dontWait) else { return }
            if let refused = service.refusalReply(to: message, endpoint: endpoint) {
                send(refused)
                continue
            }
            switch ReplyService.request(from: message.frames) {
            case .failure(let e):
                send(e.reply)
            case .success(let request):
                busy = true
                let handler = self.handler
                Task { [self] in
                    let reply = await handler(request)
                    EventLoop.shared.post { self.answered(reply) }
                }
            }
        }
    }

    private func send(_ reply: Reply) {
        // REP never blocks a send in practice (a gone peer's reply is dropped); dontWait keeps the loop free.
        _ = try? socket.send(reply.encoded(), flags: .dontWait)
    }

    private func answered(_ reply: Reply) {
        send(reply)
        busy = false
        drain()  // also closes when a stop came meanwhile; and the send may have eaten an edge
    }

    func stopRequested() {
        stopping = true
        if !busy { close() }
    }

    private func close() {
        guard !closed else { return }
        closed = true
        if let t = token.withLock({ $0 }) { EventLoop.shared.unwatch(t) }
        socket.close(linger: .seconds(1))
        closedFlag.store(true, ordering: .releasing)
        finished.signal()
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

    /// Calls the deployment's running governor; nil when none answers.
    public static func call(_ locator: DeploymentLocator, _ method: String, params: [String: JSONValue] = [:],
                            timeout: Duration = .seconds(2)) -> Reply? {
        call(locator.controlEndpoint, method, params: params, timeout: timeout)
    }
}
