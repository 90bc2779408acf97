import Foundation
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let havePyzmq = FileManager.default.isExecutableFile(atPath: python)

@Suite(.tags(.integration, .zmq), .leakChecked, .enabled(if: havePyzmq, "needs /usr/bin/python3 with python3-zmq"))
struct integration_zmq_PyzmqInterop {
    @Test func pyzmqClientWrittenLikeUpstreamCallsSzmockHandler() async throws {
        let h = try startSzmock(["handler", "--id", "h-py", "--log-requests"])
        let ep = try #require(try await h.ready().string("endpoint"))
        let client = try TestProcess(python, [fixture("peers/req_client.py"), ep, "ping", #"increment_counter:{"counter_name":"x"}"#,
                                               #"increment_counter:{"counter_name":"x"}"#, "no_such_method"])
        #expect(try await client.waitExit(timeout: .seconds(30)) == .exited(1), "\(client.stderrText)")
        let replies = client.events.map { $0["reply"] ?? .null }
        #expect(replies.count == 4, "\(client.lines) \(client.stderrText)")
        guard replies.count == 4 else { return }
        #expect(replies[0] == ["success": true, "message": "pong", "handler_id": "h-py"])
        #expect(replies[1] == ["success": true, "status": "success", "counter": "x", "value": 1])
        #expect(replies[2]["value"] == 2)
        #expect(replies[3] == ["success": false, "error": "Unknown method: no_such_method"])
        try await waitUntil("4 request events") { h.events.filter { $0["event"] == "request" }.count == 4 }
    }

    @Test func pyzmqHandlerWrittenLikeUpstreamRegistersAndReceivesJobs() async throws {
        let server = try startSzmock(["server", "--bind", "tcp://127.0.0.1:*", "--job", #"py-1:increment_counter:{"counter_name":"k"}@100ms*3"#,
                                      "--call-timeout-ms", "2000"])
        let sep = try #require(try await server.ready().string("endpoint"))
        let py = try TestProcess(python, [fixture("peers/handler.py"), "--id", "py-1", "--server", sep])
        let pyReady = try await py.ready(timeout: .seconds(20))
        let registered = try await py.event("registered", timeout: .seconds(20))
        let reg = registered["replies"]?.arrayValue ?? []
        #expect(reg.first == ["success": true, "message": "pong"])
        #expect(reg.last?["status"] == "registered" && reg.last?["message"] == "Handler 'py-1' registered successfully")
        #expect(reg.last?["address"] == pyReady["endpoint"])
        try await waitUntil("3 replies", timeout: .seconds(20)) { server.events.filter { $0["event"] == "reply" }.count == 3 }
        let values = server.events.filter { $0["event"] == "reply" }.map { $0["reply"]?["value"] }
        #expect(values == [1, 2, 3])
        // py printed each request line before its reply, but its reader thread stores them on its own schedule
        // (seen under load: 2 of 3 right after the third reply).
        try await py.caughtUp()
        #expect(py.events.filter { $0["event"] == "request" && $0["method"] == "increment_counter" }.count == 3)
        py.signal(SIGTERM)
        #expect(try await py.waitExit(timeout: .seconds(10)) == .exited(0))
        _ = try await server.event("report_status") { $0["handler_id"] == "py-1" && $0["status"] == "offline" && $0["known"] == true }
    }
}
