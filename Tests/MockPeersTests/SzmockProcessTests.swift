import Foundation
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif

@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_SzmockProcess {
    @Test func readyLineAndReadyFileNameTheRealEndpoints() async throws {
        let dir = try TemporaryFolder(prefix: "szp")
        let p = try startSzmock(["handler", "--id", "h-r", "--bind", "tcp://127.0.0.1:0", "--control", dir.ipcEndpoint("h.control"),
                                 "--ready-file", dir.file("ready.json")])
        let ready = try await p.ready()
        #expect(ready.string("role") == "handler" && ready.string("id") == "h-r" && ready.int("pid") == Int64(p.pid))
        #expect(ready.string("control") == dir.ipcEndpoint("h.control"))
        let ep = try #require(ready.string("endpoint"))
        #expect(ep.hasPrefix("tcp://127.0.0.1:") && !ep.hasSuffix(":0"))
        #expect(p.lines.first?.hasPrefix(#"{"event":"ready","#) == true)
        let file = try #require(FileManager.default.contents(atPath: dir.file("ready.json")))
        #expect(try JSON.parse(Array(file)).objectValue == ready)
        #expect(try await call(ep, "ping").0["handler_id"] == "h-r")
    }

    @Test func environmentVariablesGiveTheDefaults() async throws {
        let port = freeTCPPort()
        let p = try startSzmock(["handler"], environment: ["SCHEDULEZERO_TEST_HANDLER_ID": "env-h", "SCHEDULEZERO_HANDLER_HOST": "127.0.0.1",
                                                           "SCHEDULEZERO_HANDLER_PORT": "\(port)"])
        let ready = try await p.ready()
        #expect(ready.string("id") == "env-h" && ready.string("endpoint") == "tcp://127.0.0.1:\(port)")
    }

    @Test func callExitCodes() async throws {
        let h = try InProcessHandler()
        let ok = try await runCall([h.endpoint, "increment_counter", #"{"counter_name":"z"}"#])
        #expect(ok.0 == .exited(0))
        #expect(try JSON.parse(try #require(ok.1.first))["value"] == 1)
        let failed = try await runCall([h.endpoint, "fail", #"{"error":"no"}"#])
        #expect(failed.0 == .exited(1))
        #expect(try JSON.parse(try #require(failed.1.first)) == ["success": false, "error": "no"])
        let nobody = "tcp://127.0.0.1:\(freeTCPPort())"
        #expect(try await runCall([nobody, "ping", "--timeout", "150ms", "--attempts", "2"]).0 == .exited(1))
        #expect(try await runCall([h.endpoint, "ping", "[1,2]"]).0 == .exited(2))
        #expect(try await runCall([h.endpoint, "ping", "--bogus"]).0 == .exited(2))
        #expect(try await runCall(["localhost:1", "ping"]).0 == .exited(2))
        #expect(try await runCall([h.endpoint, "ping", "--strategy", "relaxed"]).0 == .exited(0))
        #expect(try await runCall([]).0 == .exited(2))
    }

    @Test func crashAfterExitsTheProcessWithItsCode() async throws {
        let p = try startSzmock(["handler", "--crash-after", "1", "--crash-exit-code", "7"])
        let ep = try #require(try await p.ready().string("endpoint"))
        #expect(try await call(ep, "ping").0.success)
        await #expect(throws: ClientError.self) { try await call(ep, "ping", timeout: .milliseconds(500)) }
        #expect(try await p.waitExit() == .exited(7))
    }

    @Test func crashSignalSetThroughTheControlChannelAborts() async throws {
        let dir = try TemporaryFolder(prefix: "szp")
        let p = try startSzmock(["handler", "--control", dir.ipcEndpoint("c")])
        let ready = try await p.ready()
        #expect(try await control(dir.ipcEndpoint("c"), "fault.set", ["crash_after": 0, "crash_signal": "SIGABRT"]).success)
        await #expect(throws: ClientError.self) { try await call(ready.string("endpoint")!, "ping", timeout: .milliseconds(500)) }
        #expect(try await p.waitExit() == .signaled(SIGABRT))
    }

    @Test func sigtermWithTheServerGoneExitsZeroQuickly() async throws {
        // Registered, then the server dies: the offline report has nobody to reach.
        let server = try startSzmock(["server", "--bind", "tcp://127.0.0.1:*"])
        let sep = try #require(try await server.ready().string("endpoint"))
        let h = try startSzmock(["handler", "--server", sep, "--registration-timeout-ms", "60000"])
        _ = try await h.event("registered")
        server.stop()
        h.signal(SIGTERM)
        let clock = ContinuousClock()
        let start = clock.now
        // A 60 s registration timeout: exiting well before it shows SIGTERM cut the call off (upstream hangs).
        #expect(try await h.waitExit(timeout: .seconds(50)) == .exited(0))
        #expect(clock.now - start < .seconds(30))
        // Never registered: the server address has nobody behind it at all, a registration call is in flight.
        let lonely = try startSzmock(["handler", "--server", "tcp://127.0.0.1:\(freeTCPPort())", "--registration-timeout-ms", "60000"])
        _ = try await lonely.ready()
        lonely.signal(SIGTERM)
        let start2 = clock.now
        #expect(try await lonely.waitExit(timeout: .seconds(50)) == .exited(0))
        #expect(clock.now - start2 < .seconds(30))
    }

    @Test func ignoreSigtermReallyIgnoresItUntilSIGKILL() async throws {
        let p = try startSzmock(["handler", "--ignore-sigterm"])
        let ep = try #require(try await p.ready().string("endpoint"))
        p.signal(SIGTERM)
        _ = try await p.event("signal_ignored")
        #expect(try await call(ep, "ping").0.success)
        #expect(p.exitStatus == nil)
        p.signal(SIGKILL)
        #expect(try await p.waitExit() == .signaled(SIGKILL))
    }

    @Test func slowStartDelaysReadiness() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let p = try startSzmock(["handler", "--slow-start-ms", "400"])
        _ = try await p.event("slow_start")
        _ = try await p.ready()
        #expect(clock.now - start >= .milliseconds(400))
    }

    @Test func registrationAndReRegistrationAfterAServerRestart() async throws {
        let dir = try TemporaryFolder(prefix: "szp")
        let server1 = try startSzmock(["server", "--bind", "tcp://127.0.0.1:*"])
        let sep = try #require(try await server1.ready().string("endpoint"))
        let h = try startSzmock(["handler", "--id", "h-reg", "--server", sep, "--heartbeat-ms", "200", "--registration-timeout-ms", "300",
                                 "--registration-retry-ms", "100", "--max-registration-failures", "100", "--control", dir.ipcEndpoint("c")])
        let hready = try await h.ready()
        #expect(try await h.event("registered").string("status") == "registered")
        let reg = try await server1.event("register")
        #expect(reg.string("handler_id") == "h-reg" && reg.string("address") == hready.string("endpoint"))
        server1.signal(SIGTERM)
        #expect(try await server1.waitExit() == .exited(0))
        _ = try await h.event("heartbeat_failed")
        let server2 = try startSzmock(["server", "--bind", sep])
        _ = try await server2.ready()
        _ = try await server2.event("register") { $0.string("handler_id") == "h-reg" }
        try await waitUntil("two registrations") { h.events.filter { $0["event"] == "registered" }.count == 2 }
        let list = try await call(sep, "list_handlers").0
        #expect(list["handlers"]?["h-reg"]?["address"] == hready["endpoint"])
        // A graceful stop reports offline to the live server.
        h.signal(SIGTERM)
        #expect(try await h.waitExit() == .exited(0))
        _ = try await server2.event("report_status") { $0.string("status") == "offline" && $0["known"] == true }
    }

    @Test func serverJournalShowsNoLostJobUnderDropFaults() async throws {
        let dir = try TemporaryFolder(prefix: "szp")
        let jobs = 20
        let server = try startSzmock(["server", "--bind", "tcp://127.0.0.1:*", "--journal", dir.file("journal.jsonl"),
                                      "--job", #"h-j:increment_counter:{"counter_name":"c"}@30ms*\#(jobs)"#,
                                      "--call-timeout-ms", "250", "--retry-delay-ms", "20", "--attempts", "5", "--seed", "7", "--quiet"])
        let sep = try #require(try await server.ready().string("endpoint"))
        let h = try startSzmock(["handler", "--id", "h-j", "--server", sep, "--drop-probability", "0.3", "--seed", "42",
                                 "--control", dir.ipcEndpoint("c")])
        _ = try await h.ready()
        let terminal: Set<String> = ["reply", "failure"]
        try await waitUntil("\(jobs) finished dispatches", timeout: .seconds(60)) {
            journal(dir.file("journal.jsonl")).filter { terminal.contains($0.string("event") ?? "") }.count >= jobs
        }
        server.signal(SIGTERM)
        #expect(try await server.waitExit() == .exited(0))
        let entries = journal(dir.file("journal.jsonl"))
        let dispatched = entries.filter { $0.string("event") == "dispatch" }.compactMap { $0.int("seq") }
        #expect(dispatched == Array(1...Int64(jobs)))
        for seq in 1...Int64(jobs) {
            let ends = entries.filter { terminal.contains($0.string("event") ?? "") && $0.int("seq") == seq }
            #expect(ends.count == 1, "seq \(seq) ends \(ends.count) times")
        }
        let attempts = entries.filter { $0.string("event") == "attempt" }.count
        let status = try await control(dir.ipcEndpoint("c"), "status")
        let counters = try #require(status["counters"])
        // Every attempt reached the handler; dropped replies are the duplicates (at-least-once). Each retry
        // follows a failed attempt, and each dropped reply failed one; an attempt can also fail on a reply
        // that came after its 250 ms (a starved machine), so drops are at most the failed attempts.
        let failedAttempts = entries.filter { $0.string("event") == "attempt_failed" }.count
        let failures = entries.filter { $0.string("event") == "failure" }.count
        let dropped = try #require(counters["dropped"]?.intValue)
        #expect(counters["requests"]?.intValue == Int64(attempts))
        #expect(dropped > 0)
        #expect(attempts - jobs == failedAttempts - failures)
        #expect(dropped <= Int64(failedAttempts), "\(dropped) dropped, \(failedAttempts) failed attempts")
    }
}
