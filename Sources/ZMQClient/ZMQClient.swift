import ScheduleZeroWire
import ZeroMQ

/// The self-healing ScheduleZero client for async code.
///
/// An actor whose methods all run on a `DedicatedThread` of its own, so the blocking libzmq calls of its
/// `SyncClient` never occupy Swift's cooperative pool. Calls from many tasks at once are serialised on that
/// thread: none hangs past its own attempts x timeout, none is lost, and each gets its own reply.
public actor ZMQClient {
    private let thread: DedicatedThread
    private let client: SyncClient
    public nonisolated let endpoint: String
    public nonisolated let configuration: ClientConfiguration

    public nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }

    public init(endpoint: String, configuration: ClientConfiguration = .init()) throws {
        self.endpoint = endpoint
        self.configuration = configuration
        self.thread = DedicatedThread(name: "zmq-client")
        do {
            self.client = try SyncClient(endpoint: endpoint, configuration: configuration)
        } catch {
            thread.shutdown()
            throw error
        }
    }

    deinit {
        // The SyncClient terminates its context in its own deinit, right after this one.
        thread.shutdown()
    }

    public func connect() throws { try client.connect() }
    public func ping() throws -> Reply { try client.ping() }
    public func call(_ method: String, params: [String: JSONValue] = [:]) throws -> Reply {
        try client.call(method, params: params)
    }
    public func call(_ request: Request) throws -> Reply { try client.call(request) }
    public func exchange(_ frame: [UInt8]) throws -> [UInt8] { try client.exchange(frame) }
    public var stats: ClientStats { client.stats }
    public func close() { client.close() }
    /// Closes the socket, terminates the context and ends the client's thread.
    public func terminate() {
        client.terminate()
        thread.shutdown()
    }
    public var isTerminated: Bool { client.isTerminated }
    public func sabotage(_ kind: SyncClient.SabotageKind) throws { try client.sabotage(kind) }

    /// Runs `body` with a client and always terminates it, its context and its thread.
    public static func with<R: Sendable>(
        endpoint: String, configuration: ClientConfiguration = .init(),
        _ body: (ZMQClient) async throws -> R
    ) async throws -> R {
        let client = try ZMQClient(endpoint: endpoint, configuration: configuration)
        do {
            let r = try await body(client)
            await client.terminate()
            return r
        } catch {
            await client.terminate()
            throw error
        }
    }
}
