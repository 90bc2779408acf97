import Foundation
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ

/// The `szmock` executable built next to this test bundle.
let szmock = builtExecutable("szmock")
/// Debian's pyzmq works only with this interpreter.
let python = pyzmqPython

/// A file of the package's `Fixtures/` folder.
func fixture(_ relative: String) -> String { fixturePath(relative) }

/// A mock handler running in this process, with a control endpoint in its own temporary folder.
final class InProcessHandler: @unchecked Sendable {
    let folder: TemporaryFolder
    let handler: MockHandler
    let events = EventLog.Memory()

    init(id: String = "h-test", configure: (inout MockHandlerConfiguration) -> Void = { _ in }) throws {
        folder = try TemporaryFolder(prefix: "szmock")
        var cfg = MockHandlerConfiguration(id: id, bind: "tcp://127.0.0.1:*")
        cfg.control = folder.ipcEndpoint("c")
        cfg.seed = 1
        configure(&cfg)
        handler = MockHandler(configuration: cfg, log: EventLog([events.sink]))
        try handler.startAndWait(timeout: .seconds(10))
    }

    deinit { handler.stop(timeout: .seconds(3)) }

    var endpoint: String { handler.endpoint! }
    var control: String { handler.controlEndpoint! }
}

/// One call through the self-healing client, on a thread of its own; returns the reply and the client's stats.
func call(_ endpoint: String, _ method: String, _ params: [String: JSONValue] = [:],
          timeout: Duration = .seconds(2), attempts: Int = 1, deadline: Duration = .seconds(20)) async throws -> (Reply, ClientStats) {
    try await onThread("\(method) to \(endpoint)", timeout: deadline) {
        try SyncClient.with(endpoint: endpoint, configuration: ClientConfiguration(timeout: timeout, attempts: attempts)) { c in
            let r = try c.call(method, params: params)
            return (r, c.stats)
        }
    }
}

/// A control request on a thread of its own.
func control(_ endpoint: String, _ method: String, _ params: [String: JSONValue] = [:]) async throws -> Reply {
    try await onThread("control \(method)", timeout: .seconds(10)) {
        try MockControl.send(endpoint, method, params: params, timeout: .seconds(3))
    }
}

/// Starts `szmock` with arguments; killed and reaped when released.
func startSzmock(_ args: [String], environment: [String: String] = [:]) throws -> TestProcess {
    try TestProcess(szmock, args, environment: environment)
}

/// Runs `szmock call ...` to its end and returns its exit status and stdout.
/// The child being reaped is not its output being read: the reader thread may still hold the last line
/// (`regression_integration_zmq_SzmockCallOutput`), so this waits for both pipes to close as well (`TestProcess.run`).
func runCall(_ args: [String], timeout: Duration = .seconds(20)) async throws -> (TestProcess.ExitStatus, [String]) {
    let r = try await TestProcess.run(szmock, ["call"] + args, timeout: timeout)
    return (r.status, r.lines)
}

extension Dictionary where Key == String, Value == JSONValue {
    func string(_ k: String) -> String? { self[k]?.stringValue }
    func int(_ k: String) -> Int64? { self[k]?.intValue }
}

/// Reads JSON lines of a journal file.
func journal(_ path: String) -> [[String: JSONValue]] {
    guard let data = FileManager.default.contents(atPath: path) else { return [] }
    return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { (try? JSON.parse(String($0)))?.objectValue }
}

