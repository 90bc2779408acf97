import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// The manners of the command lines (issue 12): no default subcommand, deployments named for what stops or
/// kills, `--version`, `status` exit 3 and one JSON schema, deployments found upwards, `logs -f`, `validate`,
/// errors once on stderr. Each runs the built executables.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_CLIManners {
    /// `szgovernor ARGS` run from `folder` with no `--root` and no `$SZ_DEPLOYMENTS_ROOT`.
    func runIn(_ h: CLIHarness, _ folder: String, _ args: [String], executable: String? = nil) async throws -> CLIHarness.Run {
        try await h.run(["-c", "cd \"$0\" && exec \"$@\"", folder, executable ?? h.szgovernor] + args, root: false,
                        environment: ["SZ_DEPLOYMENTS_ROOT": ""], executable: "/bin/sh")
    }

    @Test func noSubcommandAndAMistypedOneAreUsageErrorsThatStartNothing() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let folder = h.dir.file("empty")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let bare = try await runIn(h, folder, [])
        #expect(bare.status == .exited(2) && bare.stdout.isEmpty && bare.stderr.contains("SUBCOMMANDS"), "\(bare)")
        let typo = try await runIn(h, folder, ["statuz"])
        #expect(typo.status == .exited(2), "\(typo)")
        #expect(typo.stderr.components(separatedBy: "Unexpected argument 'statuz'").count == 2, "said once: \(typo)")
        #expect(!typo.stderr.contains("--detach") && typo.stdout.isEmpty, "not up's usage: \(typo)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty, "nothing was made")
    }

    @Test func everyToolPrintsItsVersion() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        for tool in [h.szgovernor, h.szchaosExecutable, h.szmock] {
            let r = try await h.run(["--version"], root: false, executable: tool)
            #expect(r.ok && r.stdout == HarnessVersion.current, "\(tool): \(r)")
        }
    }

    @Test(arguments: [["down"], ["restart", "h-1"], ["remove", "h-1"], ["scale", "h", "1"]])
    func governorCommandsThatStopOrKillNeedTheDeploymentNamed(_ args: [String]) async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let r = try await h.run(args)
        #expect(r.status == .exited(2) && r.stderr.contains("Missing expected argument '--deployment <deployment>'"), "\(r)")
    }

    @Test(arguments: [["kill-random"], ["kill", "h-1"], ["pause", "h-1", "--for", "1s"], ["signal", "h-1", "--signal", "SIGTERM"],
                      ["drop-replies", "h-1"]])
    func faultsNeedTheDeploymentNamed(_ args: [String]) async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let r = try await h.run(args, executable: h.szchaosExecutable)
        #expect(r.status == .exited(2) && r.stderr.contains("Missing expected argument '--deployment <deployment>'"), "\(r)")
    }

    @Test func statusExitsThreeUnlessEveryProcessRunsAndPrintsOneSchemaEitherWay() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        func document(_ r: CLIHarness.Run) throws -> [String: JSONValue] {
            try #require(try JSON.parse(r.stdout).objectValue, "\(r)")
        }
        let keys = Set(StatusReport.documentKeys), processKeys = Set(StatusReport.processKeys)

        let offline = try await h.run(["status", "-d", "ci", "--json"])
        #expect(offline.status == .exited(3), "\(offline)")
        let off = try document(offline)
        #expect(Set(off.keys) == keys && off["success"] == false && off["governor_running"] == false, "\(offline)")
        #expect(off["note"]?.stringValue?.contains("under \(h.root) (root: --root)") == true, "\(offline)")
        let text = try await h.run(["status", "-d", "ci"])
        #expect(text.status == .exited(3) && text.stdout.contains("no governor is running deployment \"ci\""), "\(text)")

        // A handler that is never restarted: killed, the deployment runs but is not healthy.
        let file = try h.writeDeployment("half", """
            deployment: half
            server:
              command: ["${SZMOCK}", "server", "--bind", "${ENDPOINT}"]
              endpoint: "ipc://${RUN_DIR}/server.sock"
              readiness: {ping: "${ENDPOINT}", timeout: 30s}
            handlers:
              - id: ok
                endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
                command: ["${SZMOCK}", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}"]
                readiness: {ping: "${ENDPOINT}", timeout: 30s}
              - id: gone
                command: ["/bin/sleep", "600"]
                readiness: none
                restart: {policy: never}
            """)
        try await h.up("half", file: file)
        let all = try await h.run(["status", "-d", "half"])
        #expect(all.ok, "every process running: exit 0: \(all)")
        kill(try #require(h.pids("half")["gone"]), SIGKILL)
        try await waitUntil("gone to have exited", timeout: .seconds(20)) {
            (try? await h.processes("half")["gone"]?.status).map { $0 != "running" && $0 != "starting" } == true
        }
        let half = try await h.run(["status", "-d", "half", "--json"])
        #expect(half.status == .exited(3), "\(half)")
        let doc = try document(half)
        #expect(Set(doc.keys) == keys && doc["success"] == false && doc["governor_running"] == true, "\(half)")
        for p in doc["processes"]?.arrayValue ?? [] { #expect(processKeys.isSubset(of: Set(p.objectValue.map { Array($0.keys) } ?? [])), "\(p)") }

        let removed = try await h.run(["remove", "gone", "-d", "half"])
        #expect(removed.ok, "\(removed)")
        let healthy = try await h.run(["status", "-d", "half", "--json"])
        #expect(healthy.ok, "\(healthy)")
        let ok = try document(healthy)
        #expect(Set(ok.keys) == keys && ok["success"] == true && ok["processes"]?.arrayValue?.count == 2, "\(healthy)")
        let okText = try await h.run(["status", "-d", "half"])
        #expect(okText.ok && okText.stdout.contains("governor pid"), "\(okText)")
        let down = try await h.run(["down", "-d", "half"])
        #expect(down.ok, "\(down)")
    }

    @Test func deploymentsAreFoundUpwardsFromTheCurrentFolderAndNotFoundSaysWhereItLooked() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        // A project: <dir>/d is the root (deployments/ is its name here, so make a project folder holding it).
        let project = h.dir.file("proj")
        let deep = project + "/src/a/b"
        try FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
        try await h.run(["up", "--detach", "-d", "ci", "--file", CLIHarness.fixture("ci"), "--root", project + "/deployments"], root: false)
        func trackProject() {
            let folder = project + "/deployments/ci/pids"
            for f in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where f.hasSuffix(".pid") {
                if let r = try? PidFile.read(folder + "/" + f) { h.tracker.track(r.pid) }
            }
        }
        trackProject()
        defer { trackProject() }
        let found = try await runIn(h, deep, ["status", "-d", "ci", "--json"])
        #expect(found.ok, "\(found)")
        #expect(try JSON.parse(found.stdout)["governor_running"] == true, "\(found)")

        let lost = h.dir.file("elsewhere/x")
        try FileManager.default.createDirectory(atPath: lost, withIntermediateDirectories: true)
        let nothing = try await runIn(h, lost, ["status", "-d", "ci"])
        #expect(nothing.status == .exited(3), "\(nothing)")
        #expect(nothing.stdout.contains("no deployments/ or Fixtures/deployments/ at or above \(lost)"), "\(nothing)")
        let down = try await runIn(h, deep, ["down", "-d", "ci"])
        #expect(down.ok && down.stdout.contains("stopped by its governor"), "\(down)")
    }

    @Test func logsFollowPrintsNewLinesAcrossARotation() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let logs = h.root + "/f/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let log = logs + "/x.log"
        try "one\ntwo\nthree\n".write(toFile: log, atomically: false, encoding: .utf8)
        func append(_ path: String, _ text: String) throws {
            let f = try #require(FileHandle(forWritingAtPath: path))
            f.seekToEndOfFile()
            f.write(Data(text.utf8))
            try f.close()
        }
        let p = try TestProcess(h.szgovernor, ["logs", "x", "-d", "f", "-n", "2", "-f", "--root", h.root])
        defer { p.stop() }
        try await waitUntil("the tail", timeout: .seconds(20)) { p.lines == ["two", "three"] }
        try append(log, "four\n")
        try await waitUntil("a new line", timeout: .seconds(20)) { p.lines.last == "four" }
        // Rotated as the governor does: a last line, the file renamed to .1, a new file.
        try append(log, "five\n")
        #expect(rename(log, log + ".1") == 0)
        try "six\n".write(toFile: log, atomically: false, encoding: .utf8)
        try await waitUntil("the lines across the rotation", timeout: .seconds(20)) { p.lines.last == "six" }
        #expect(p.lines == ["two", "three", "four", "five", "six"])
        #expect(p.exitStatus == nil, "it follows until interrupted")
    }

    @Test func validateChecksFilesWithoutStartingAnything() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let folder = h.dir.file("v")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let good = ["ci", "demo", "foreign"].map(CLIHarness.fixture) + ["smoke", "proxy-only"].map {
            CLIHarness.fixtures.appendingPathComponent("experiments/\($0).yaml").path
        }
        let ok = try await runIn(h, folder, ["validate"] + good)
        #expect(ok.ok, "\(ok)")
        #expect(ok.stdout.split(separator: "\n").count == good.count && ok.stdout.contains("a valid experiment file: \"smoke\""), "\(ok)")
        let badDeployment = CLIHarness.bad("bad-duration.yaml")
        let badExperiment = CLIHarness.fixtures.appendingPathComponent("bad/experiments/unknown-field.yaml").path
        let bad = try await runIn(h, folder, ["validate", good[0], badDeployment, badExperiment])
        #expect(bad.status == .exited(1), "\(bad)")
        #expect(bad.stderr.contains("bad-duration.yaml:") && bad.stderr.contains("unknown-field.yaml:"), "file:line named: \(bad)")
        #expect(bad.stdout.split(separator: "\n").count == 1, "the good one said: \(bad)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty, "nothing was made or started")
    }

    @Test func aFaultThatCannotBeAppliedSaysSoOnceOnStderr() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let r = try await h.run(["kill", "h-1", "-d", "nosuch"], executable: h.szchaosExecutable)
        #expect(r.status == .exited(1), "\(r)")
        #expect(r.stderr.components(separatedBy: "no target matches h-1").count == 2 && !r.stdout.contains("no target matches"), "\(r)")
    }

    @Test func processFaultsRepeatOnASeededScheduleUntilTheirCount() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let before = h.pids()
        let r = try await h.szchaos(["kill-random", "--interval", "300ms", "--jitter", "100ms", "--count", "3", "--seed", "5", "--json"],
                                    deployment: "ci", timeout: .seconds(60))
        #expect(r.ok, "\(r)")
        let records = r.stdout.split(separator: "\n").compactMap { try? JSON.parse(String($0)).objectValue }
        #expect(records.map { $0["round"]?.intValue } == [1, 2, 3], "\(r)")
        #expect(records.allSatisfy { $0["success"] == true && $0["actions"]?.arrayValue?.count == 1 }, "\(r)")
        try await waitUntil("every handler back", timeout: .seconds(30)) {
            (try? await h.processes().values.allSatisfy { $0.status == "running" }) == true
        }
        #expect(h.pids() != before, "handlers were killed and restarted")

        // A pause loop: each round paused, then resumed.
        let p = try await h.szchaos(["pause", "h-1", "--for", "100ms", "--interval", "300ms", "--count", "2"], deployment: "ci", timeout: .seconds(60))
        #expect(p.ok && p.stdout.contains("round 2:") && p.stdout.components(separatedBy: "resumed").count >= 3, "\(p)")

        let usage = try await h.szchaos(["kill", "h-1", "--count", "3"], deployment: "ci")
        #expect(usage.status == .exited(2) && usage.stderr.contains("--count 3 needs --interval"), "\(usage)")
        let bare = try await h.szchaos(["kill", "h-1", "--interval", "5"], deployment: "ci")
        #expect(bare.status == .exited(2) && bare.stderr.contains("a number without a unit is refused"), "\(bare)")
        let down = try await h.run(["down", "-d", "ci"])
        #expect(down.ok, "\(down)")
    }

    @Test func aRepeatingFaultEndsAtSIGINTBetweenRounds() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up()
        let p = try TestProcess(h.szchaosExecutable, ["kill", "h-2", "--interval", "1h", "-d", "ci", "--root", h.root])
        defer { p.stop() }
        try await waitUntil("the first round", timeout: .seconds(30)) { p.lines.contains { $0.contains("kill h-2") } }
        kill(p.pid, SIGINT)
        #expect(try await p.waitExit(timeout: .seconds(10)) == .exited(0), "\(p.lines) \(p.stderrText)")
        #expect(p.lines.filter { $0.hasPrefix("round ") } == ["round 1:"], "\(p.lines)")
        let down = try await h.run(["down", "-d", "ci"])
        #expect(down.ok, "\(down)")
    }
}
