import Foundation
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ

/// Regression catalogue, mock peers: what upstream's Python handler got wrong, proved against ours.
@Suite(.tags(.regression, .integration, .zmq), .leakChecked)
struct regression_integration_zmq_MockPeers {
    /// Upstream's handler answered each frame of a multipart request as its own message, so the REQ peer
    /// got the reply to the last frame. A compatible peer rejects the message with one error reply.
    @Test func multipartRequestIsRejectedNotAnsweredForItsLastFrame() async throws {
        let folder = TemporaryDirectory()
        var cfg = MockHandlerConfiguration(id: "h-mp", bind: folder.ipcEndpoint("h.sock"))
        cfg.seed = 1
        let handler = MockHandler(configuration: cfg)
        try handler.startAndWait(timeout: .seconds(10))
        defer { _ = handler.stop(timeout: .seconds(3)) }
        let endpoint = try #require(handler.endpoint)
        let (replies, after) = try await onThread("a multipart request and a ping", timeout: .seconds(20)) {
            let ctx = try Context()
            defer { try? ctx.terminate() }
            let req = try ctx.socket(.req)
            try req.setReceiveTimeout(.seconds(5))
            try req.connect(endpoint)
            try req.send(multipart: [Request(method: "increment_counter", params: ["counter_name": "a"]).encoded(),
                                     Request(method: "ping").encoded()])
            let replies = try req.receiveMultipart()
            try req.send(Request(method: "ping").encoded())
            return (replies, try Reply.decode(try req.receive()))
        }
        #expect(replies.count == 1)
        let reply = try Reply.decode(replies[0])
        #expect(reply.fields == ["success": false, "error": .string(Wire.multipartRejected)])
        #expect(reply["message"] == nil, "the reply must not be the answer to the last frame (ping)")
        #expect(handler.counters.errors >= 1)
        #expect(after["message"] == "pong" && after["handler_id"] == "h-mp")
    }

    /// Upstream dropped its cached registration client on every re-registration without terminating its
    /// context: each server restart leaked a context and its I/O thread. Counted in a child process.
    @Test func reRegistrationDoesNotLeakAClient() async throws {
        let report = await oneExitTestAtATime { await #expect(processExitsWith: .success) {
            func fail(_ why: String) -> Never {
                ExitTestReport.line("LEAK: \(why)")
                exit(1)
            }
            func waitFor(_ what: String, _ cond: () -> Bool) {
                if (try? waitUntilSync(what, timeout: .seconds(20), cond)) == nil { fail("timed out waiting for \(what)") }
            }
            let folder = TemporaryDirectory()
            let serverEndpoint = folder.ipcEndpoint("server.sock")
            func startServer() throws -> MockServer {
                var s = MockServerConfiguration()
                s.bind = serverEndpoint
                let server = MockServer(configuration: s)
                try server.start()
                return server
            }
            var server = try startServer()
            var h = MockHandlerConfiguration(id: "h-rr", bind: folder.ipcEndpoint("h.sock"))
            h.server = serverEndpoint
            h.registration.heartbeatInterval = .milliseconds(30)
            h.registration.timeout = .milliseconds(100)
            h.registration.retryDelay = .milliseconds(30)
            h.registration.maxFailures = 1000
            let events = EventLog.Memory()
            let handler = MockHandler(configuration: h, log: EventLog([events.sink]))
            func count(_ name: String) -> Int { events.events.filter { $0["event"] == .string(name) }.count }
            try handler.startAndWait(timeout: .seconds(10))
            waitFor("the first registration") { server.handlers["h-rr"] != nil }
            let contextsBefore = Context.liveCount
            let fdsBefore = openFileDescriptors().count
            for round in 1...6 {
                let failuresBefore = count("registration_failed")
                _ = server.stop(timeout: .seconds(5))
                // A heartbeat fails while the server is away, so the handler must register again.
                waitFor("a failed heartbeat in round \(round)") { count("registration_failed") > failuresBefore }
                server = try startServer()
                waitFor("re-registration \(round)") { server.handlers["h-rr"] != nil }
            }
            waitFor("contexts and descriptors back to their count") {
                Context.liveCount <= contextsBefore && openFileDescriptors().count <= fdsBefore
            }
            _ = handler.stop(timeout: .seconds(5))
            _ = server.stop(timeout: .seconds(5))
        } }
        #expect(!report.contains("LEAK"), "\(report)")
    }
}
