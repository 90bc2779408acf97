import Chaos
import Foundation
@testable import Interposer
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing

/// The link's bookkeeping without sockets: what counts as a duplicate execution, a lost request, a late
/// reply; the journal summary; `checks.links`; the server interposer's address rewrite.
@Suite(.tags(.unit), .leakChecked)
struct unit_LinkRecording {
    static func body(_ method: String, _ params: String = "{}") -> [UInt8] {
        Array(#"{"method":"\#(method)","params":\#(params)}"#.utf8)
    }

    @Test func aRetryAfterALostReplyIsOneDuplicateExecutionAndANewJobAfterADeliveredReplyIsNone() throws {
        let r = try LinkRecorder(link: "h-1", timeout: .seconds(10), journalPath: nil)
        let job = Self.body("increment_counter", #"{"counter_name":"c"}"#)
        let a = r.request(job)
        r.forwarded(a, fault: nil)
        r.executed(a)
        r.replied(a, delivered: false, fault: "drop_next")   // the handler ran it; the requester never heard
        let b = r.request(job)                               // the server's retry: the same bytes
        r.forwarded(b, fault: nil)
        r.executed(b)
        r.replied(b, delivered: true, fault: nil)
        #expect(r.counters.duplicateExecutions == 1)
        let c = r.request(job)                               // the next scheduled run of the same job
        r.forwarded(c, fault: nil)
        r.executed(c)
        r.replied(c, delivered: true, fault: nil)
        #expect(r.counters.duplicateExecutions == 1, "a job run again after its reply got through is a new job")
        #expect(r.counters.faulted == 1 && r.counters.delivered == 2)
    }

    @Test func aRetryWhileTheFirstCopyStillRunsCountsOnceBothHaveAnswered() throws {
        let r = try LinkRecorder(link: "h-1", timeout: .seconds(10), journalPath: nil)
        let job = Self.body("slow", #"{"ms":5000}"#)
        let a = r.request(job)
        r.forwarded(a, fault: nil)
        let b = r.request(job)                               // the requester timed out and retried
        r.forwarded(b, fault: nil)
        #expect(r.counters.duplicateExecutions == 0, "not before both copies have answered")
        r.executed(b)
        r.replied(b, delivered: true, fault: nil)
        #expect(r.counters.duplicateExecutions == 0)
        r.executed(a)                                        // the first copy finishes too: it ran twice
        r.replied(a, delivered: false, fault: nil, late: true)
        #expect(r.counters.duplicateExecutions == 1)
        #expect(r.counters.late == 1)
    }

    @Test func aRetryOfARequestThatWasNeverAnsweredIsNoKnownDuplicate() throws {
        let r = try LinkRecorder(link: "h-1", timeout: .milliseconds(1), journalPath: nil)
        let job = Self.body("write_file", #"{"filename":"f","content":"x"}"#)
        let a = r.request(job)
        r.forwarded(a, fault: nil)
        let b = r.request(job)
        r.forwarded(b, fault: nil)
        // Both pass the link's 1 ms timeout unanswered: the next tick after that declares them lost.
        try waitUntilSync("both requests declared lost") {
            r.tick()
            return r.counters.lost == 2
        }
        #expect(r.counters.duplicateExecutions == 0)
    }

    @Test func repeatedPingsAreNeverDuplicates() throws {
        let r = try LinkRecorder(link: "h-1", timeout: .seconds(10), journalPath: nil)
        for _ in 0..<3 {
            let x = r.request(Self.body("ping"))
            r.forwarded(x, fault: nil)
            r.executed(x)
            r.replied(x, delivered: false, fault: "drop_next")
        }
        #expect(r.counters.duplicateExecutions == 0 && r.counters.faulted == 3)
    }

    @Test func theMethodIsReadWithoutDecoding() {
        #expect(LinkRecorder.method(of: Array(#"{"method": "write_file", "params": {}}"#.utf8)) == "write_file")
        #expect(LinkRecorder.method(of: Array(#"{"params":{},"method":"ping"}"#.utf8)) == "ping")
        #expect(LinkRecorder.method(of: [0xFF, 0xFE, 0x00, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47]) == "?")
        #expect(LinkRecorder.method(of: Array(#"{"method": 3}"#.utf8)) == "?")
    }

    @Test func theSummaryCountsWhatTheJournalSaysFromAGivenTime() {
        func e(_ t: Double, _ fields: [String: JSONValue]) -> [String: JSONValue] { fields.merging(["t": .double(t)]) { a, _ in a } }
        let events: [[String: JSONValue]] = [
            e(5, ["event": "request", "id": 1, "method": "old", "forwarded": true]),
            e(10, ["event": "request", "id": 2, "method": "job", "forwarded": true]),
            e(10.1, ["event": "reply", "id": 2, "method": "job", "delivered": false, "fault": "drop_next", "handler_ms": 1.0]),
            e(11, ["event": "request", "id": 3, "method": "job", "forwarded": true]),
            e(11.1, ["event": "duplicate_execution", "id": 3, "of": 2, "method": "job"]),
            e(11.2, ["event": "reply", "id": 3, "method": "job", "delivered": true, "latency_ms": 4.0]),
            e(12, ["event": "request", "id": 4, "method": "ping", "forwarded": false, "fault": "swallow_next"]),
            e(13, ["event": "request", "id": 5, "method": "job", "forwarded": true, "fault": "delay"]),
            e(13.5, ["event": "reply", "id": 5, "method": "job", "delivered": true, "latency_ms": 2.0, "fault": "delay"]),
            e(14, ["event": "lost", "id": 6, "method": "job"]),
        ]
        let s = LinkSummary.summarize(events, link: "h-1", since: Date(timeIntervalSince1970: 9))
        #expect(s.requests == 4 && s.forwarded == 3 && s.delivered == 2 && s.lost == 1)
        #expect(s.duplicateExecutions == 1 && s.duplicatesByMethod == ["job": 1] && s.lostByMethod == ["job": 1])
        #expect(s.faulted == ["drop_next": 1, "swallow_next": 1])
        #expect(s.touched == ["delay": 2])
        #expect(s.latency.count == 2 && s.latency.p50 == 2.0 && s.latency.max == 4.0)
        #expect(LinkSummary.Percentiles((1...100).map(Double.init)).p95 == 95)
    }

    @Test func linkChecksParseAreLocatedAndAPatternThatMatchesNothingFails() throws {
        let base = "title: t\nduration: 1s\ndeployment: ci\nchecks:\n  links:\n"
        let e = try Experiment.parse(base + "    h-1: {max_duplicate_executions: 1, max_lost_requests: 0}\n    \"h-*\": {max_late_replies: 2}\n")
        #expect(e.checks.links.map(\.pattern).sorted() == ["h-*", "h-1"])
        #expect(throws: ExperimentError.self) { try Experiment.parse(base + "    h-1: {max_duplicates: 1}\n") }
        do {
            _ = try Experiment.parse(base + "    h-1: {}\n", file: "x.yaml")
            Issue.record("an empty link check was accepted")
        } catch {
            #expect("\(error)".contains("x.yaml:6:") && "\(error)".contains("checks.links.h-1"), "\(error)")
        }
        let none = ExperimentRunner.linkChecks([LinkCheckSpec(pattern: "h-9", maxDuplicateExecutions: 0)], [LinkSummary(link: "h-1")])
        #expect(none.count == 1 && !none[0].passed && none[0].message.contains("interpose: true"))
        var dup = LinkSummary(link: "h-1")
        dup.duplicateExecutions = 2
        let two = ExperimentRunner.linkChecks([LinkCheckSpec(pattern: "h-*", maxDuplicateExecutions: 1)], [dup, LinkSummary(link: "h-2")])
        #expect(two.map(\.passed) == [false, true])
    }

    @Test func theServerInterposerRewritesRegisteredPrivateAddressesToPublicOnes() {
        let r = AddressRewriter(["tcp://127.0.0.1:21001": "tcp://127.0.0.1:4245", "ipc:///d/run/h-2.private": "ipc:///d/run/h-2.sock"])
        #expect(r.publicEndpoint(for: "tcp://127.0.0.1:21001") == "tcp://127.0.0.1:4245")
        #expect(r.publicEndpoint(for: "tcp://0.0.0.0:21001") == "tcp://127.0.0.1:4245", "a handler that bound * registers 0.0.0.0")
        #expect(r.publicEndpoint(for: "tcp://10.1.2.3:21001") == nil)
        #expect(r.publicEndpoint(for: "ipc:///d/run/h-2.private") == "ipc:///d/run/h-2.sock")
        let reg = Array(#"{"method":"register","params":{"address":"tcp://0.0.0.0:21001","handler_id":"h-1","methods":[]}}"#.utf8)
        let out = r.rewrite(reg)
        #expect(out?.from == "tcp://0.0.0.0:21001" && out?.to == "tcp://127.0.0.1:4245")
        let decoded = out.flatMap { try? Request.decode($0.body) }
        #expect(decoded?.params["address"]?.stringValue == "tcp://127.0.0.1:4245" && decoded?.params["handler_id"]?.stringValue == "h-1")
        #expect(r.rewrite(Self.body("ping")) == nil)
        #expect(r.rewrite(Array(#"{"method":"register","params":{"address":"tcp://127.0.0.1:9"}}"#.utf8)) == nil)
    }
}
