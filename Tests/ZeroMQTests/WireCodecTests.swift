import ScheduleZeroWire
import ScheduleZeroTesting
import Testing

@Suite(.tags(.unit, .zmq), .leakChecked)
struct unit_zmq_WireCodec {
    @Test func requestEncodesMethodAndParams() throws {
        let r = Request(method: "increment_counter", params: ["counter_name": "jobs"])
        #expect(JSON.string(r.json) == #"{"method":"increment_counter","params":{"counter_name":"jobs"}}"#)
        #expect(try Request.decode(r.encoded()) == r)
    }

    @Test func missingOrNullParamsMeanEmptyObject() throws {
        #expect(try Request.decode(Array(#"{"method": "ping"}"#.utf8)).params == [:])
        #expect(try Request.decode(Array(#"{"method": "ping", "params": null}"#.utf8)).params == [:])
    }

    @Test func pythonStyleRequestDecodes() throws {
        // json.dumps output of upstream's client: spaces after separators, insertion order.
        let text = #"{"method": "write_file", "params": {"filename": "a.txt", "content": "h\u00e9 \"q\"\n", "n": 5.0}}"#
        let r = try Request.decode(Array(text.utf8))
        #expect(r.method == "write_file")
        #expect(r.params["content"] == "hé \"q\"\n")
        #expect(r.params["n"]?.intValue == 5)
    }

    @Test(arguments: [
        ("not json", "Invalid JSON"),
        ("{\"method\": \"ping\"", "Invalid JSON"),
        ("", "Invalid JSON"),
        ("[1, 2]", "Invalid request: expected a JSON object"),
        ("\"ping\"", "Invalid request: expected a JSON object"),
        ("{\"params\": {}}", "Invalid request: missing method"),
        ("{\"method\": 5}", "Invalid request: missing method"),
        ("{\"method\": \"x\", \"params\": [1]}", "Invalid request: params must be an object"),
    ])
    func badRequestsNameTheirFault(text: String, replyText: String) {
        #expect(throws: Request.DecodeError.self) { try Request.decode(Array(text.utf8)) }
        do {
            _ = try Request.decode(Array(text.utf8))
        } catch {
            #expect(error.replyText == replyText)
        }
    }

    @Test func exactUpstreamErrorTexts() {
        #expect(Wire.unknownMethod("frobnicate") == "Unknown method: frobnicate")
        #expect(Wire.invalidJSON == "Invalid JSON")
        #expect(Wire.handlerNotRegistered == "Handler not registered")
        #expect(JSON.string(.object(Reply.failure("Invalid JSON").fields)) == #"{"error":"Invalid JSON","success":false}"#)
    }

    @Test func replyWrappingFollowsUpstream() {
        #expect(Reply.wrapping(["status": "ok"]).fields == ["status": "ok", "success": true])
        #expect(Reply.wrapping(["success": false, "error": "x"]).success == false)
        #expect(Reply.wrapping(42).fields == ["success": true, "result": 42])
        #expect(Reply.wrapping(.null).fields == ["success": true, "result": .null])
    }

    @Test func replyWithoutSuccessCountsAsSuccess() throws {
        #expect(try Reply.decode(Array(#"{"message": "pong"}"#.utf8)).success)
        #expect(try Reply.decode(Array(#"{"success": false, "error": "boom"}"#.utf8)).error == "boom")
        #expect(throws: Reply.DecodeError.self) { try Reply.decode(Array("[]".utf8)) }
        #expect(throws: Reply.DecodeError.self) { try Reply.decode(Array(#"{"success": "yes"}"#.utf8)) }
        #expect(throws: Reply.DecodeError.self) { try Reply.decode([0xFF, 0x00, 0x13]) }
    }

    @Test func jsonRoundTripsEveryKind() throws {
        let v: JSONValue = ["a": [1, 2.5, "x", true, false, nil], "b": ["nested": ["deep": -7]], "c": "\u{1F600}\t\u{01}"]
        #expect(try JSON.parse(JSON.encode(v)) == v)
        #expect(try JSON.parse("\"\\ud83d\\ude00\"") == "\u{1F600}")
        #expect(try JSON.parse("[NaN, Infinity, -Infinity]").arrayValue?.count == 3)
        #expect(try JSON.parse(" 1e3 ") == .double(1000))
    }

    @Test func hostileJSONIsRefusedNotCrashed() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSON.ParseError.self) { try JSON.parse(deep) }
        for bad in ["01", "1.", "-", "tru", "\"\\x\"", "\"\u{01}\"", "{\"a\" 1}", "[1,]", "{,}", "\"\\ud800\""] {
            #expect(throws: JSON.ParseError.self, "\(bad)") { try JSON.parse(bad) }
        }
    }

    @Test func seededGeneratorIsReproducible() {
        var a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42), c = SeededGenerator(seed: 43)
        let xa = (0..<5).map { _ in a.next() }, xb = (0..<5).map { _ in b.next() }, xc = (0..<5).map { _ in c.next() }
        #expect(xa == xb)
        #expect(xa != xc)
        for _ in 0..<1000 { let u = a.unit(); #expect(u >= 0 && u < 1) }
    }
}

@Suite(.tags(.unit, .zmq), .leakChecked)
struct unit_zmq_DurationTextFormat {
    @Test(arguments: [(Duration.seconds(2), "2s"), (.milliseconds(250), "250ms"), (.milliseconds(1500), "1500ms"),
                      (.seconds(90), "90s"), (.microseconds(500), "0.5ms"), (.nanoseconds(1_234_567), "1.235ms"),
                      (.zero, "0s"), (.microseconds(1_000_001), "1000.001ms")])
    func formatsWithTheUnitTheParserReadsBack(_ d: Duration, _ text: String) {
        #expect(DurationText.format(d) == text)
        let back = DurationText.value(text)
        #expect(back.map { abs(($0 - d).inMilliseconds) < 0.001 } == true, "\(text) reads back as \(String(describing: back))")
    }
}
