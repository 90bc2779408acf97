import Foundation
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing

@Suite(.tags(.unit, .zmq), .leakChecked)
struct unit_zmq_MockPeersLogic {
    @Test func faultSettingsApplyValidateAndReport() throws {
        var f = FaultSettings()
        try f.apply(["drop_next": 2, "drop_probability": 0.25, "delay_ms": 10, "jitter_ms": 5, "swallow_next": 1,
                     "garbage": "wrong_shape", "crash_after": 3, "crash_signal": "SIGABRT", "ignore_sigterm": true])
        #expect(f.dropNext == 2 && f.swallowNext == 1 && f.garbage == .wrongShape && f.crashAfter == 3)
        #expect(f.crashMode == .signal(6))
        #expect(f.json["crash_signal"] == "SIGABRT")
        #expect(f.json["drop_probability"] == .double(0.25))
        let before = f
        #expect(throws: PeerError.self) { try f.apply(["bogus": 1]) }
        #expect(throws: PeerError.self) { try f.apply(["drop_probability": 1.5]) }
        #expect(throws: PeerError.self) { try f.apply(["drop_next": -1, "delay_ms": 99]) }
        #expect(throws: PeerError.self) { try f.apply(["garbage": "noise"]) }
        #expect(throws: PeerError.self) { try f.apply(["crash_exit_code": 300]) }
        #expect(f == before, "a rejected fault.set changes nothing")
        try f.apply(["garbage": nil, "crash_after": nil, "drop_next": 0])
        #expect(f.garbage == nil && f.crashAfter == nil && f.dropNext == 0)
        #expect(FaultSettings().json == .object([:]))
    }

    @Test func jobSpecFlagAndFileForms() throws {
        let j = try JobSpec.parse(#"h-1:increment_counter:{"counter_name":"c","mail":"a@b"}@200ms*5"#, id: "job-1")
        #expect(j.handlerID == "h-1" && j.method == "increment_counter" && j.interval == .milliseconds(200) && j.count == 5)
        #expect(j.params["mail"] == "a@b")
        let k = try JobSpec.parse("h:ping", id: "j")
        #expect(k.interval == .seconds(1) && k.count == nil && k.params.isEmpty)
        #expect(try JobSpec.parse(#"h:echo:{"x":"@"}"#, id: "j").params["x"] == "@")
        #expect(try JobSpec.parse("h:ping@1.5s", id: "j").interval == .milliseconds(1500))
        #expect(throws: PeerError.self) { try JobSpec.parse("nocolon", id: "j") }
        #expect(throws: PeerError.self) { try JobSpec.parse("h:m:[1]", id: "j") }
        #expect(throws: PeerError.self) { try JobSpec.parse("h:m@fast", id: "j") }
        #expect(throws: PeerError.self) { try JobSpec.parse("h:m@1s*0", id: "j") }
        let file = try JobSpec.parseFile(Array(#"[{"handler_id":"a","method":"ping","interval_ms":50,"count":2},{"id":"x","handler_id":"b","method":"echo","params":{"k":1}}]"#.utf8))
        #expect(file.count == 2 && file[0].id == "job-1" && file[0].count == 2 && file[1].id == "x" && file[1].interval == .seconds(1))
        #expect(throws: PeerError.self) { try JobSpec.parseFile(Array(#"{"nope":1}"#.utf8)) }
    }

    @Test func sandboxRefusesEscapes() {
        #expect(HandlerCore.sandboxed("a.txt", in: "/s") == "/s/a.txt")
        #expect(HandlerCore.sandboxed("d/e/a.txt", in: "/s/") == "/s/d/e/a.txt")
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a", "a/..", "a\0b"] {
            #expect(HandlerCore.sandboxed(bad, in: "/s") == nil, "\(bad)")
        }
    }

    @Test func handlerCoreAnswersEveryMethodAndEveryProtocolError() throws {
        let core = HandlerCore(handlerID: "h1", maxMessageBytes: 256)
        func reply(_ frames: [[UInt8]]) throws -> Reply {
            guard case .reply(let bytes, _) = core.handle(frames) else { throw PeerError.io("not a reply") }
            return try Reply.decode(bytes)
        }
        func req(_ m: String, _ p: [String: JSONValue] = [:]) throws -> Reply { try reply([Request(method: m, params: p).encoded()]) }
        guard case .reply(let pong, false) = core.handle([Array(#"{"method":"ping"}"#.utf8)]) else { Issue.record("ping"); return }
        #expect(String(decoding: pong, as: UTF8.self) == #"{"handler_id":"h1","message":"pong","success":true}"#)
        #expect(try req("echo", ["a": 1])["a"] == 1)
        #expect(try req("fail", ["error": "boom"]) == .failure("boom"))
        #expect(try req("increment_counter", ["counter_name": "c"])["value"] == 1)
        let second = try req("increment_counter", ["counter_name": "c"])
        #expect(second.fields == ["success": true, "status": "success", "counter": "c", "value": 2])
        #expect(try req("heartbeat")["status"] == "alive")
        let count = try req("get_execution_count")
        #expect(count["total_executions"] == 5 && count["handler_id"] == "h1")
        #expect(count["by_method"]?["increment_counter"] == 2)
        #expect(try req("sleep", ["ms": 1])["slept_ms"] == 1)
        #expect(try req("write_file", ["filename": "a"]).error?.contains("sandbox") == true)
        #expect(try req("nope") == .failure("Unknown method: nope"))
        #expect(try reply([Array("{not json".utf8)]) == .failure("Invalid JSON"))
        #expect(try reply([Array("[1,2]".utf8)]).success == false)
        #expect(try reply([Array(#"{"method":"ping","params":[1]}"#.utf8)]).success == false)
        #expect(try reply([Array("{}".utf8), Array("{}".utf8)]) == .failure(Wire.multipartRejected))
        #expect(try reply([[UInt8](repeating: 32, count: 300)]) == .failure(Wire.tooLarge(300, limit: 256)))
        #expect(core.handle([Request(method: "crash", params: ["exit_code": 9]).encoded()]) == .crash(9))
    }

    @Test func serverRepliesAsUpstream() {
        let server = MockServer(configuration: MockServerConfiguration())
        #expect(server.handle(Request(method: "ping")).fields == ["success": true, "message": "pong"])
        #expect(server.handle(Request(method: "report_status", params: ["handler_id": "h", "status": "offline"])) == .failure("Handler not registered"))
        let reg = Request(method: "register", params: ["handler_id": "h", "address": "tcp://127.0.0.1:1", "methods": ["ping"]])
        let first = server.handle(reg)
        #expect(first.fields == ["success": true, "handler_id": "h", "address": "tcp://127.0.0.1:1", "status": "registered",
                                 "methods": ["ping"], "message": "Handler 'h' registered successfully"])
        #expect(server.handle(reg)["message"] == "Handler 'h' re-registered successfully")
        #expect(server.handle(Request(method: "report_status", params: ["handler_id": "h", "status": "offline"])).fields
                == ["success": true, "handler_id": "h", "status": "offline"])
        #expect(server.handlers["h"]?.status == "offline" && server.handlers["h"]?.registrations == 2)
        #expect(server.handle(Request(method: "x")) == .failure("Unknown method: x"))
    }

    @Test func eventLinesStartWithTheirName() throws {
        let line = EventLog.line("ready", ["role": "handler", "id": "h", "pid": 3])
        #expect(line == #"{"event":"ready","id":"h","pid":3,"role":"handler"}"#)
        #expect(EventLog.line("stopped", [:]) == #"{"event":"stopped"}"#)
        #expect(try JSON.parse(line)["event"] == "ready")
    }
}
