import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// `working_dir` and `liveness` through the real `szgovernor`: status, /healthz and events.jsonl.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_CLIRealServices {
    @Test func aSigstoppedHandlerIsReportedUnhealthyEverywhereThenRestarted() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try FileManager.default.createDirectory(atPath: h.dir.file("files/work/h"), withIntermediateDirectories: true)
        let file = try h.writeDeployment("live", """
            deployment: live
            defaults:
              working_dir: "work/${NAME}"
            handlers:
              - id: h
                endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
                command: ["${SZMOCK}", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}"]
                readiness: ping
                liveness: {ping: "${ENDPOINT}", period: 100ms, timeout: 500ms, failures: 2}
                stop_timeout: 3s
                restart: {policy: on-failure, backoff: {immediate: 1}}
            """)
        try await h.up("live", file: file, extra: ["--http-port", "0"])
        let port = try #require(try await h.status("live")["http_port"]?.intValue.map(Int.init))
        let old = try #require(try await h.processes("live")["h"]?.pid)
        let cwd = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(old)/cwd")
        #expect(URL(fileURLWithPath: cwd).resolvingSymlinksInPath().path
                == URL(fileURLWithPath: h.dir.file("files/work/h")).resolvingSymlinksInPath().path)
        #expect(kill(old, SIGSTOP) == 0)
        // The unhealthy window is the 3 s stop timeout: the SIGTERM waits, the SIGKILL ends it.
        let body = try await onThread("GET /healthz until 503", timeout: .seconds(30)) { () -> String in
            var body = ""
            try waitUntilSync("/healthz 503", timeout: .seconds(20), pollEvery: .milliseconds(10)) {
                let (code, b) = try httpGet(port: port, path: "/healthz")
                body = b
                return code == 503
            }
            return body
        }
        #expect(body.contains("\"h\":false"), "\(body)")
        let during = try await h.processes("live")["h"]
        #expect(during?.status == "unhealthy" || during?.pid != old, "status while being stopped: \(String(describing: during))")
        try await waitUntil("h running again with a new pid", timeout: .seconds(30), pollEvery: .milliseconds(100)) {
            let p = try await h.processes("live")["h"]
            return p?.status == "running" && p?.pid != nil && p?.pid != old
        }
        let events = try String(contentsOfFile: h.deploymentDir("live") + "/events.jsonl", encoding: .utf8)
        let unhealthy = events.split(separator: "\n").first { $0.contains("\"event\":\"unhealthy\"") }
        #expect(unhealthy?.contains("liveness checks failed in a row") == true, "\(events)")
        #expect(events.contains("killed: liveness failed"))
        try await h.run(["down", "--deployment", "live"])
        errno = 0
        #expect(kill(old, 0) == -1 && errno == ESRCH)
    }

    /// Outside the attribute: the selection lint blanks `//` to the end of a line, URLs included.
    static let badValues: [(String, String, String)] = [
        ("    working_dir: missing\n", "handlers[0].working_dir: directory ", "does not exist"),
        ("    liveness: {ping: \"${ENDPOINT}\", failures: 0}\n", "handlers[0].liveness.failures: must be an integer >= 1", "(got \"0\")"),
        ("    readiness: {http: \"https://127.0.0.1/\"}\n", "handlers[0].readiness.http: https is not supported", "plain http:// only"),
    ]

    @Test(arguments: Self.badValues)
    func badNewKeysFailUpWithTheirPlaceAndStartNothing(line: String, message: String, more: String) async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("bad", """
            deployment: bad
            handlers:
              - id: h
                endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
                command: ["${SZMOCK}", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}"]
            """ + "\n" + line)
        let r = try await h.run(["up", "--detach", "--deployment", "bad", "--file", file])
        #expect(r.status == .exited(1), "\(r)")
        #expect(r.stderr.contains("bad.yaml:6:") && r.stderr.contains(message) && r.stderr.contains(more), "\(r)")
        #expect(h.pids("bad").isEmpty, "nothing started")
    }
}
