import Foundation
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

/// The deployment-file keys for real services (`working_dir`, `readiness: {http}`, `liveness`), each against
/// real processes under the real ProcessGovernor, loaded from a deployment file as `szgovernor up` does.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_RealServices {
    /// Writes `yaml` as `t.yaml` in the harness folder, loads it and makes a governor of it.
    func governor(_ h: Harness, _ yaml: String) throws -> ProcessGovernor {
        let file = try h.dir.write(yaml, to: "t.yaml")
        let d = try DeploymentFile.load(path: file.path, variables: ["SZMOCK": builtExecutable("szmock")],
                                        deploymentsRoot: h.dir.appending("deployments").path)
        return try ProcessGovernor(deployment: d, directory: h.deploymentDir, options: h.options())
    }

    @Test func workingDirIsWhereTheChildStartsRelativeToTheDeploymentFile() async throws {
        let h = Harness()
        defer { h.cleanup() }
        for name in ["a", "b"] {
            try FileManager.default.createDirectory(atPath: h.dir.file("work/\(name)"), withIntermediateDirectories: true)
        }
        let gov = try governor(h, """
        deployment: t
        defaults:
          working_dir: "work/${NAME}"
        handlers:
          - id: a
            command: [/bin/sh, -c, "pwd > here.txt; exec /bin/sleep 300"]
          - id: b
            working_dir: "\(h.dir.file("work/a"))/../b"
            command: [/bin/sh, -c, "pwd > here.txt; exec /bin/sleep 300"]
        """)
        try await gov.start()
        let real = { (p: String) in URL(fileURLWithPath: p).resolvingSymlinksInPath().path }
        for name in ["a", "b"] {
            let out = h.dir.file("work/\(name)/here.txt")
            try await waitUntil("\(name) wrote its working directory") {
                ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").hasSuffix("\n")
            }
            let pwd = try String(contentsOfFile: out, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(real(pwd) == real(h.dir.file("work/\(name)")))
            let pid = try #require(await gov.handlerStatus(name).pid)
            let cwd = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
            #expect(real(cwd) == real(h.dir.file("work/\(name)")))
        }
        await gov.stop()
    }

    @Test func httpReadinessWaitsForA2xxReply() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let port = freeTCPPort()
        let gov = try governor(h, """
        deployment: t
        server:
          command: ["\(pyzmqPython)", "\(fixturePath("peers/http_health.py"))", --port, "\(port)", --fail, "3"]
          readiness: {http: "http://127.0.0.1:\(port)/api/health", timeout: 20s, interval: 50ms}
        """)
        try await gov.start()
        #expect(try await gov.handlerStatus("server").status == .running)
        await gov.stop()
        let log = try String(contentsOfFile: h.deploymentDir.appendingPathComponent("logs/server.log").path, encoding: .utf8)
        let answers = log.split(separator: "\n").filter { $0.hasPrefix("request ") }.map { $0.split(separator: " ").last! }
        // Three 503s, then the 200 the governor waited for, and nothing asked after it.
        #expect(answers == ["503", "503", "503", "200"], "\(log)")
        let events = gov.events.events.filter { $0.process == "server" }.map(\.event)
        #expect(events.prefix(2) == [.spawned, .ready])
    }

    @Test func httpReadinessThatNeverAnswers2xxIsAFailedStartNamingTheStatus() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let port = freeTCPPort()
        let gov = try governor(h, """
        deployment: t
        server:
          command: ["\(pyzmqPython)", "\(fixturePath("peers/http_health.py"))", --port, "\(port)", --fail, "1000000"]
          readiness: {http: "http://127.0.0.1:\(port)/api/health", timeout: 10s, interval: 50ms}
          restart: {policy: never}
        """)
        // 10 s: the verdict must come from the 503s, so the deadline has to be later than Python binding its
        // port; with one core busy it had not within 3 s once (the honest "last: connection refused").
        let error = await #expect(throws: GovernorError.self) { try await gov.start() }
        #expect("\(error!)".contains("status 503"), "\(error!)")
        #expect(try await gov.handlerStatus("server").pid == nil)
        await gov.stop()
        #expect(h.tracker.alive.isEmpty)
    }

    @Test func livenessRestartsASigstoppedHandler() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let gov = try governor(h, """
        deployment: t
        handlers:
          - id: h
            endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
            command: ["${SZMOCK}", handler, --id, "${NAME}", --bind, "${ENDPOINT}"]
            readiness: ping
            liveness: {ping: "${ENDPOINT}", period: 100ms, timeout: 500ms, failures: 2}
            stop_timeout: 1s
            restart: {policy: on-failure, backoff: {immediate: 1}}
        """)
        try await gov.start()
        let old = try #require(try await gov.handlerStatus("h").pid)
        // Healthy while it answers: several periods pass with no unhealthy event.
        try await waitUntil("three liveness checks passed") {
            let p = try await gov.process("h")
            let (checks, failures) = (await p.livenessChecks, await p.livenessFailures)
            return checks >= 3 && failures == 0
        }
        let healthy = try await gov.handlerStatus("h")
        #expect(healthy.status == .running && healthy.livenessFailures == 0 && healthy.json["liveness_failures"] == .int(0))
        #expect(kill(old, SIGSTOP) == 0)
        try await waitUntil("h reported unhealthy", timeout: .seconds(20), pollEvery: .milliseconds(2)) {
            try await gov.handlerStatus("h").status == .unhealthy
        }
        #expect(await gov.healthCheck()["h"] == false, "/healthz and health say unhealthy")
        try await waitUntil("h running again with a new pid", timeout: .seconds(20)) {
            let s = try await gov.handlerStatus("h")
            return s.status == .running && s.pid != nil && s.pid != old
        }
        errno = 0
        #expect(kill(old, 0) == -1 && errno == ESRCH, "the stopped child is gone")
        let info = try await gov.handlerStatus("h")
        #expect(info.restartCount == 1, "counted like a crash")
        let unhealthy = try #require(gov.events.events.first { $0.process == "h" && $0.event == .unhealthy })
        #expect(unhealthy.pid == old)
        #expect(unhealthy.detail?.contains("2 liveness checks failed in a row") == true, "\(unhealthy.detail ?? "")")
        let text = try String(contentsOfFile: h.deploymentDir.appendingPathComponent("events.jsonl").path, encoding: .utf8)
        #expect(text.contains("\"event\":\"unhealthy\""))
        #expect(await gov.healthCheck()["h"] == true)
        await gov.stop()
    }

    @Test func livenessOverHttpRestartsAStoppedServer() async throws {
        let h = Harness()
        defer { h.cleanup() }
        let port = freeTCPPort()
        let url = "http://localhost:\(port)/api/health"  // a name, resolved by the probe
        let gov = try governor(h, """
        deployment: t
        server:
          command: ["\(pyzmqPython)", "\(fixturePath("peers/http_health.py"))", --port, "\(port)"]
          readiness: {http: "\(url)", timeout: 20s, interval: 50ms}
          liveness: {http: "\(url)", period: 100ms, timeout: 500ms, failures: 2}
          stop_timeout: 500ms
          restart: {policy: always, backoff: {immediate: 1}}
        """)
        try await gov.start()
        let old = try #require(try await gov.handlerStatus("server").pid)
        #expect(kill(old, SIGSTOP) == 0)
        try await waitUntil("the server restarted with a new pid", timeout: .seconds(30)) {
            let s = try await gov.handlerStatus("server")
            return s.status == .running && s.pid != nil && s.pid != old
        }
        let unhealthy = try #require(gov.events.events.first { $0.event == .unhealthy })
        #expect(unhealthy.detail?.contains("GET \(url)") == true, "\(unhealthy.detail ?? "")")
        await gov.stop()
    }
}

@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_RealServiceKeys {
    func parse(_ yaml: String, base: String = "/") throws(DeploymentFileError) -> Deployment {
        try DeploymentFile.parse(yaml: yaml, file: "r.yaml", defaultName: "r", deploymentsRoot: "/d", baseDirectory: base)
    }

    func handler(_ lines: String) -> String {
        "handlers:\n  - id: h\n    command: [/bin/true]\n    endpoint: tcp://127.0.0.1:7000\n" + lines
    }

    @Test func goodKeysParse() throws {
        let d = try parse(handler("""
            working_dir: tmp
            readiness: {http: "http://localhost:${PORT}/api/health", timeout: 3s, interval: 20ms}
            liveness: {http: "http://[::1]:8080/x?y=1", period: 500ms, timeout: 250ms, failures: 5}
            port_base: 9000
        """), base: "/")
        let h = d.handlers[0]
        #expect(h.workingDirectory == "/tmp")
        #expect(h.readiness == .custom(kind: "http", settings: ["http": "http://localhost:9000/api/health", "interval": "20ms"],
                                       timeout: .seconds(3)))
        #expect(h.liveness == LivenessSpec(check: .http(HTTPURL(host: "::1", port: 8080, path: "/x?y=1")),
                                           period: .milliseconds(500), timeout: .milliseconds(250), failures: 5))
        let short = try parse(handler("    liveness: ping\n")).handlers[0].liveness
        #expect(short == LivenessSpec(check: .ping(endpoint: nil)))
        #expect(short?.period == .seconds(2) && short?.timeout == .seconds(1) && short?.failures == 3)
        let off = try parse("defaults: {liveness: ping}\n" + handler("    liveness: none\n")).handlers[0].liveness
        #expect(off == nil)
    }

    /// A bad value of each new key and its error (a table outside the attribute: the selection lint blanks
    /// `//` to the end of a line, URLs included).
    static let badValues: [(String, String)] = [
        ("    working_dir: /nonexistent/dir\n", "r.yaml:5:18: handlers[0].working_dir: directory /nonexistent/dir does not exist"),
        ("    working_dir: /etc/hostname\n", "r.yaml:5:18: handlers[0].working_dir: /etc/hostname is not a directory"),
        ("    working_dir: \"${NOPE}\"\n", "r.yaml:5:18: handlers[0].working_dir: unknown variable ${NOPE} (known: DEPLOYMENT, DEPLOYMENT_DIR, ENDPOINT, INDEX, LOG_DIR, NAME, PUBLIC_ENDPOINT, PUBLIC_PORT, READY_FILE, RUN_DIR, SERVER_ENDPOINT)"),
        ("    readiness: {http: \"https://x/\"}\n", "r.yaml:5:23: handlers[0].readiness.http: https is not supported by the probe (plain http:// only)"),
        ("    readiness: {http: \"http://x:99999/\"}\n", "r.yaml:5:23: handlers[0].readiness.http: port 99999 is not in 1-65535 in \"http://x:99999/\""),
        ("    readiness: {http: \"http://x/\", interval: fast}\n", "r.yaml:5:46: handlers[0].readiness.interval: must be a duration > 0 like 100ms (got \"fast\")"),
        ("    readiness: {http: \"http://x/\", every: 1s}\n", "r.yaml:5:43: handlers[0].readiness.every: unknown field (allowed with http: http, timeout, interval, within)"),
        ("    liveness: sometimes\n", "r.yaml:5:15: handlers[0].liveness: must be none, ping, {ping: ENDPOINT, period: 2s, timeout: 1s, failures: 3} or {http: URL, ...} (got \"sometimes\")"),
        ("    liveness: {ping: tcp://127.0.0.1:1, failures: 0}\n", "r.yaml:5:51: handlers[0].liveness.failures: must be an integer >= 1 (got \"0\")"),
        ("    liveness: {ping: tcp://127.0.0.1:1, period: 0s}\n", "r.yaml:5:49: handlers[0].liveness.period: must be a duration > 0"),
        ("    liveness: {ping: tcp://127.0.0.1:1, timeout: soon}\n", "r.yaml:5:50: handlers[0].liveness.timeout: must be a duration with a unit: 250ms, 2s, 1m or 1h (got \"soon\")"),
        ("    liveness: {ping: tcp://127.0.0.1:1, http: \"http://x/\"}\n", "r.yaml:5:47: handlers[0].liveness.http: give either ping or http, not both"),
        ("    liveness: {period: 1s}\n", "r.yaml:5:15: handlers[0].liveness: needs ping: ENDPOINT or http: URL"),
        ("    liveness: {http: \"ftp://x/\"}\n", "r.yaml:5:22: handlers[0].liveness.http: expected an http:// URL like http://127.0.0.1:8888/api/health, got \"ftp://x/\""),
        ("    liveness: {ping: x, retries: 2}\n", "r.yaml:5:25: handlers[0].liveness.retries: unknown field (allowed: ping, http, period, timeout, failures)"),
    ]

    @Test(arguments: Self.badValues)
    func badNewKeysNameFileLineAndField(lines: String, expected: String) {
        let error = #expect(throws: DeploymentFileError.self) { try parse(handler(lines)) }
        #expect(error?.description == expected)
    }

    @Test func pingLivenessWithoutAnEndpointIsRefusedAtLoad() {
        let yaml = "handlers:\n  - id: h\n    command: [/bin/true]\n    liveness: ping\n"
        let error = #expect(throws: DeploymentFileError.self) { try parse(yaml) }
        #expect(error?.description == "r.yaml:4:15: handlers[0].liveness: needs an endpoint to ping: give the process an `endpoint` or write {ping: ENDPOINT}")
    }

    @Test func relativeWorkingDirResolvesAgainstTheDeploymentFilesFolder() async throws {
        try await withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir.file("svc/h"), withIntermediateDirectories: true)
            let file = try dir.write(handler("    working_dir: \"svc/${NAME}\"\n"), to: "r.yaml")
            let d = try DeploymentFile.load(path: file.path, deploymentsRoot: "/d")
            #expect(d.handlers[0].workingDirectory == dir.file("svc/h"))
            let missing = try dir.write(handler("    working_dir: elsewhere\n"), to: "m.yaml")
            let error = #expect(throws: DeploymentFileError.self) { try DeploymentFile.load(path: missing.path, deploymentsRoot: "/d") }
            #expect(error?.description == "m.yaml:5:18: handlers[0].working_dir: directory \(dir.file("elsewhere")) does not exist")
        }
    }

    @Test func httpURLsParse() throws {
        #expect(try HTTPURL(parsing: "http://127.0.0.1:8888/api/health") == HTTPURL(host: "127.0.0.1", port: 8888, path: "/api/health"))
        #expect(try HTTPURL(parsing: "http://localhost") == HTTPURL(host: "localhost", port: 80, path: "/"))
        #expect(try HTTPURL(parsing: "http://h:1?q") == HTTPURL(host: "h", port: 1, path: "/?q"))
        #expect(throws: HTTPURL.Invalid.self) { try HTTPURL(parsing: "http://:80/") }
        #expect(throws: HTTPURL.Invalid.self) { try HTTPURL(parsing: "http://u@h/") }
    }
}
