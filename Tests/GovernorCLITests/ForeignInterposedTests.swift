import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// Fixtures/deployments/foreign.yaml end to end: the pyzmq server and handlers (no control channel, only the
/// ScheduleZero protocol, like the real ones) under the real `szgovernor up --detach`, every link interposed,
/// faulted with the real `szchaos`. The file is copied into the test's folder with free ports for its fixed
/// ones (4263-4266) and the job timeouts shortened; everything else is the file as a user runs it.
@Suite(.tags(.integration, .zmq, .governor), .leakChecked, .serialized,
       .enabled(if: pyzmqAvailable, "needs /usr/bin/python3 with python3-zmq"))
struct integration_zmq_governor_ForeignInterposed {
    static let name = "foreign"
    /// The server's per-call timeout (SZ_JOB_TIMEOUT_MS) and the handlers' link timeout: sized for a loaded
    /// 2-core machine, short enough that a retried job takes seconds, not tens of them.
    static let jobTimeoutMs = 1500

    struct Rig {
        let h: CLIHarness
        let httpPort: Int
        let serverPort: Int
        let handlerPort: Int
        var dir: String { h.deploymentDir(integration_zmq_governor_ForeignInterposed.name) }
        func publicEndpoint(_ name: String) -> String {
            name == "server" ? "tcp://127.0.0.1:\(serverPort)" : "tcp://127.0.0.1:\(handlerPort + (name == "h-2" ? 1 : 0))"
        }
        func chaos(_ args: [String]) async throws -> CLIHarness.Run {
            try await h.szchaos(args, deployment: integration_zmq_governor_ForeignInterposed.name)
        }
        /// JSON lines of a file under the deployment folder (missing: none).
        func lines(_ file: String) -> [[String: JSONValue]] {
            let text = (try? String(contentsOfFile: dir + "/" + file, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { (try? JSON.parse(Array($0.utf8)))?.objectValue }
        }
        /// How many times handler `name` executed `method` with counter `counter` (its execution_log.jsonl).
        func executions(_ name: String, counter: String) -> Int {
            lines("work/\(name)/execution_log.jsonl").filter {
                $0["method"]?.stringValue == "increment_counter"
                    && $0["params"]?.objectValue?["counter_name"]?.stringValue == counter
            }.count
        }
        func linkEvents(_ name: String, _ event: String) -> [[String: JSONValue]] {
            lines("links/\(name).jsonl").filter { $0["event"]?.stringValue == event }
        }
        /// The server's registry (`GET /api/handlers`): id -> address.
        func registered() async throws -> [String: String] {
            let port = httpPort
            let (code, body) = try await onThread("GET /api/handlers", timeout: .seconds(15)) {
                try httpExchange(port: port, path: "/api/handlers")
            }
            guard code == 200, let list = try JSON.parse(Array(body.utf8)).objectValue?["handlers"]?.arrayValue else { return [:] }
            var out: [String: String] = [:]
            for e in list {
                if let o = e.objectValue, let id = o["id"]?.stringValue { out[id] = o["address"]?.stringValue }
            }
            return out
        }
        /// `POST /api/run_now` of `increment_counter{counter_name}` on `handler`: status, reply, how long it took.
        func runNow(_ handler: String, counter: String) async throws -> (status: Int, reply: [String: JSONValue], took: Duration) {
            let port = httpPort
            let body = #"{"handler_id":"\#(handler)","job_method":"increment_counter","job_params":{"counter_name":"\#(counter)"}}"#
            let clock = ContinuousClock()
            let t0 = clock.now
            let (code, text) = try await onThread("POST /api/run_now", timeout: .seconds(40)) {
                try httpExchange(port: port, method: "POST", path: "/api/run_now", body: body, timeout: .seconds(30))
            }
            let took = clock.now - t0
            return (code, (try? JSON.parse(Array(text.utf8)))?.objectValue ?? ["unparsed": .string(text)], took)
        }
        /// The `link` object of `name` in `status --json`.
        func link(_ name: String) async throws -> [String: JSONValue]? {
            let processes = try await h.status(integration_zmq_governor_ForeignInterposed.name)["processes"]?.arrayValue ?? []
            return processes.compactMap(\.objectValue).first { $0["name"]?.stringValue == name }?["link"]?.objectValue
        }
        func pid(_ name: String) async throws -> pid_t? {
            try await h.processes(integration_zmq_governor_ForeignInterposed.name)[name]?.pid
        }
    }

    /// Two consecutive free ports (the handlers' `port_base` and the one after it).
    static func consecutiveFreePorts() throws -> Int {
        for _ in 0..<200 {
            let a = freeTCPPort()
            if freeTCPPort() == a + 1 { return a }
        }
        throw POSIXError(.EADDRINUSE)
    }

    /// foreign.yaml with free ports and short job timeouts, in the harness's folder. Each rewrite must
    /// match (a changed fixture fails here, not as a mysterious hang), and no fixed port may be left.
    /// `extra`: more rewrites, for one test's needs.
    static func file(_ h: CLIHarness, extra: [(String, String)] = []) throws -> Rig {
        var text = try String(contentsOfFile: CLIHarness.fixture(name), encoding: .utf8)
        let rig = Rig(h: h, httpPort: freeTCPPort(), serverPort: freeTCPPort(), handlerPort: try consecutiveFreePorts())
        let rewrites: [(String, String)] = [
            ("127.0.0.1:4263/api/health", "127.0.0.1:\(rig.httpPort)/api/health"),
            (#"SCHEDULEZERO_PORT: "4263""#, #"SCHEDULEZERO_PORT: "\#(rig.httpPort)""#),
            (#"endpoint: "tcp://127.0.0.1:4264""#, #"endpoint: "tcp://127.0.0.1:\#(rig.serverPort)""#),
            ("port_base: 4265", "port_base: \(rig.handlerPort)"),
            (#"SZ_JOB_TIMEOUT_MS: "2000""#, #"SZ_JOB_TIMEOUT_MS: "\#(jobTimeoutMs)""#),
            (#"SZ_JOB_RETRY_DELAY_MS: "200""#, #"SZ_JOB_RETRY_DELAY_MS: "100""#),
            ("interpose: {timeout: 2s}", "interpose: {timeout: \(jobTimeoutMs)ms}"),
        ] + extra
        for (from, to) in rewrites {
            #expect(text.contains(from), "foreign.yaml no longer has \(from)")
            text = text.replacingOccurrences(of: from, with: to)
        }
        let fixed = text.split(separator: "\n").filter { line in
            let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            // The fixed port itself, not a free port that has it inside (24263 once failed this check).
            return ["4263", "4264", "4265", "4266"].contains { code.range(of: "(?<![0-9])\($0)(?![0-9])", options: .regularExpression) != nil }
        }
        #expect(fixed.isEmpty, "fixed ports left in the copy: \(fixed)")
        _ = try h.writeDeployment(name, text)
        return rig
    }

    /// `up --detach` of the copied file, then until both handlers are in the server's registry.
    static func withForeign(extra: [(String, String)] = [], _ body: (Rig) async throws -> Void) async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let rig = try file(h, extra: extra)
        let up = try await h.run(["up", "--detach", "--deployment", name, "--file", h.dir.file("files/\(name).yaml")])
        try #require(up.ok, "up: \(up)")
        try await waitUntil("h-1 and h-2 in the server's registry", timeout: .seconds(30), pollEvery: .milliseconds(100)) {
            (try? await rig.registered())?.count == 2
        }
        // `down` also when the body failed: the harness's cleanup kills processes but leaves the cgroup.
        do { try await body(rig) } catch {
            try await h.run(["down", "--deployment", name])
            throw error
        }
        let down = try await h.run(["down", "--deployment", name])
        #expect(down.ok, "down: \(down)")
    }

    // MARK: up, status, registration, down

    /// Ready by HTTP (server) and ping (handlers), every link in `status`, the server's registry holding the
    /// handlers' PUBLIC endpoints (its interposer rewrote each `register`), and `down` leaving nothing.
    @Test func upMakesEveryLinkVisibleAndDownLeavesNothing() async throws {
        var pids: [String: pid_t] = [:]
        var h: CLIHarness?
        try await Self.withForeign { rig in
            h = rig.h
            let processes = try await rig.h.processes(Self.name)
            #expect(Set(processes.keys) == ["server", "h-1", "h-2"], "\(processes)")
            #expect(processes.values.allSatisfy { $0.status == "running" }, "\(processes)")
            for name in ["server", "h-1", "h-2"] {
                let link = try #require(try await rig.link(name), "\(name) has no link in status --json")
                #expect(link["public"]?.stringValue == rig.publicEndpoint(name))
                let priv = link["private"]?.stringValue ?? ""
                #expect(priv.hasPrefix("tcp://127.0.0.1:") && priv != rig.publicEndpoint(name), "\(name): \(link)")
            }
            let registry = try await rig.registered()
            #expect(registry == ["h-1": rig.publicEndpoint("h-1"), "h-2": rig.publicEndpoint("h-2")], "\(registry)")
            let rewrites = rig.linkEvents("server", "rewrite")
            for name in ["h-1", "h-2"] {
                let priv = try await rig.link(name)?["private"]?.stringValue
                #expect(rewrites.contains { $0["from"]?.stringValue == priv && $0["to"]?.stringValue == rig.publicEndpoint(name) },
                        "the server's link rewrote \(name)'s register: \(rewrites)")
            }
            // Ready by their probes: HTTP for the server, ping for the handlers (events.jsonl).
            let events = rig.h.events(Self.name)
            for name in ["server", "h-1", "h-2"] {
                #expect(events.contains { $0["process"]?.stringValue == name && $0["event"]?.stringValue == "ready" }, "no ready event for \(name)")
                #expect(events.contains { $0["process"]?.stringValue == name && $0["event"]?.stringValue == "link_started" }, "no link_started for \(name)")
            }
            pids = rig.h.pids(Self.name)
            #expect(pids.keys.contains("governor") && pids.count == 4, "\(pids)")
        }
        let harness = try #require(h)
        // Nothing is left: no process (the interposers live in the governor), no PID file, no socket, no run/ entry.
        // The governor exits just after `down` returns (as in the other CLI tests): wait for it, with a deadline.
        try await waitUntil("every process of the deployment gone", timeout: .seconds(10)) {
            pids.values.allSatisfy { pid in errno = 0; return kill(pid, 0) == -1 && errno == ESRCH }
        }
        #expect(harness.pidFiles(Self.name).isEmpty, "\(harness.pidFiles(Self.name))")
        #expect(harness.socketFiles().isEmpty, "\(harness.socketFiles())")
        let run = (try? FileManager.default.contentsOfDirectory(atPath: harness.deploymentDir(Self.name) + "/run")) ?? []
        #expect(run.isEmpty, "run/ after down: \(run)")
        let stopped = harness.events(Self.name).filter { $0["event"]?.stringValue == "link_stopped" }.count
        #expect(stopped == 3, "link_stopped events: \(stopped)")
        #expect(harness.cleanup().isEmpty, "the harness had to kill what down left")
    }

    // MARK: the job link (server -> handler)

    /// One reply dropped on h-1's job link: the server times out, retries, and the handler runs the job a
    /// second time; the link counts exactly that one duplicate. Without a fault a job runs once and adds none.
    @Test func droppedJobReplyIsRetriedAndCountedAsExactlyOneDuplicateExecution() async throws {
        try await Self.withForeign { rig in
            let drop = try await rig.chaos(["drop-replies", "h-1", "--count", "1"])
            #expect(drop.ok && drop.stdout.contains("run/h-1.link"), "the fault went to h-1's interposer: \(drop)")
            let first = try await rig.runNow("h-1", counter: "dropped")
            #expect(first.status == 200, "\(first.reply)")
            #expect(first.reply["attempts"]?.intValue == 2, "one attempt lost its reply, the next succeeded: \(first.reply)")
            #expect(first.took >= .milliseconds(Self.jobTimeoutMs), "the server waited out its timeout: \(first.took)")
            #expect(rig.executions("h-1", counter: "dropped") == 2, "the handler ran the job twice")
            try await waitUntil("the duplicate in links/h-1.jsonl", timeout: .seconds(10)) {
                !rig.linkEvents("h-1", "duplicate_execution").isEmpty
            }
            #expect(rig.linkEvents("h-1", "duplicate_execution").count == 1)
            #expect(rig.linkEvents("h-1", "reply").filter { $0["fault"]?.stringValue == "drop_next" }.count == 1)
            #expect(try await rig.link("h-1")?["duplicate_executions"]?.intValue == 1)

            let clean = try await rig.runNow("h-1", counter: "clean")
            #expect(clean.status == 200 && clean.reply["attempts"]?.intValue == 1, "\(clean.reply)")
            #expect(rig.executions("h-1", counter: "clean") == 1)
            #expect(rig.linkEvents("h-1", "duplicate_execution").count == 1, "a job without a fault added a duplicate")
            #expect(try await rig.link("h-1")?["duplicate_executions"]?.intValue == 1)
            #expect(try await rig.link("h-2")?["duplicate_executions"]?.intValue == 0)
        }
    }

    /// delay and garbage on h-2's job link and force-efsm on h-1's each reach the foreign handler's exchanges
    /// with the server, and `clear` ends them.
    @Test func everyMessageFaultOnTheJobLinkReachesTheForeignHandler() async throws {
        try await Self.withForeign { rig in
            // delay: added once to what the server sees, below its timeout: one slower attempt
            #expect(try await rig.chaos(["delay", "h-2", "--by", "400ms"]).ok)
            let delayed = try await rig.runNow("h-2", counter: "delayed")
            #expect(delayed.status == 200 && delayed.reply["attempts"]?.intValue == 1, "\(delayed.reply)")
            #expect(delayed.took >= .milliseconds(400), "the delay did not reach the job: \(delayed.took)")
            #expect(rig.executions("h-2", counter: "delayed") == 1)
            #expect(try await rig.chaos(["clear", "h-2"]).ok)

            // force-efsm on h-1, whose first job this is (no cached client, so no ping before it): the job
            // request is swallowed, the server's attempt times out, and its retry (ping, job) succeeds
            #expect(try await rig.chaos(["force-efsm", "h-1"]).ok)
            let swallowed = try await rig.runNow("h-1", counter: "swallowed")
            #expect(swallowed.status == 200, "\(swallowed.reply)")
            #expect(swallowed.reply["attempts"]?.intValue == 2, "the swallowed attempt was retried: \(swallowed.reply)")
            #expect(swallowed.took >= .milliseconds(Self.jobTimeoutMs), "\(swallowed.took)")
            #expect(rig.executions("h-1", counter: "swallowed") == 1, "a swallowed request never reached the handler")
            #expect(rig.linkEvents("h-1", "request").contains { $0["forwarded"]?.boolValue == false }, "the link journal shows the swallowed request")
            #expect(rig.linkEvents("h-1", "duplicate_execution").isEmpty, "nothing ran twice")

            // garbage: every reply is replaced by bytes that are not a reply; the server retries, then reports
            #expect(try await rig.chaos(["garbage", "h-2"]).ok)
            let garbled = try await rig.runNow("h-2", counter: "garbled")
            #expect(garbled.status == 500, "\(garbled.reply)")
            #expect(garbled.reply["attempts"]?.intValue == 3, "every attempt saw an invalid reply: \(garbled.reply)")
            #expect(try await rig.chaos(["clear", "h-2"]).ok)
            let after = try await rig.runNow("h-2", counter: "after")
            #expect(after.status == 200 && after.reply["attempts"]?.intValue == 1, "cleared: \(after.reply)")

            let log = try String(contentsOfFile: rig.dir + "/logs/server.log", encoding: .utf8)
            #expect(log.contains("\"attempt_failed\""), "the server logged its failed attempts")
        }
    }

    // MARK: the registration link (handler -> server) and restarts

    /// A reply dropped on the registration link: h-2, killed and restarted by the governor, registers again
    /// after retrying, at its public endpoint (the server's interposer rewrote it again). Heartbeats are
    /// slowed to a minute here so that the restarted h-2's registration is the only traffic on that link and
    /// the dropped reply is surely its own.
    @Test func killedHandlerReRegistersThroughTheInterposersAfterALostRegistrationReply() async throws {
        try await Self.withForeign(extra: [(#"SZ_HEARTBEAT_MS: "1000""#, #"SZ_HEARTBEAT_MS: "60000""#)]) { rig in
            // The server's registry lists a handler before its register reply has left the server, and the
            // one-shot fault drops the next reply on the link, whoever's it is: armed while the first h-2's reply
            // was still in flight, it took that one, and the restarted h-2 registered at once (seen twice under
            // load: the 30 s wait below ran out). So wait until both handlers have their replies and the link
            // has journaled them: then nothing is in flight when the fault is armed.
            let logPath = rig.dir + "/logs/h-2.log"
            func log(_ name: String) -> String { (try? String(contentsOfFile: rig.dir + "/logs/\(name).log", encoding: .utf8)) ?? "" }
            try await waitUntil("h-1 and h-2 registered, their register replies on the server's link", timeout: .seconds(30)) {
                log("h-1").contains("\"registered\"") && log("h-2").contains("\"registered\"")
                    && rig.linkEvents("server", "reply").filter { $0["method"]?.stringValue == "register" && $0["delivered"]?.boolValue == true }.count >= 2
            }
            let rewritesBefore = rig.linkEvents("server", "rewrite").filter { $0["to"]?.stringValue == rig.publicEndpoint("h-2") }.count
            let drop = try await rig.chaos(["drop-replies", "server", "--count", "1", "--include-server"])
            #expect(drop.ok && drop.stdout.contains("run/server.link"), "\(drop)")
            let old = try #require(try await rig.pid("h-2"))
            // Only what the restarted h-2 writes counts below (the log also holds the first process's lines).
            let logOffset = log("h-2").utf8.count
            let kill9 = try await rig.chaos(["kill", "h-2"])
            #expect(kill9.ok, "\(kill9)")
            try await waitUntil("h-2 running again with a new pid", timeout: .seconds(30), pollEvery: .milliseconds(100)) {
                let p = try await rig.h.processes(Self.name)["h-2"]
                return p?.status == "running" && p?.pid != nil && p?.pid != old
            }
            try await waitUntil("the dropped reply on the server's link", timeout: .seconds(30)) {
                rig.linkEvents("server", "reply").contains { $0["fault"]?.stringValue == "drop_next" }
            }
            try await waitUntil("h-2 registered again through the server's interposer", timeout: .seconds(30)) {
                rig.linkEvents("server", "rewrite").filter { $0["to"]?.stringValue == rig.publicEndpoint("h-2") }.count > rewritesBefore
            }
            // The handler's own log shows the failed attempt and the retry that registered. (Read once right after
            // the rewrite, it sometimes came before the handler's registration timeout had passed: the rewrite
            // is the request whose reply was dropped.)
            try await waitUntil("h-2's log to show the failed registration and the one after it", timeout: .seconds(30)) {
                let whole = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                let log = String(decoding: whole.utf8.dropFirst(logOffset), as: UTF8.self)
                guard let failed = log.range(of: "\"registration_failed\"") else { return false }
                return log[failed.upperBound...].contains("\"registered\"")
            }
            let registry = try await rig.registered()
            #expect(registry["h-2"] == rig.publicEndpoint("h-2"), "\(registry)")
            // And the server calls it through its interposer again.
            let job = try await rig.runNow("h-2", counter: "after-restart")
            #expect(job.status == 200, "\(job.reply)")
            try await waitUntil("the job in h-2's link journal", timeout: .seconds(10)) {
                rig.linkEvents("h-2", "request").contains { $0["method"]?.stringValue == "increment_counter" }
            }
        }
    }

    /// A SIGSTOPped foreign handler fails the file's liveness ping (on its private endpoint), is reported
    /// unhealthy, killed and restarted, and registers again through the interposers.
    @Test func livenessRestartsASigstoppedForeignHandler() async throws {
        try await Self.withForeign { rig in
            let old = try #require(try await rig.pid("h-1"))
            #expect(kill(old, SIGSTOP) == 0)
            try await waitUntil("h-1 restarted with a new pid", timeout: .seconds(60), pollEvery: .milliseconds(200)) {
                let p = try await rig.h.processes(Self.name)["h-1"]
                return p?.status == "running" && p?.pid != nil && p?.pid != old
            }
            let events = rig.h.events(Self.name).filter { $0["process"]?.stringValue == "h-1" }
            #expect(events.contains { $0["event"]?.stringValue == "unhealthy" }, "\(events)")
            errno = 0
            #expect(kill(old, 0) == -1 && errno == ESRCH, "the stopped handler was killed")
            try await waitUntil("h-1 registered again at its public endpoint", timeout: .seconds(30)) {
                rig.linkEvents("server", "rewrite").filter { $0["to"]?.stringValue == rig.publicEndpoint("h-1") }.count >= 2
            }
            let job = try await rig.runNow("h-1", counter: "after-liveness")
            #expect(job.status == 200, "\(job.reply)")
        }
    }
}
