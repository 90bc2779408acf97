import Foundation
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ

/// Sends raw frames on a REQ socket and returns the one reply frame (fails after `timeout`).
func rawExchange(_ endpoint: String, _ frames: [[UInt8]], timeout: Duration = .seconds(3)) async throws -> [UInt8] {
    try await onThread("raw exchange", timeout: timeout + .seconds(5)) {
        let ctx = try Context()
        defer { try? ctx.terminate(timeout: .seconds(1)) }
        let s = try ctx.socket(.req)
        try s.setReceiveTimeout(timeout)
        try s.connect(endpoint)
        try s.send(multipart: frames)
        let reply = try s.receiveMultipart()
        guard reply.count == 1 else { throw PeerError.io("\(reply.count) reply frames") }
        return reply[0]
    }
}

@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_MockHandlerMethods {
    @Test func everyMethodAnswersOverTheWire() async throws {
        let h = try InProcessHandler(id: "h-m") { $0.sandbox = nil }
        let ep = h.endpoint
        #expect(try await call(ep, "ping").0.fields == ["success": true, "message": "pong", "handler_id": "h-m"])
        #expect(try await call(ep, "echo", ["k": "v"]).0.fields == ["success": true, "k": "v"])
        #expect(try await call(ep, "sleep", ["ms": 20]).0["slept_ms"] == 20)
        #expect(try await call(ep, "fail", ["error": "asked"]).0 == .failure("asked"))
        #expect(try await call(ep, "increment_counter", ["counter_name": "n"]).0["value"] == 1)
        #expect(try await call(ep, "increment_counter", ["counter_name": "n"]).0["value"] == 2)
        let hb = try await call(ep, "heartbeat").0
        #expect(hb["status"] == "alive" && hb["handler_id"] == "h-m" && hb["timestamp"]?.stringValue != nil)
        let count = try await call(ep, "get_execution_count").0
        #expect(count["total_executions"] == 6)
        #expect(count["by_method"] == ["echo": 1, "sleep": 1, "fail": 1, "increment_counter": 2, "heartbeat": 1])
        #expect(try await call(ep, "no_such").0 == .failure("Unknown method: no_such"))
        let c = h.handler.counters
        #expect(c.requests == 9 && c.replies == 9 && c.errors == 2)
    }

    @Test func protocolErrorsGetErrorRepliesAndTheHandlerKeepsServing() async throws {
        let h = try InProcessHandler { $0.maxMessageBytes = 1024 }
        let ep = h.endpoint
        func decoded(_ frames: [[UInt8]]) async throws -> Reply { try Reply.decode(try await rawExchange(ep, frames)) }
        #expect(try await decoded([Array("{oops".utf8)]) == .failure("Invalid JSON"))
        #expect(try await decoded([Array("\"just a string\"".utf8)]) == .failure("Invalid request: expected a JSON object"))
        #expect(try await decoded([Array(#"{"params":{}}"#.utf8)]) == .failure("Invalid request: missing method"))
        #expect(try await decoded([Request(method: "ping").encoded(), Request(method: "ping").encoded()]) == .failure(Wire.multipartRejected))
        let big = Request(method: "echo", params: ["x": .string(String(repeating: "a", count: 2000))]).encoded()
        #expect(try await decoded([big]) == .failure(Wire.tooLarge(big.count, limit: 1024)))
        #expect(try await decoded([[]]) == .failure("Invalid JSON"))
        #expect(try await call(ep, "ping").0["message"] == "pong")
        #expect(h.handler.counters.errors == 6)
    }

    @Test func writeFileStaysInsideTheSandbox() async throws {
        let box = try TemporaryFolder(prefix: "szbox")
        let sandbox = box.file("sandbox")
        try FileManager.default.createDirectory(atPath: sandbox, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: sandbox + "/out", withDestinationPath: box.path)
        let h = try InProcessHandler { $0.sandbox = sandbox }
        let ok = try await call(h.endpoint, "write_file", ["filename": "d/a.txt", "content": "hello"]).0
        #expect(ok["status"] == "success" && ok["size"] == 5)
        #expect(FileManager.default.contents(atPath: sandbox + "/d/a.txt") == Data("hello".utf8))
        for bad in ["../escape.txt", "/tmp/abs.txt", "d/../../escape.txt", "out/escape.txt"] {
            let r = try await call(h.endpoint, "write_file", ["filename": .string(bad), "content": "x"]).0
            #expect(r.success == false, "\(bad)")
        }
        #expect(!FileManager.default.fileExists(atPath: box.file("escape.txt")))
    }

    @Test func crashMethodEndsTheInProcessHandlerWithoutAReply() async throws {
        let h = try InProcessHandler()
        await #expect(throws: ClientError.self) { try await call(h.endpoint, "crash", ["exit_code": 4], timeout: .milliseconds(300)) }
        #expect(h.handler.crashed)
        #expect(h.events.events.contains { $0["event"] == "crash" && $0["exit_code"] == 4 })
    }
}
