import Foundation
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One foreign peer (`Fixtures/peers/foreign_server.py` or `foreign_handler.py`) started by /usr/bin/python3
/// in `dir` (they keep their state files in the working directory, like upstream's).
private func startForeign(_ script: String, in dir: TemporaryDirectory, _ environment: [String: String]) throws -> TestProcess {
    try TestProcess("/bin/sh", ["-c", "cd \"$0\" && exec /usr/bin/python3 \"$1\"", dir.path, fixture("peers/\(script)")],
                    environment: environment)
}

/// A foreign server on free ports, with a fast retry rule; its registration endpoint and HTTP port.
private struct ForeignServer {
    let process: TestProcess
    let dir: TemporaryDirectory
    let zmqPort: Int
    let httpPort: Int
    var endpoint: String { "tcp://127.0.0.1:\(zmqPort)" }

    init(attempts: Int = 3, timeoutMs: Int = 2000, retryDelayMs: Int = 100, zmqPort fixedPort: Int? = nil) async throws {
        let zmqPort = fixedPort ?? freeTCPPort()
        let httpPort = freeTCPPort()
        let dir = TemporaryDirectory(prefix: "fsrv")
        (self.zmqPort, self.httpPort, self.dir) = (zmqPort, httpPort, dir)
        process = try startForeign("foreign_server.py", in: dir, [
            "SCHEDULEZERO_ZMQ_HOST": "127.0.0.1", "SCHEDULEZERO_ZMQ_PORT": "\(zmqPort)", "SCHEDULEZERO_PORT": "\(httpPort)",
            "SZ_JOB_ATTEMPTS": "\(attempts)", "SZ_JOB_TIMEOUT_MS": "\(timeoutMs)", "SZ_JOB_RETRY_DELAY_MS": "\(retryDelayMs)",
            "SZ_SEED": "7",
        ])
        let ready = try await process.ready(timeout: .seconds(20))
        #expect(ready.string("endpoint") == "tcp://127.0.0.1:\(zmqPort)" && ready.string("http") == "http://127.0.0.1:\(httpPort)")
    }

    func post(_ body: String, timeout: Duration = .seconds(30)) async throws -> (Int, [String: JSONValue]) {
        let port = httpPort
        let (status, text) = try await onThread("POST /api/run_now", timeout: timeout + .seconds(5)) {
            try httpExchange(port: port, method: "POST", path: "/api/run_now", body: body, timeout: timeout)
        }
        return (status, (try? JSON.parse(text))?.objectValue ?? ["unparsed": .string(text)])
    }

    func get(_ path: String) async throws -> (Int, [String: JSONValue]) {
        let port = httpPort
        let (status, text) = try await onThread("GET \(path)", timeout: .seconds(15)) { try httpExchange(port: port, path: path) }
        return (status, (try? JSON.parse(text))?.objectValue ?? ["unparsed": .string(text)])
    }
}

/// A foreign handler with a fast heartbeat, registering with `server` (nil: nobody listens there).
private struct ForeignHandler {
    let process: TestProcess
    let dir: TemporaryDirectory
    let port: Int

    init(id: String, serverPort: Int, host: String = "127.0.0.1", port: Int = freeTCPPort(), environment: [String: String] = [:]) throws {
        let dir = TemporaryDirectory(prefix: "fh")
        (self.port, self.dir) = (port, dir)
        var env = ["SCHEDULEZERO_TEST_HANDLER_ID": id, "SCHEDULEZERO_HANDLER_HOST": host, "SCHEDULEZERO_HANDLER_PORT": "\(port)",
                   "SCHEDULEZERO_SERVER_HOST": "127.0.0.1", "SCHEDULEZERO_SERVER_PORT": "\(serverPort)", "SCHEDULEZERO_MAX_RETRIES": "50",
                   "SZ_HEARTBEAT_MS": "200", "SZ_REGISTRATION_TIMEOUT_MS": "1000", "SZ_REGISTRATION_RETRY_MS": "100"]
        for (k, v) in environment { env[k] = v }
        process = try startForeign("foreign_handler.py", in: dir, env)
    }

    var endpoint: String { "tcp://127.0.0.1:\(port)" }

    /// The lines of its execution log, by method.
    func executions(_ method: String) -> Int {
        journal(dir.file("execution_log.jsonl")).filter { $0["method"]?.stringValue == method }.count
    }
}

private func request(_ handlerID: String, _ method: String, _ params: String = "{}") -> String {
    #"{"handler_id": "\#(handlerID)", "job_method": "\#(method)", "job_params": \#(params)}"#
}

@Suite(.tags(.integration, .zmq), .leakChecked, .enabled(if: pyzmqAvailable, "needs /usr/bin/python3 with python3-zmq"))
struct integration_zmq_ForeignPeers {
    @Test func handlerRegistersTheEndpointItBoundAndReRegistersAfterRestarts() async throws {
        let server = try await ForeignServer()
        let h = try ForeignHandler(id: "f-1", serverPort: server.zmqPort)
        let ready = try await h.process.ready(timeout: .seconds(20))
        #expect(ready.string("endpoint") == h.endpoint)
        let registered = try await h.process.event("registered", timeout: .seconds(20))
        #expect(registered.string("address") == h.endpoint && registered.string("status") == "registered")
        #expect(registered["reply"] == ["success": true, "handler_id": "f-1", "address": .string(h.endpoint), "status": "registered",
                                        "methods": registered["reply"]?["methods"] ?? .null,
                                        "message": "Handler 'f-1' registered successfully"])
        let (code, list) = try await server.get("/api/handlers")
        #expect(code == 200)
        let entry = list["handlers"]?.arrayValue?.first
        #expect(entry?["id"] == "f-1" && entry?["address"] == .string(h.endpoint))
        #expect(entry?["methods"]?.arrayValue?.contains("slow") == true)
        let saved = try JSON.parse(try #require(FileManager.default.contents(atPath: server.dir.file("handler_registry.json"))).map { $0 })
        #expect(saved["f-1"]?["address"] == .string(h.endpoint))

        // The same id again (a restarted handler): the server says re-registered.
        h.process.signal(SIGTERM)
        #expect(try await h.process.waitExit(timeout: .seconds(10)) == .exited(0))
        _ = try await server.process.event("report_status") { $0["handler_id"] == "f-1" && $0["status"] == "offline" && $0["known"] == true }
        let again = try ForeignHandler(id: "f-1", serverPort: server.zmqPort)
        let second = try await again.process.event("registered", timeout: .seconds(20))
        #expect(second.string("status") == "re-registered" && second["reply"]?["message"] == "Handler 'f-1' re-registered successfully")

        // Binding `*` advertises 0.0.0.0, exactly like upstream (the server would connect to that string).
        let wild = try ForeignHandler(id: "f-wild", serverPort: server.zmqPort, host: "*")
        let wildReg = try await wild.process.event("registered", timeout: .seconds(20))
        #expect(wildReg.string("address") == "tcp://0.0.0.0:\(wild.port)")
    }

    @Test func aServerRestartIsNoticedByTheHeartbeatAndTheHandlerRegistersAgain() async throws {
        let port = freeTCPPort()
        let first = try await ForeignServer(zmqPort: port)
        let h = try ForeignHandler(id: "f-hb", serverPort: port)
        _ = try await h.process.event("registered", timeout: .seconds(20))
        first.process.signal(SIGTERM)
        #expect(try await first.process.waitExit(timeout: .seconds(5)) == .exited(0))
        _ = try await h.process.event("heartbeat_failed", timeout: .seconds(20))
        let second = try await ForeignServer(zmqPort: port)
        _ = try await second.process.event("register", timeout: .seconds(20)) { $0["handler_id"] == "f-hb" && $0["status"] == "registered" }
        try await waitUntil("two registered events", timeout: .seconds(20)) {
            h.process.events.filter { $0["event"] == "registered" }.count == 2
        }
    }

    @Test func runNowRunsAJobOnceAndAnErrorThreeTimes() async throws {
        let server = try await ForeignServer()
        let h = try ForeignHandler(id: "f-run", serverPort: server.zmqPort)
        _ = try await h.process.event("registered", timeout: .seconds(20))
        #expect(try await server.get("/api/health") == (200, ["status": "ok", "service": "ScheduleZero"]))

        let (code, reply) = try await server.post(request("f-run", "increment_counter", #"{"counter_name": "c"}"#))
        #expect(code == 200 && reply["success"] == true && reply["attempts"] == 1, "\(reply)")
        #expect(reply["result"] == ["success": true, "status": "success", "counter": "c", "value": 1])
        #expect(h.executions("increment_counter") == 1)
        let (status, counts) = try await runCall([h.endpoint, "get_execution_count"])
        #expect(status == .exited(0))
        let count = try JSON.parse(try #require(counts.first))
        #expect(count["by_method"]?["increment_counter"] == 1 && count["handler_id"] == "f-run")

        // A handler error is retried: three executions, one 500 naming the error.
        let (failCode, failed) = try await server.post(request("f-run", "fail", #"{"error": "nope"}"#))
        #expect(failCode == 500 && failed["success"] == false && failed["error"] == "Handler returned error: nope" && failed["attempts"] == 3,
                "\(failed)")
        #expect(h.executions("fail") == 3)

        #expect(try await server.post(request("nobody", "ping")).0 == 404)
        #expect(try await server.post(request("f-run", "not_registered_method")).0 == 400)
        #expect(try await server.post(#"{"handler_id": "f-run"}"#).1["error"] == "Missing required field: 'job_method'")
        #expect(try await server.post("{oops").0 == 400)
        #expect(try await server.get("/nothing").0 == 404)
    }

    /// Upstream's at-least-once delivery: a job that outlives the per-call timeout is sent again (after a ping
    /// of the cached connection) and runs again on the handler, while the caller sees one answer. The
    /// interposer's duplicate count is checked against exactly this.
    @Test func aJobSlowerThanTheTimeoutRunsAgainWhileTheCallerSeesOneAnswer() async throws {
        let server = try await ForeignServer(attempts: 3, timeoutMs: 1000, retryDelayMs: 100)
        let h = try ForeignHandler(id: "f-slow", serverPort: server.zmqPort)
        _ = try await h.process.event("registered", timeout: .seconds(20))
        // The first execution sleeps 2.5 s, past the 1 s timeout; the later ones answer at once.
        let (code, reply) = try await server.post(request("f-slow", "slow", #"{"ms": 2500, "first": 1}"#))
        #expect(code == 200 && reply["success"] == true, "\(reply)")
        let attempts = try #require(reply["attempts"]?.intValue)
        #expect(attempts >= 2)
        let slowRuns = h.executions("slow")
        #expect(slowRuns >= 2 && slowRuns <= Int(attempts), "ran \(slowRuns) times in \(attempts) attempts")
        // The server printed job_succeeded before its HTTP answer; its lines are stored on the reader's schedule.
        try await server.process.caughtUp()
        let job = server.process.events.filter { $0["event"] == "job_succeeded" }
        #expect(job.count == 1)
        let failedAttempts = server.process.events.filter { $0["event"] == "attempt_failed" }
        #expect(failedAttempts.first?["error"] == "Request timeout: slow")
        // Before the retry the cached client was pinged (upstream's get_client): reused, or failed and replaced.
        #expect(server.process.events.contains { $0["event"] == "ping_failed" || $0["event"] == "client_reused" })
    }

    @Test func sigtermEndsEachPeerWithExitZeroWithinItsDeadline() async throws {
        let server = try await ForeignServer(attempts: 1, timeoutMs: 20000)
        let h = try ForeignHandler(id: "f-term", serverPort: server.zmqPort)
        _ = try await h.process.event("registered", timeout: .seconds(20))
        // A job in flight: the server still stops at once, and the caller is answered (503) or cut off.
        let port = server.httpPort
        let inFlight = Task {
            try? await onThread("slow job", timeout: .seconds(30)) {
                try httpExchange(port: port, method: "POST", path: "/api/run_now", body: request("f-term", "slow", #"{"ms": 15000}"#),
                                 timeout: .seconds(20))
            }
        }
        _ = try await h.process.event("execute", timeout: .seconds(10)) { $0["method"] == "slow" }
        let (serverExit, serverTook) = try await measure { try await server.process.waitExitAfter(SIGTERM) }
        #expect(serverExit == .exited(0), "server: \(serverExit) after \(serverTook)")
        #expect(server.process.events.last?["event"] == "stopped")
        let answer = await inFlight.value
        #expect(answer == nil || answer?.0 == 503)

        // The handler is busy in `slow` and its server is gone: it still ends at once (upstream hangs).
        let (handlerExit, handlerTook) = try await measure { try await h.process.waitExitAfter(SIGTERM) }
        #expect(handlerExit == .exited(0), "handler: \(handlerExit) after \(handlerTook)")
        #expect(!h.process.events.contains { $0["event"] == "offline_reported" })  // nobody to report to

        // Never registered (nobody at the server's port): SIGTERM ends it too.
        let lonely = try ForeignHandler(id: "f-alone", serverPort: freeTCPPort())
        _ = try await lonely.process.ready(timeout: .seconds(20))
        let (lonelyExit, lonelyTook) = try await measure { try await lonely.process.waitExitAfter(SIGTERM) }
        // Upstream's hang lasts for ever: the exit within waitExitAfter's deadline is the check, not a time.
        #expect(lonelyExit == .exited(0), "\(lonelyExit) after \(lonelyTook)")
    }

    @Test func szmockCallGetsTheDocumentedRepliesFromBothPeers() async throws {
        let server = try await ForeignServer()
        let h = try ForeignHandler(id: "f-call", serverPort: server.zmqPort, environment: ["SZ_NO_REGISTRATION": "1"])
        _ = try await h.process.ready(timeout: .seconds(20))
        func reply(_ args: [String]) async throws -> (TestProcess.ExitStatus, JSONValue) {
            let (status, lines) = try await runCall(args + ["--timeout", "3s", "--attempts", "1"])
            return (status, try JSON.parse(try #require(lines.first, "no reply line for \(args)")))
        }
        #expect(try await reply([h.endpoint, "ping"]) == (.exited(0), ["success": true, "message": "pong", "handler_id": "f-call"]))
        #expect(try await reply([h.endpoint, "no_such"]) == (.exited(1), ["success": false, "error": "Unknown method: no_such"]))
        let hb = try await reply([h.endpoint, "heartbeat"])
        #expect(hb.0 == .exited(0) && hb.1["status"] == "alive" && hb.1["handler_id"] == "f-call")
        #expect(try await reply([h.endpoint, "write_file", #"{"filename": "../x", "content": "no"}"#]).0 == .exited(1))
        let wrote = try await reply([h.endpoint, "write_file", #"{"filename": "a.txt", "content": "hello"}"#])
        #expect(wrote.0 == .exited(0) && wrote.1["size"] == 5)
        #expect(try String(contentsOfFile: h.dir.file("test_output/a.txt"), encoding: .utf8) == "hello")
        let cleared = try await reply([h.endpoint, "clear_output"])
        #expect(cleared.1["files_removed"] == 1)
        #expect(try await reply([h.endpoint, "get_execution_count"]).1["total_executions"] == 1)

        #expect(try await reply([server.endpoint, "ping"]) == (.exited(0), ["success": true, "message": "pong"]))
        #expect(try await reply([server.endpoint, "report_status", #"{"handler_id": "ghost", "status": "offline"}"#])
                == (.exited(1), ["success": false, "error": "Handler not registered"]))
        #expect(try await reply([server.endpoint, "register", #"{"address": "tcp://127.0.0.1:1"}"#]).0 == .exited(1))
        #expect(try await reply([server.endpoint, "bogus"]) == (.exited(1), ["success": false, "error": "Unknown method: bogus"]))

        for ep in [h.endpoint, server.endpoint] {
            func raw(_ frames: [[UInt8]]) async throws -> Reply { try Reply.decode(try await rawExchange(ep, frames)) }
            #expect(try await raw([Array("{oops".utf8)]) == .failure("Invalid JSON"))
            #expect(try await raw([Array([0xFF, 0xFE])]) == .failure("Invalid JSON"))
            #expect(try await raw([Array("[1, 2]".utf8)]) == .failure("Invalid request: expected a JSON object"))
            #expect(try await raw([Array(#"{"params": {}}"#.utf8)]) == .failure("Invalid request: missing method"))
            #expect(try await raw([Request(method: "ping").encoded(), Request(method: "ping").encoded()]) == .failure(Wire.multipartRejected))
            #expect(try await reply([ep, "ping"]).0 == .exited(0))
        }
    }
}

extension TestProcess {
    /// Sends `sig` and waits (with a deadline) for the exit.
    fileprivate func waitExitAfter(_ sig: Int32, timeout: Duration = .seconds(10)) async throws -> TestProcess.ExitStatus {
        signal(sig)
        return try await waitExit(timeout: timeout)
    }
}
