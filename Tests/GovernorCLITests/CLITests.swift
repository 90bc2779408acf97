import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// `szgovernor` end to end: the built executables, real processes, one temporary root per test.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_CLI {
    @Test func upDetachStatusJsonAndDownFromASecondProcessLeaveNothing() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let status = try await h.status()
        #expect(status["governor_running"] == true)
        let procs = try await h.processes()
        #expect(Set(procs.keys) == ["server", "h-1", "h-2", "h-3"])
        #expect(procs.values.allSatisfy { $0.status == "running" && $0.pid != nil })
        #expect(try await h.ping("ipc://\(h.root)/ci/run/h-2.sock"))
        let started = Set(h.tracker.alive)
        #expect(started.count == 5, "governor + 4 children, got \(started)")

        let down = try await h.run(["down", "--deployment", "ci"])
        #expect(down.ok, "\(down)")
        try await waitUntil("every process to be gone") { h.tracker.alive.isEmpty }
        #expect(h.pidFiles().isEmpty)
        #expect(h.socketFiles().isEmpty)
        let after = try await h.status()
        #expect(after["governor_running"] == false)
    }

    @Test func killedHandlerIsRestartedAndAnswersPingAgain() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let old = try #require(h.pids()["h-2"])
        kill(old, SIGKILL)
        try await waitUntil("h-2 running with a new pid") {
            let p = try await h.processes()["h-2"]
            return p?.status == "running" && p?.pid != nil && p?.pid != old
        }
        #expect(try await h.ping("ipc://\(h.root)/ci/run/h-2.sock"))
        #expect(h.events().contains { $0["process"] == "h-2" && $0["event"] == "exited" })
        try await h.run(["down", "--deployment", "ci"])
    }

    @Test func restartGlobRestartsOnlyMatchingProcesses() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let before = h.pids()
        let r = try await h.run(["restart", "h-[12]", "--deployment", "ci"])
        #expect(r.ok && r.stdout.contains("restarted h-1, h-2"), "\(r)")
        let after = h.pids()
        #expect(after["h-1"] != before["h-1"] && after["h-2"] != before["h-2"])
        #expect(after["h-3"] == before["h-3"] && after["server"] == before["server"])
        #expect(try await h.processes().values.allSatisfy { $0.status == "running" })
        let none = try await h.run(["restart", "x-*", "--deployment", "ci"])
        #expect(none.status == .exited(1) && none.stderr.contains("matches \"x-*\""), "\(none)")
        try await h.run(["down", "--deployment", "ci"])
    }

    @Test func scaleStartsAndStopsReplicasOfASpec() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let up = try await h.run(["scale", "h", "5", "--deployment", "ci"])
        #expect(up.ok, "\(up)")
        var procs = try await h.processes()
        #expect(Set(procs.keys) == ["server", "h-1", "h-2", "h-3", "h-4", "h-5"])
        #expect(procs.values.allSatisfy { $0.status == "running" })
        #expect(try await h.ping("ipc://\(h.root)/ci/run/h-5.sock"))
        let removedPids = [procs["h-2"]?.pid, procs["h-5"]?.pid].compactMap { $0 }
        let down = try await h.run(["scale", "h", "1", "--deployment", "ci"])
        #expect(down.ok && down.stdout.contains("stopped h-2, h-3, h-4, h-5"), "\(down)")
        procs = try await h.processes()
        #expect(Set(procs.keys) == ["server", "h-1"])
        #expect(removedPids.allSatisfy { !LiveProcess.isAlive($0) })
        let unknown = try await h.run(["scale", "nope", "2", "--deployment", "ci"])
        #expect(unknown.status == .exited(1) && unknown.stderr.contains("no handler spec \"nope\""), "\(unknown)")
        try await h.run(["down", "--deployment", "ci"])
    }

    @Test func addAndRemoveAHandler() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let add = try await h.run(["add", "x-1", "--deployment", "ci"])
        #expect(add.ok && add.stdout.contains("added x-1 (running"), "\(add)")
        #expect(try await h.ping("ipc://\(h.root)/ci/run/x-1.sock"))
        let pid = try #require(h.pids()["x-1"])
        let remove = try await h.run(["remove", "x-1", "--deployment", "ci"])
        #expect(remove.ok, "\(remove)")
        try await waitUntil("x-1 to be gone") { !LiveProcess.isAlive(pid) }
        #expect(try await h.processes()["x-1"] == nil)
        let unknown = try await h.run(["remove", "h9", "--deployment", "ci"])
        #expect(unknown.status == .exited(1))
        #expect(unknown.stderr.contains("deployment \"ci\" has no handler \"h9\" (known: h-1, h-2, h-3)"), "\(unknown)")
        try await h.run(["down", "--deployment", "ci"])
    }

    @Test func logsPrintTheLastLinesOfAProcess() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let logs = try await h.run(["logs", "h-1", "--lines", "1", "--deployment", "ci"])
        #expect(logs.ok, "\(logs)")
        #expect(logs.stdout.split(separator: "\n").count == 1)
        let all = try await h.run(["logs", "h-1", "--lines", "100", "--deployment", "ci"])
        #expect(all.stdout.contains("\"event\":\"ready\""), "\(all)")
        let missing = try await h.run(["logs", "nope", "--deployment", "ci"])
        #expect(missing.status == .exited(1) && missing.stderr.contains("has no log for \"nope\""), "\(missing)")
        try await h.run(["down", "--deployment", "ci"])
    }

    @Test func brokenFilesUnknownNamesAndBadDeploymentsFailClearlyAndKillNothing() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let before = h.pids()
        let yaml = try await h.run(["up", "--deployment", "syntax", "--file", CLIHarness.bad("syntax.yaml")])
        #expect(yaml.status == .exited(1) && yaml.stderr.contains("syntax.yaml:5:3: YAML syntax"), "\(yaml)")
        let variable = try await h.run(["up", "--deployment", "uv", "--file", CLIHarness.bad("unknown-variable.yaml")])
        #expect(variable.status == .exited(1) && variable.stderr.contains("unknown variable"), "\(variable)")
        for name in ["../etc", "a/b", ".."] {
            let bad = try await h.run(["down", "--deployment", name])
            #expect(bad.status == .exited(1) && bad.stderr.contains("deployment name"), "\(name): \(bad)")
        }
        let unknown = try await h.run(["restart", "h9", "--deployment", "ci"])
        #expect(unknown.status == .exited(1) && unknown.stderr.contains("has no handler \"h9\""), "\(unknown)")
        let notRunning = try await h.run(["restart", "h-1", "--deployment", "other"])
        #expect(notRunning.status == .exited(1) && notRunning.stderr.contains("no governor is running deployment \"other\""))
        #expect(h.pids() == before, "nothing was restarted or killed")
        #expect(before.values.allSatisfy(LiveProcess.isAlive))
        try await h.run(["down", "--deployment", "ci"])
    }

    @Test func usageErrorsExitWithTwo() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        for args in [["scale", "h", "many"], ["frobnicate"], ["up", "--http-port", "70000"], ["logs"]] {
            let r = try await h.run(args)
            #expect(r.status == .exited(2), "\(args): \(r)")
        }
    }

    @Test func aSecondUpOfTheSameDeploymentIsRefusedNamingTheHolder() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let governor = try #require(h.pids()["governor"])
        let second = try await h.run(["up", "--deployment", "ci", "--file", CLIHarness.fixture("ci")])
        #expect(second.status == .exited(1))
        #expect(second.stderr.contains("already governed by governor pid \(governor)"), "\(second)")
        #expect(LiveProcess.isAlive(governor))
        #expect(try await h.processes().values.allSatisfy { $0.status == "running" })
        try await h.run(["down", "--deployment", "ci"])
    }

    @Test func foregroundUpStopsHandlersThenServerOnSigterm() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let p = try h.foreground(["--deployment", "ci", "--file", CLIHarness.fixture("ci")])
        defer { p.stop() }
        try await waitUntil("the foreground governor to be up") { p.lines.contains { $0.contains("is up") } }
        h.track()
        kill(p.pid, SIGTERM)
        #expect(try await p.waitExit(timeout: .seconds(30)) == .exited(0), "stderr: \(p.stderrText)")
        try await waitUntil("every process to be gone") { h.tracker.alive.isEmpty }
        let stopping = h.events().filter { $0["event"] == "stopping" }.compactMap { $0["process"]?.stringValue }
        #expect(stopping.last == "server" && Set(stopping.dropLast()) == ["h-1", "h-2", "h-3"], "\(stopping)")
        #expect(h.pidFiles().isEmpty && h.socketFiles().isEmpty)
    }

    @Test func aSecondSignalForcesTheStop() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("stubborn", """
            deployment: stubborn
            handlers:
              - id: h
                endpoint: "ipc://${RUN_DIR}/h.sock"
                command: ["${SZMOCK}", "handler", "--id", "h", "--bind", "${ENDPOINT}", "--ignore-sigterm"]
                readiness: ping
                stop_timeout: 10m
            """)
        let p = try h.foreground(["--deployment", "stubborn", "--file", file])
        defer { p.stop() }
        try await waitUntil("the foreground governor to be up") { p.lines.contains { $0.contains("is up") } }
        h.track()
        let child = try #require(h.pids("stubborn")["h"])
        kill(p.pid, SIGINT)
        try await waitUntil("the graceful stop to begin") { h.events("stubborn").contains { $0["event"] == "stopping" } }
        #expect(LiveProcess.isAlive(child), "the handler ignores SIGTERM: the stop waits for its 10 min timeout")
        kill(p.pid, SIGTERM)
        // A deadline far below the 10 minute stop timeout: only the forced stop can meet it.
        #expect(try await p.waitExit(timeout: .seconds(30)) == .exited(0), "stderr: \(p.stderrText)")
        #expect(!LiveProcess.isAlive(child))
        #expect(p.lines.contains { $0.contains("SIGKILL to every process group now (h)") }, "\(p.lines)")
    }

    @Test func healthzAndMetricsOverHTTP() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("web", """
            deployment: web
            defaults: {stop_timeout: 2s, restart: {policy: never}}
            handlers:
              - id: h
                replicas: 2
                endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
                command: ["${SZMOCK}", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}"]
                readiness: ping
            """)
        let up = try await h.up("web", file: file, extra: ["--http-port", "0"])
        let port = try #require(try await h.status("web")["http_port"]?.intValue.map(Int.init))
        #expect(up.stdout.contains("http://127.0.0.1:\(port)/healthz"), "\(up)")
        let (code, body) = try await onThread("GET /healthz") { try httpGet(port: port, path: "/healthz") }
        #expect(code == 200)
        let health = try JSON.parse(Array(body.utf8)).objectValue
        #expect(health?["healthy"] == true && health?["services"]?.objectValue?["h-2"] == true, "\(body)")
        let (mcode, metrics) = try await onThread("GET /metrics") { try httpGet(port: port, path: "/metrics") }
        #expect(mcode == 200)
        #expect(metrics.contains("szgovernor_process_up{deployment=\"web\",process=\"h-1\",role=\"handler\"} 1"), "\(metrics)")
        #expect(metrics.contains("# TYPE szgovernor_restart_latency_seconds summary"))
        #expect(metrics.contains("szgovernor_process_restarts_total{deployment=\"web\",process=\"h-2\",role=\"handler\"} 0"))

        kill(try #require(h.pids("web")["h-1"]), SIGKILL)  // policy never: h-1 stays down
        try await waitUntil("h-1 to be down") { try await h.processes("web")["h-1"]?.status == "crashed" }
        let (down, downBody) = try await onThread("GET /healthz") { try httpGet(port: port, path: "/healthz") }
        #expect(down == 503 && downBody.contains("\"h-1\":false"), "\(downBody)")
        try await h.run(["down", "--deployment", "web"])
    }
}
