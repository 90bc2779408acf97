import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// Governor entries of the regression catalogue that need the real `szgovernor` executable. Each name says
/// what broke (upstream's ProcessGovernor, or this governor on its way).
@Suite(.tags(.regression, .integration, .governor), .leakChecked)
struct regression_integration_governor_CLICatalogue {
    /// Upstream: `stop` from a second process killed the handlers but orphaned the server.
    @Test func secondProcessDownLeavesNoOrphan() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        #expect(Set(h.tracker.alive).count == 5)
        let down = try await h.run(["down", "--deployment", "ci"])
        #expect(down.ok, "\(down)")
        try await waitUntil("the governor and all its children to be gone") { h.tracker.alive.isEmpty }
        #expect(h.pidFiles().isEmpty, "\(h.pidFiles())")
        #expect(h.socketFiles().isEmpty, "\(h.socketFiles())")
        #expect(h.cleanup().isEmpty)
    }

    /// Upstream: a handler that ignores SIGTERM (its offline report hanging on a server that is gone) was
    /// waited for forever.
    @Test func handlerIgnoringSigtermWithServerGoneIsKilledAtTimeout() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("gone", """
            deployment: gone
            defaults: {stop_timeout: 1s, restart: {policy: never}}
            server:
              command: ["${SZMOCK}", "server", "--bind", "${ENDPOINT}"]
              endpoint: "ipc://${RUN_DIR}/server.sock"
              readiness: ping
            handlers:
              - id: h
                endpoint: "ipc://${RUN_DIR}/h.sock"
                command: ["${SZMOCK}", "handler", "--id", "h", "--bind", "${ENDPOINT}", "--server", "${SERVER_ENDPOINT}",
                          "--ignore-sigterm"]
                readiness: ping
            """)
        try await h.up("gone", file: file)
        let pids = h.pids("gone")
        kill(try #require(pids["server"]), SIGKILL)  // policy never: the server stays gone
        try await waitUntil("the server to be down") { try await h.processes("gone")["server"]?.status == "crashed" }
        let handler = try #require(pids["h"])
        let down = try await h.run(["down", "--deployment", "gone"])
        #expect(down.ok, "\(down)")
        #expect(!LiveProcess.isAlive(handler))
        #expect(h.events("gone").contains { $0["process"] == "h" && $0["event"] == "escalated" },
                "the handler was SIGKILLed at its stop timeout")
        try await waitUntil("everything to be gone") { h.tracker.alive.isEmpty }
    }

    /// The server really started is the one of the deployment asked for (its file, its endpoint), found
    /// by name from the current directory when no --file is given.
    @Test func deploymentOptionReachesTheStartedServer() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("alpha", """
            deployment: alpha
            server:
              command: ["${SZMOCK}", "server", "--bind", "${ENDPOINT}"]
              endpoint: "ipc://${RUN_DIR}/alpha-server.sock"
              readiness: ping
            """)
        try await h.up("alpha", file: file)
        let r = try await h.run(["up", "--detach", "--deployment", "ci"])  // file found as Fixtures/deployments/ci.yaml
        #expect(r.ok, "\(r)")
        for (d, endpoint) in [("alpha", "ipc://\(h.root)/alpha/run/alpha-server.sock"), ("ci", "ipc://\(h.root)/ci/run/server.sock")] {
            let server = try #require(h.pids(d)["server"])
            let cmdline = try #require(processCommandLine(pid: server))
            #expect(cmdline.first == h.szmock, "this build's szmock: \(cmdline)")
            #expect(cmdline.contains(endpoint), "\(d): \(cmdline)")
            #expect(try await h.ping(endpoint))
        }
        try await h.run(["down", "--deployment", "alpha"])
        try await h.run(["down", "--deployment", "ci"])
        try await waitUntil("everything to be gone") { h.tracker.alive.isEmpty }
    }

    /// Two deployments at once: ipc endpoints live in each deployment's folder, so both are healthy; a
    /// fixed TCP port held by one is reported at the other's `up`, naming the port, not crash-looped.
    @Test func fixedPortsDoNotCollideBetweenDeployments() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up("ci")
        try await h.up("ci2", file: try h.writeDeployment("ci2", try String(contentsOfFile: CLIHarness.fixture("ci"), encoding: .utf8)
            .replacingOccurrences(of: "deployment: ci", with: "deployment: ci2")))
        for d in ["ci", "ci2"] {
            let procs = try await h.processes(d)
            #expect(procs.count == 4 && procs.values.allSatisfy { $0.status == "running" }, "\(d): \(procs)")
        }
        let port = freeTCPPort()
        func tcp(_ name: String) throws -> String {
            try h.writeDeployment(name, """
                deployment: \(name)
                handlers:
                  - id: h
                    endpoint: "tcp://127.0.0.1:\(port)"
                    command: ["${SZMOCK}", "handler", "--id", "h", "--bind", "${ENDPOINT}"]
                    readiness: ping
                """)
        }
        try await h.up("p1", file: try tcp("p1"))
        let clash = try await h.run(["up", "--detach", "--deployment", "p2", "--file", try tcp("p2")])
        #expect(clash.status == .exited(1))
        #expect(clash.stderr.contains("h's endpoint tcp://127.0.0.1:\(port) is already in use"), "\(clash)")
        #expect(h.pids("p2").isEmpty, "nothing of p2 runs")
        #expect(try await h.processes("p1")["h"]?.status == "running")
        for d in ["ci", "ci2", "p1"] { try await h.run(["down", "--deployment", d]) }
        try await waitUntil("everything to be gone") { h.tracker.alive.isEmpty }
    }

    /// Issue 11, finding 5: a child printing 200 MiB left a 200 MiB log. With `max_size: 1MiB, backups: 3`
    /// 20 MiB of output leaves about 4 MiB in logs/, in `<name>.log` and `.1` .. `.3`, and `logs` still shows
    /// the last lines.
    @Test func childLogIsRotatedBySizeAndLogsReadsAcrossTheRotation() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("rot", """
            deployment: rot
            defaults:
              log: {max_size: 1MiB, backups: 3}
            handlers:
              - id: chatty
                readiness: none
                restart: {policy: never}
                command: ["/bin/sh", "-c", "yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 20971520; echo; echo last-line-1; echo last-line-2; exec /bin/sleep 300"]
            """)
        try await h.up("rot", file: file)
        let logs = h.deploymentDir("rot") + "/logs"
        func tail() async throws -> String { try await h.run(["logs", "chatty", "--lines", "2", "--deployment", "rot"]).stdout }
        try await waitUntil("the last lines in the log", timeout: .seconds(60)) { try await tail() == "last-line-1\nlast-line-2" }
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: logs).filter { $0.hasPrefix("chatty.log") })
        #expect(names == ["chatty.log", "chatty.log.1", "chatty.log.2", "chatty.log.3"], "\(names)")
        var total = 0
        for name in names {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: logs + "/" + name)[.size] as? Int)
            #expect(size <= 1 << 20, "\(name): \(size) bytes")
            total += size
        }
        #expect(total <= 4 << 20 && total > 3_000_000, "logs/ holds \(total) bytes")
        // The current file is short: `logs` continues in the newest backup, newest lines last.
        // (Retried: CLIHarness.run can return before a busy machine has delivered all of the output.)
        var lines: [String] = []
        try await waitUntil("five lines from `logs --lines 5`", timeout: .seconds(20)) {
            lines = try await h.run(["logs", "chatty", "--lines", "5", "--deployment", "rot"]).stdout
                .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            return lines.count == 5
        }
        #expect(lines.suffix(2) == ["last-line-1", "last-line-2"], "\(lines)")
        #expect(lines.first?.hasPrefix("0123456789") == true, "\(lines)")
        try await h.run(["down", "--deployment", "rot"])
    }

    /// With the log written through a pipe by the governor, a child's last lines must not be lost: neither
    /// the line printed just before a crash, nor what it prints while being stopped by `down`.
    @Test func lastLinesBeforeACrashAndBeforeAStopAreInTheLog() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("last", """
            deployment: last
            handlers:
              - id: crasher
                readiness: none
                restart: {policy: never}
                command: ["/bin/sh", "-c", "while [ ! -e ${RUN_DIR}/go ]; do sleep 0.02; done; yes x | head -c 300000; echo; echo 'fatal: the last words before the crash'; kill -KILL $$"]
              - id: stopper
                readiness: none
                stop_timeout: 5s
                command: ["/bin/sh", "-c", "trap 'echo stopping-on-sigterm; exit 0' TERM; echo started; while :; do sleep 0.05; done"]
            """)
        try await h.up("last", file: file)
        let logs = h.deploymentDir("last") + "/logs"
        FileManager.default.createFile(atPath: h.deploymentDir("last") + "/run/go", contents: Data())
        try await waitUntil("the crasher to crash", timeout: .seconds(30)) {
            try await h.processes("last")["crasher"]?.status != "running"
        }
        try await waitUntil("its last line in the log", timeout: .seconds(10)) {
            (try? String(contentsOfFile: logs + "/crasher.log", encoding: .utf8))?.hasSuffix("fatal: the last words before the crash\n") == true
        }
        try await waitUntil("`logs crasher` to show it", timeout: .seconds(20)) {
            try await h.run(["logs", "crasher", "--lines", "1", "--deployment", "last"]).stdout == "fatal: the last words before the crash"
        }
        let down = try await h.run(["down", "--deployment", "last"])
        #expect(down.ok, "\(down)")
        let stopper = try String(contentsOfFile: logs + "/stopper.log", encoding: .utf8)
        #expect(stopper.contains("started\n") && stopper.hasSuffix("stopping-on-sigterm\n"), "\(stopper)")
    }

    /// Issue 11, finding 7: `stop_timeout: 999999999999999999999m` crashed szgovernor ("Overflow in
    /// multiplication", exit 132); a control endpoint path too long for sun_path failed late and obscurely.
    @Test func hugeDurationAndLongControlPathAreRefusedBeforeAnythingStarts() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("huge", """
            deployment: huge
            handlers:
              - id: s
                command: ["/bin/sleep", "300"]
                stop_timeout: 999999999999999999999m
            """)
        let huge = try await h.run(["up", "--detach", "--deployment", "huge", "--file", file])
        #expect(huge.status == .exited(1), "\(huge)")
        #expect(huge.stderr.contains("huge.yaml:5:19: handlers[0].stop_timeout: must be at most 7 days"), "\(huge)")
        #expect(h.pids("huge").isEmpty, "nothing started")

        let plain = try h.writeDeployment("plain", """
            deployment: plain
            handlers:
              - id: s
                command: ["/bin/sleep", "300"]
            """)
        let longRoot = h.dir.file(String(repeating: "r", count: 90))
        let long = try await h.run(["up", "--detach", "--deployment", "plain", "--file", plain, "--root", longRoot], root: false)
        #expect(long.status == .exited(1), "\(long)")
        #expect(long.stderr.contains("the governor's control endpoint under --root"), "\(long)")
        #expect(long.stderr.contains("run/governor.control is "), "\(long)")
        #expect(!FileManager.default.fileExists(atPath: longRoot + "/plain/pids/s.pid"), "nothing started")
    }

    /// Whether `pid`'s SigIgn (/proc/PID/status) has SIGTERM.
    static func ignoresSigterm(_ pid: pid_t) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("SigIgn:") }),
              let mask = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) else { return false }
        return mask & (1 << (UInt64(SIGTERM) - 1)) != 0
    }

    /// Upstream: a governor killed with SIGKILL left its children running, unnoticed by anyone.
    @Test func governorKilledWithSigkillLeavesNoUnnoticedChildren() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        // szmock children notice by themselves (their parent-death signal, SIGINT) ...
        try await h.up()
        let pids = h.pids()
        kill(try #require(pids["governor"]), SIGKILL)
        try await waitUntil("every szmock child to stop on its own") { pids.values.allSatisfy { !LiveProcess.isAlive($0) } }
        let down = try await h.run(["down", "--deployment", "ci"])
        #expect(down.ok && down.stdout.contains("removed stale PID files"), "\(down)")
        #expect(h.pidFiles().isEmpty && h.socketFiles().isEmpty)

        // ... and a child that ignores its parent-death signal (SIGTERM: a shell that traps it, with no exec,
        // so its PID file keeps naming what runs) is found through its PID file by the next up and down.
        let file = try h.writeDeployment("plain", """
            deployment: plain
            handlers:
              - id: s
                command: ["/bin/sh", "-c", "trap '' TERM; while :; do /bin/sleep 1; done"]
                stop_timeout: 1s
            """)
        try await h.up("plain", file: file)
        let first = h.pids("plain")
        let sleeper = try #require(first["s"])
        try await waitUntil("s to ignore SIGTERM") { Self.ignoresSigterm(sleeper) }
        kill(try #require(first["governor"]), SIGKILL)
        try await waitUntil("the governor to be gone") { !LiveProcess.isAlive(first["governor"]!) }
        #expect(LiveProcess.isAlive(sleeper))
        try await h.up("plain", file: file)
        #expect(!LiveProcess.isAlive(sleeper), "the next up stopped the orphan")
        #expect(h.events("plain").contains { $0["event"] == "orphan_stopped" && $0["pid"]?.intValue == Int64(sleeper) })
        let second = h.pids("plain")
        try await waitUntil("the new s to ignore SIGTERM") { Self.ignoresSigterm(second["s"] ?? 0) }
        kill(try #require(second["governor"]), SIGKILL)
        try await waitUntil("the governor to be gone") { !LiveProcess.isAlive(second["governor"]!) }
        let offline = try await h.run(["down", "--deployment", "plain"])
        #expect(offline.ok && offline.stdout.contains("stopped orphans: s"), "\(offline)")
        #expect(!LiveProcess.isAlive(second["s"]!))
        #expect(h.pidFiles("plain").isEmpty)
        try await waitUntil("everything to be gone") { h.tracker.alive.isEmpty }
    }

    /// foreign.yaml's `sh -c '... exec python3 ...'`: the PID file kept the executable at spawn (dash), so
    /// every verifier saw "PID reused or file forged" and `szchaos` refused every fault on the process.
    @Test func processThatExecsFromAShellWrapperStaysVerifiable() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("wrapped", """
            deployment: wrapped
            handlers:
              - id: s
                endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
                command: ["/bin/sh", "-c", "exec \\"$0\\" handler --id s --bind \\"$1\\"", "${SZMOCK}", "${ENDPOINT}"]
                readiness: ping
                stop_timeout: 2s
            """)
        try await h.up("wrapped", file: file)
        let record = try PidFile.read(h.deploymentDir("wrapped") + "/pids/s.pid")
        let szmock = URL(fileURLWithPath: h.szmock).resolvingSymlinksInPath().path
        #expect(record.executable == szmock, "the PID file names what runs: \(record)")
        #expect(PidFile.verify(record).isSafeToSignal, "\(PidFile.verify(record))")
        let kill9 = try await h.szchaos(["kill", "s"], deployment: "wrapped")
        #expect(kill9.ok, "\(kill9)")
        // No throw before `down` (a failure here must not leave the deployment's cgroup behind).
        let killed = (try? await waitUntil("szchaos killed it", timeout: .seconds(10)) { !LiveProcess.isAlive(record.pid) }) != nil
        #expect(killed, "szchaos killed it")
        try await h.run(["down", "--deployment", "wrapped"])
        try await waitUntil("everything to be gone") { h.tracker.alive.isEmpty }
    }
}
