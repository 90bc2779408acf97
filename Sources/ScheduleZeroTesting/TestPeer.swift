import Foundation
import ScheduleZeroWire
import ZeroMQ

/// A REP peer inside the test process, on a thread of its own, whose every answer the test decides.
///
/// It is the smallest real ScheduleZero handler: it binds a real socket (tcp on a free port, or ipc in a
/// temporary folder) and answers through libzmq, so the client under test sees real sockets. `stop()`
/// (or deinit) ends the thread, closes the socket and terminates the context.
public final class TestPeer: @unchecked Sendable {
    public enum Action: Sendable {
        case reply(Reply)
        case raw([UInt8])
        /// Receive and never answer: the REP socket is reopened, which leaves the caller's REQ socket stuck.
        case swallow
        /// Answer after a delay.
        case delayed(Duration, Reply)
    }

    public let endpoint: String
    private let context: Context
    private let lock = NSLock()
    private var handler: @Sendable (Request?, [[UInt8]]) -> Action
    private var stopping = false
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private var _received: [Request] = []
    private var _swallowed = 0

    /// Binds `bind` (default: a free tcp port on 127.0.0.1) and starts answering with `handler`.
    public init(bind: String = "tcp://127.0.0.1:*",
                handler: @escaping @Sendable (Request?, [[UInt8]]) -> Action = TestPeer.echo) throws {
        LeakGuard.install()
        context = try Context()
        self.handler = handler
        let socket = try context.socket(.rep)
        try socket.bind(bind)
        endpoint = try socket.lastEndpoint
        let box = SocketBox(socket)
        let t = Thread { [unowned self] in self.loop(box) }
        thread = t
        t.start()
    }

    deinit { stop() }

    /// Echoes `params` back with `success: true` (a `seq` in the params comes back as it went).
    public static let echo: @Sendable (Request?, [[UInt8]]) -> Action = { req, _ in
        guard let req else { return .reply(.failure(Wire.invalidJSON)) }
        if req.method == "ping" { return .reply(.ok(["message": "pong", "handler_id": "test-peer"])) }
        return .reply(.wrapping(.object(req.params)))
    }

    public func setHandler(_ h: @escaping @Sendable (Request?, [[UInt8]]) -> Action) {
        lock.lock(); handler = h; lock.unlock()
    }

    public var received: [Request] { lock.lock(); defer { lock.unlock() }; return _received }
    public var swallowed: Int { lock.lock(); defer { lock.unlock() }; return _swallowed }

    public func stop() {
        lock.lock()
        let wasRunning = !stopping && thread != nil
        stopping = true
        lock.unlock()
        if wasRunning { done.wait() }
        try? context.terminate(timeout: .seconds(2))
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func loop(_ box: SocketBox) {
        var socket = box.socket
        defer {
            socket.close(linger: .zero)
            done.signal()
        }
        while !isStopping {
            guard let ev = try? socket.poll(.pollIn, timeout: .milliseconds(20)), ev.contains(.pollIn) else { continue }
            guard let frames = try? socket.receiveMultipart() else { continue }
            let req = frames.count == 1 ? try? Request.decode(frames[0]) : nil
            lock.lock()
            if let req { _received.append(req) }
            let h = handler
            lock.unlock()
            switch h(req, frames) {
            case .reply(let r): try? socket.send(r.encoded())
            case .raw(let b): try? socket.send(b)
            case .delayed(let d, let r):
                Thread.sleep(forTimeInterval: Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
                try? socket.send(r.encoded())
            case .swallow:
                lock.lock(); _swallowed += 1; lock.unlock()
                socket.close(linger: .zero)
                // Rebind the same endpoint; the caller's REQ socket stays waiting for a reply that never comes.
                while !isStopping {
                    if let s = try? context.socket(.rep), (try? s.bind(endpoint)) != nil {
                        socket = s
                        break
                    }
                    Thread.sleep(forTimeInterval: 0.002)
                }
            }
        }
    }
}

/// Carries a freshly made socket to the thread that will own it.
final class SocketBox: @unchecked Sendable {
    let socket: Socket
    init(_ s: Socket) { socket = s }
}
