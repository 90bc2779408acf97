import Foundation
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// The Swift client and a Swift REP loop against real pyzmq peers written like upstream's (Fixtures/peers).
@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_ClientPyzmqInterop {
    @Test func swiftClientCallsAPyzmqHandler() async throws {
        try #require(pyzmqAvailable, "needs Debian's python3-zmq for /usr/bin/python3 (scripts/install-deps.sh)")
        // The handler registers with a server first: a Swift REP peer plays it and answers success.
        let server = try TestPeer()
        defer { server.stop() }
        let py = try TestProcess(pyzmqPython, [fixturePath("peers/handler.py"), "--id", "py-h", "--server", server.endpoint])
        defer { py.stop() }
        let endpoint = try #require(try await py.ready(timeout: .seconds(20))["endpoint"]?.stringValue)
        _ = try await py.event("registered", timeout: .seconds(20))
        #expect(server.received.map(\.method) == ["ping", "register"])
        #expect(server.received.last?.params["address"] == .string(endpoint))

        let pid = py.pid
        let (replies, invalid, stalled, stats) = try await onThread("calls to the pyzmq handler", timeout: .seconds(30)) {
            try SyncClient.with(endpoint: endpoint, configuration: .init(timeout: .seconds(2), attempts: 1)) { c in
                var out: [Reply] = []
                out.append(try c.ping())
                out.append(try c.call("increment_counter", params: ["counter_name": "jobs"]))
                out.append(try c.call("increment_counter", params: ["counter_name": "jobs"]))
                out.append(try c.call("no_such_method"))
                let invalid = try Reply.decode(try c.exchange(Array("{not json".utf8)))
                // A peer that stops answering (SIGSTOP) then comes back: one timeout, then recovery.
                kill(pid, SIGSTOP)
                let stalled = (try? c.call("heartbeat")) == nil
                kill(pid, SIGCONT)
                out.append(try c.call("heartbeat"))
                return (out, invalid, stalled, c.stats)
            }
        }
        #expect(replies[0].fields == ["success": true, "message": "pong", "handler_id": "py-h"])
        #expect(replies[1]["value"] == 1 && replies[2]["value"] == 2 && replies[2]["counter"] == "jobs")
        #expect(replies[3].fields == ["success": false, "error": "Unknown method: no_such_method"])
        #expect(invalid.fields == ["success": false, "error": "Invalid JSON"])
        #expect(stalled, "a stopped peer must time the call out")
        #expect(replies[4]["status"] == "alive")
        #expect(stats.timeouts == 1 && stats.recreations >= 1)
    }

    @Test func pyzmqClientCallsASwiftREPLoop() async throws {
        try #require(pyzmqAvailable, "needs Debian's python3-zmq for /usr/bin/python3 (scripts/install-deps.sh)")
        let peer = try TestPeer { req, frames in
            guard let req else { return .reply(.failure(Wire.invalidJSON)) }
            switch req.method {
            case "ping": return .reply(.ok(["message": "pong", "handler_id": "swift-rep"]))
            case "echo": return .reply(.wrapping(.object(req.params)))
            default: return .reply(.failure(Wire.unknownMethod(req.method)))
            }
        }
        defer { peer.stop() }
        let py = try TestProcess(pyzmqPython, [fixturePath("peers/req_client.py"), peer.endpoint,
                                               "ping", #"echo:{"seq": 7, "text": "h\u00e9"}"#, "nope"])
        defer { py.stop() }
        #expect(try await py.waitExit(timeout: .seconds(30)) == .exited(1), "\(py.stderrText)")  // "nope" fails
        let replies = py.events.map { $0["reply"] ?? .null }
        try #require(replies.count == 3, "\(py.lines) \(py.stderrText)")
        #expect(replies[0] == ["success": true, "message": "pong", "handler_id": "swift-rep"])
        #expect(replies[1] == ["success": true, "seq": 7, "text": "hé"])
        #expect(replies[2] == ["success": false, "error": "Unknown method: nope"])
        #expect(peer.received.map(\.method) == ["ping", "echo", "nope"])
    }
}
