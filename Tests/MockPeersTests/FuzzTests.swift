import Foundation
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZeroMQ

@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_MockHandlerFuzz {
    /// Thousands of random and malformed frames (bytes, broken JSON, wrong shapes, deep nesting, multipart,
    /// oversized): every one gets exactly one well-formed reply, and `ping` still answers correctly.
    @Test func randomAndMalformedFramesNeverWedgeTheHandler() async throws {
        let h = try InProcessHandler(id: "fuzz") { $0.maxMessageBytes = 4096 }
        let ep = h.endpoint
        let count = 3000
        let outcome: (answered: Int, bad: [String]) = try await onThread("fuzz", timeout: .seconds(120)) {
            var rng = SeededGenerator(seed: 20251121)
            let ctx = try Context()
            defer { try? ctx.terminate(timeout: .seconds(1)) }
            let s = try ctx.socket(.req)
            try s.setReceiveTimeout(.seconds(5))
            try s.connect(ep)
            let pieces = ["{", "}", "[", "]", "\"method\"", ":", ",", "\"ping\"", "\"params\"", "null", "1e999", "-", "\\u00", "\"", "NaN", "true", " "]
            var answered = 0
            var bad: [String] = []
            for i in 0..<count {
                var frames: [[UInt8]]
                switch rng.next() % 7 {
                case 0: frames = [(0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }]
                case 1: frames = [Array((0..<Int(rng.next() % 12)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined().utf8)]
                case 2: frames = [Array(String(repeating: "[", count: Int(rng.next() % 600)).utf8)]
                case 3: frames = (0..<Int(2 + rng.next() % 3)).map { _ in Array("{\"method\":\"ping\"}".utf8) }
                case 4: frames = [[UInt8](repeating: UInt8(ascii: "a"), count: 4097 + Int(rng.next() % 2000))]
                case 5: frames = [Array(#"{"method":\#(["1", "null", "[]", "{}", "\"x\""][Int(rng.next() % 5)]),"params":\#(["1", "[]", "\"p\"", "{}"][Int(rng.next() % 4)])}"#.utf8)]
                default: frames = [Request(method: ["echo", "nope", "heartbeat", "get_execution_count"][Int(rng.next() % 4)],
                                           params: ["r": .int(Int64(rng.next() % 1000))]).encoded()]
                }
                try s.send(multipart: frames)
                let reply = try s.receiveMultipart()
                answered += 1
                if reply.count != 1 || (try? Reply.decode(reply[0])) == nil { bad.append("#\(i): \(reply)") }
            }
            return (answered, bad)
        }
        #expect(outcome.answered == count)
        #expect(outcome.bad.isEmpty, "\(outcome.bad.prefix(5))")
        let (pong, _) = try await call(ep, "ping")
        #expect(pong.fields == ["success": true, "message": "pong", "handler_id": "fuzz"])
        #expect(h.handler.counters.requests == count + 1)
        #expect(h.handler.counters.replies == count + 1)
    }
}
