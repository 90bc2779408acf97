import Chaos
import Foundation
import Governor
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// Every single fault of `szchaos` against the real ci deployment (in-process governor, real `szmock`
/// processes), each with its observed effect.
@Suite(.tags(.integration, .zmq, .governor), .leakChecked)
struct integration_zmq_governor_SingleFaults {
    @Test func killRandomKillsOneVerifiedHandlerAndTheGovernorRestartsIt() async throws {
        try await withCIRig { rig in
            let before = Dictionary(uniqueKeysWithValues: ["server", "h-1", "h-2", "h-3"].map { ($0, rig.pid($0)!) })
            let r = try await rig.szchaos(["kill-random", "--seed", "11", "--json"])
            #expect(r.code == 0, "\(r.text) \(r.stderr)")
            let rec = try #require(r.record)
            #expect(rec["seed"] == "11" && rec["success"] == true && rec["command"] == "kill-random")
            let actions = try #require(rec["actions"]?.arrayValue)
            #expect(actions.count == 1)
            let victim = try #require(actions.first?["target"]?.stringValue)
            #expect(victim.hasPrefix("h-"), "the server is not a target unless --include-server")
            #expect(actions.first?["pid"]?.intValue == Int64(before[victim]!))
            let new = try await rig.waitRestarted(victim, from: before[victim]!)
            #expect(new != before[victim])
            for (n, p) in before where n != victim { #expect(rig.pid(n) == p, "\(n) untouched") }
            // The same seed chooses the same victim again (the restarted one), and says so in text mode.
            let again = try await rig.szchaos(["kill-random", "--seed", "11"])
            #expect(again.code == 0)
            #expect(again.lines.first == "seed: 11")
            #expect(again.lines.contains { $0.hasPrefix("kill \(victim) (pid \(new)): SIGKILL sent") }, "\(again.lines)")
            _ = try await rig.waitRestarted(victim, from: new)
        }
    }

    @Test func pauseStopsTheProcessThenResumesIt() async throws {
        try await withCIRig { rig in
            let pid = try #require(rig.pid("h-2"))
            let words = pauseWords(pid)
            // A pause long enough that a saturated machine still sees it (frozen, or state T) before it ends.
            let p = try TestProcess(CIRig.szchaos, ["pause", "h-2", "--for", "5s", "--deployment", "ci", "--root", rig.root])
            defer { p.stop() }
            try await waitUntil("h-2 paused, or szchaos ended", timeout: .seconds(30)) {
                isPaused(pid) || p.exitStatus != nil
            }
            try #require(isPaused(pid), "szchaos did not pause h-2: \(p.lines) \(p.stderrText)")
            #expect(try await p.waitExit(timeout: .seconds(20)) == .exited(0))
            try await waitUntil("h-2 running again", timeout: .seconds(30)) { isRunningFree(pid) }
            #expect(rig.pid("h-2") == pid, "resumed, not restarted")
            #expect(p.lines.contains { $0.hasPrefix("pause h-2 (pid \(pid)): ") && $0.contains(words.pause) }, "\(p.lines)")
            try await waitUntil("the resume line", timeout: .seconds(30)) {
                p.lines.contains { $0.hasPrefix("resume h-2 (pid \(pid)): ") && $0.contains(words.resume) }
            }
            let (reply, _) = try await clientCall(rig.dataEndpoint("h-2"), timeout: .seconds(10))
            #expect((try? reply.get())?["message"] == "pong")
        }
    }

    @Test func pauseIsUndoneWhenSzchaosGetsSIGTERM() async throws {
        try await withCIRig { rig in
            let pid = try #require(rig.pid("h-1"))
            let p = try TestProcess(CIRig.szchaos, ["pause", "h-1", "--for", "10m", "--deployment", "ci", "--root", rig.root])
            defer { p.stop() }
            let words = pauseWords(pid)
            try await waitUntil("h-1 paused", timeout: .seconds(30)) { isPaused(pid) }
            try await waitUntil("the pause line", timeout: .seconds(30)) { p.lines.contains { $0.hasPrefix("pause h-1") } }
            p.signal(SIGTERM)
            #expect(try await p.waitExit(timeout: .seconds(10)) == .exited(1))
            try await waitUntil("h-1 running again", timeout: .seconds(5)) { isRunningFree(pid) }
            try await waitUntil("the resume line", timeout: .seconds(5)) { p.lines.contains { $0.contains("\(words.resume) (interrupted by SIGTERM") } }
            try await waitUntil("the interruption on stderr", timeout: .seconds(5)) { p.stderrText.contains("interrupted by SIGTERM") }
        }
    }

    @Test func signalSendsTheNamedSignal() async throws {
        try await withCIRig { rig in
            let pid = try #require(rig.pid("h-3"))
            // SIGTERM: the mock handler stops gracefully (exit 0); the governor (policy always) starts it again.
            let r = try await rig.szchaos(["signal", "h-3", "--signal", "TERM"])
            #expect(r.code == 0, "\(r.text) \(r.stderr)")
            #expect(r.lines.contains("signal h-3 (pid \(pid)): SIGTERM sent"))
            _ = try await rig.waitRestarted("h-3", from: pid)
            #expect(rig.events.get().contains { $0.process == "h-3" && $0.event == .exited && $0.pid == pid && ($0.detail ?? "").contains("exit code 0") })
        }
    }

    @Test func dropRepliesThenClearAsSeenByAClient() async throws {
        try await withCIRig { rig in
            let ep = rig.dataEndpoint("h-1")
            // --count 2: two attempts time out, the third gets its reply.
            var r = try await rig.szchaos(["drop-replies", "h-1", "--count", "2"])
            #expect(r.code == 0, "\(r.text) \(r.stderr)")
            #expect(r.lines.contains { $0.hasPrefix("fault.set h-1") && $0.contains("drop_next") })
            let (reply, stats) = try await clientCall(ep, "increment_counter", ["counter_name": "c"], timeout: .seconds(1), attempts: 3)
            #expect((try? reply.get())?["value"] == 3, "executed three times: the two lost replies were duplicates at the handler")
            #expect(stats.timeouts == 2 && stats.replies == 1)
            // --probability 1: every reply dropped until `clear`.
            r = try await rig.szchaos(["drop-replies", "h-1", "--probability", "1"])
            #expect(r.code == 0)
            let (lost, _) = try await clientCall(ep, timeout: .milliseconds(200), attempts: 10)
            guard case .failure(.noReply) = lost else { Issue.record("expected no reply, got \(lost)"); return }
            // A client timeout is no proof of a drop (under load the request may not have reached h-1 in
            // 200 ms, and linger 0 discards it): h-1 itself must have dropped one.
            try await waitUntil("h-1 to drop a reply under probability 1", timeout: .seconds(30)) {
                (try await rig.status("h-1")["counters"]?["dropped"]?.intValue ?? 0) >= 3
            }
            r = try await rig.szchaos(["clear", "h-1"])
            #expect(r.code == 0 && r.lines.contains { $0.hasPrefix("fault.clear h-1") })
            let droppedAtClear = try await rig.status("h-1")["counters"]?["dropped"]
            // Retries are allowed: a handler that did not clear drops every one of them.
            let (ok, _) = try await clientCall(ep, timeout: .seconds(2), attempts: 5)
            #expect((try? ok.get())?["message"] == "pong")
            let status = try await rig.status("h-1")
            #expect(status["faults"] == .object([:]))
            #expect(status["counters"]?["dropped"] == droppedAtClear, "nothing dropped after clear")
        }
    }

    @Test func forceEFSMLeavesARawREQSocketInEFSMAndTheClientRecovers() async throws {
        try await withCIRig { rig in
            let ep = rig.dataEndpoint("h-2")
            #expect(try await rig.szchaos(["force-efsm", "h-2"]).code == 0)
            let code: ZMQError.Code? = try await onThread("raw REQ against a swallowing handler") {
                let ctx = try Context()
                defer { try? ctx.terminate(timeout: .seconds(1)) }
                let s = try ctx.socket(.req)
                try s.connect(ep)
                try s.send(Request(method: "ping").encoded())
                guard try s.poll(.pollIn, timeout: .milliseconds(500)).isEmpty else { return nil }
                do { try s.send(Request(method: "ping").encoded()); return nil } catch let e as ZMQError { return e.code }
            }
            #expect(code == .efsm)
            #expect(try await rig.szchaos(["force-efsm", "h-2"]).code == 0)
            let (reply, stats) = try await clientCall(ep, timeout: .milliseconds(400), attempts: 2)
            #expect((try? reply.get())?["message"] == "pong")
            #expect(stats.timeouts == 1 && stats.recreations >= 1)
            #expect(try await rig.status("h-2")["counters"]?["swallowed"] == 2)
        }
    }

    @Test func delayAndGarbageThroughTheControlChannel() async throws {
        try await withCIRig { rig in
            let ep = rig.dataEndpoint("h-3")
            var r = try await rig.szchaos(["delay", "h-3", "--by", "30ms", "--jitter", "10ms"])
            #expect(r.code == 0)
            let (slow, _) = try await clientCall(ep, timeout: .seconds(3))
            #expect((try? slow.get())?["message"] == "pong")
            // `status --json` carries the handler's status reply: the reply was delayed, the fault is active.
            r = try await rig.szchaos(["status", "h-3", "--json"])
            let data = try #require(r.record?["actions"]?.arrayValue?.first?["data"]?.objectValue)
            #expect(data["counters"]?["delayed"] == 1)
            #expect(data["faults"]?["delay_ms"] == 30 && data["faults"]?["jitter_ms"] == 10)
            r = try await rig.szchaos(["garbage", "h-3", "--kind", "wrong_shape"])
            #expect(r.code == 0)
            let (bad, _) = try await clientCall(ep, timeout: .seconds(3))
            guard case .failure(.invalidReply) = bad else { Issue.record("expected an invalid reply, got \(bad)"); return }
            #expect(try await rig.szchaos(["clear", "h-3"]).code == 0)
            let (ok, _) = try await clientCall(ep, timeout: .seconds(3))
            #expect((try? ok.get())?["message"] == "pong")
        }
    }

    @Test func crashEndsTheHandlerWithTheExitCodeAndTheGovernorRestartsIt() async throws {
        try await withCIRig { rig in
            let pid = try #require(rig.pid("h-2"))
            let r = try await rig.szchaos(["crash", "h-2", "--exit-code", "7", "--json"])
            #expect(r.code == 0, "\(r.text) \(r.stderr)")
            #expect(r.record?["actions"]?.arrayValue?.first?["action"] == "crash")
            _ = try await rig.waitRestarted("h-2", from: pid)
            #expect(rig.events.get().contains { $0.process == "h-2" && $0.event == .exited && $0.pid == pid && ($0.detail ?? "").contains("7") },
                    "\(rig.events.get().filter { $0.process == "h-2" })")
        }
    }

    @Test func dryRunChangesNothing() async throws {
        try await withCIRig { rig in
            let before = ["server", "h-1", "h-2", "h-3"].map { rig.pid($0) }
            for args in [["kill-random", "--seed", "3", "--limit", "3"], ["kill", "h-*", "--include-server"], ["pause", "h-1", "--for", "1s"],
                         ["signal", "h-2", "--signal", "SIGUSR1"], ["drop-replies", "h-1", "--count", "5"], ["force-efsm", "h-2"],
                         ["crash", "h-3"], ["garbage", "h-*"]] {
                let r = try await rig.szchaos(args + ["--dry-run"])
                #expect(r.code == 0, "\(args): \(r.text) \(r.stderr)")
                #expect(r.lines.count > 1 && r.lines.dropFirst().allSatisfy { $0.contains("would") && $0.contains("dry run") }, "\(r.lines)")
            }
            for n in ["h-1", "h-2", "h-3"] {
                #expect(!isPaused(rig.pid(n)!))
                #expect(try await rig.status(n)["faults"] == .object([:]))
                #expect(try await rig.status(n)["counters"]?["requests"] == 0)
            }
            #expect(["server", "h-1", "h-2", "h-3"].map { rig.pid($0) } == before)
            #expect(!rig.events.get().contains { $0.event == .exited })
        }
    }

    @Test func reproducibleFromTheSeed() async throws {
        try await withCIRig { rig in
            // Same seed, same victims; different seeds reach different victims (the draw is not fixed).
            var victims: [UInt64: [String]] = [:]
            for seed: UInt64 in [1, 2, 3, 4, 5, 6, 7, 8] {
                let a = try await rig.szchaos(["kill-random", "--seed", "\(seed)", "--limit", "2", "--dry-run", "--json"])
                let b = try await rig.szchaos(["kill-random", "--seed", "\(seed)", "--limit", "2", "--dry-run", "--json"])
                let ta = a.record?["actions"]?.arrayValue?.compactMap { $0["target"]?.stringValue } ?? []
                let tb = b.record?["actions"]?.arrayValue?.compactMap { $0["target"]?.stringValue } ?? []
                #expect(ta.count == 2 && ta == tb, "seed \(seed): \(ta) vs \(tb)")
                victims[seed] = ta
            }
            #expect(Set(victims.values).count > 1)
            // An experiment's plan on the deployment: same seed, same victims and the same times.
            let exp = try rig.dir.write("""
                title: plan
                duration: 20s
                deployment: {name: ci, start_if_not_running: false}
                faults:
                  - {name: k, kind: kill-random, targets: ["h-*"], schedule: {initial_delay: 1s, interval: 3s, jitter: 1s, count: 4}}
                  - {name: p, kind: pause, targets: {include: ["h-*"], limit: 2, random: true}, schedule: {initial_delay: 2s, interval: 4s, jitter: 2s, count: 3, duration: 500ms}}
                """, to: "plan.yaml").path
            let runArgs = ["run", exp, "--dry-run", "--root", rig.root, "--file", rig.deploymentFile]
            let p1 = try await SZChaosRun.run(runArgs + ["--seed", "77"])
            let p2 = try await SZChaosRun.run(runArgs + ["--seed", "77"])
            let p3 = try await SZChaosRun.run(runArgs + ["--seed", "78"])
            #expect(p1.code == 0, "\(p1.text) \(p1.stderr)")
            #expect(p1.lines.count == 8 && p1.lines == p2.lines, "\(p1.lines)")
            #expect(p1.lines.first == "seed: 77" && p1.lines.dropFirst().allSatisfy { $0.hasPrefix("at ") })
            #expect(p3.lines.dropFirst() != p1.lines.dropFirst())
        }
    }
}

/// Verification before any signal, with PID files only (no governor): forged, stale and unmarked files are
/// skipped with the reason, and nothing is signalled.
@Suite(.tags(.integration), .leakChecked)
struct integration_TargetVerification {
    /// A handle whose process turned out not to be the verified one closed its pidfd in the initializer and
    /// again in deinit (which runs when an initializer throws after setting every property): the second
    /// close could hit whatever descriptor another thread had just opened under that number. In a child
    /// process, so other tests' handles do not move the count.
    @Test func aHandleRefusedForAForgedIdentityClosesItsPidfdExactlyOnce() async throws {
        let report = await oneExitTestAtATime { await #expect(processExitsWith: .success) {
            // pidfd descriptors only: the child's runtime opens others of its own at any moment.
            func pidfds() -> Int { LiveProcess.leakableDescriptors().values.filter { $0 == "anon_inode:[pidfd]" }.count }
            guard var forged = ProcessIdentity.of(pid: getpid()) else { exit(3) }
            forged.startTime += 1
            let before = ProcessHandle.openPidfdCount, pidfdsBefore = pidfds()
            var accepted = false
            for _ in 0..<3 {
                do {
                    _ = try ProcessHandle(VerifiedTarget(name: "forged", identity: forged, pidFile: "/nonexistent"))
                    accepted = true
                } catch {}
            }
            let after = ProcessHandle.openPidfdCount, pidfdsAfter = pidfds()
            ExitTestReport.line("pidfd-check: handle count \(before) -> \(after), pidfds \(pidfdsBefore) -> \(pidfdsAfter), forged accepted: \(accepted)")
            exit(after == before && pidfdsAfter == pidfdsBefore && !accepted ? 0 : 1)
        } }
        #expect(report.contains("pidfd-check: handle count 0 -> 0, pidfds 0 -> 0, forged accepted: false"), "\(report)")
    }

    /// A deployment folder with PID files written by the test.
    struct Folder {
        let dir = TemporaryDirectory(prefix: "szc")
        var root: String { dir.path }
        var deploymentDir: String { dir.path + "/ci" }
        func write(_ name: String, _ text: String) throws { try dir.write(text, to: "ci/pids/\(name).pid") }
        func record(_ pid: pid_t) -> PidRecord? { ProcessIdentity.of(pid: pid).map { PidRecord(identity: $0, name: nil) } }
        func run(_ args: [String]) async throws -> SZChaosRun {
            try await SZChaosRun.run(args + ["--deployment", "ci", "--root", root])
        }
    }

    @Test func aForgedPidFileNamingAnUnrelatedLiveProcessIsNeverSignalled() async throws {
        let f = Folder()
        let sleeper = try TestProcess("/bin/sleep", ["300"])
        defer { sleeper.stop() }
        let rec = try #require(f.record(sleeper.pid))
        // h-1: the sleeper's exact identity, but it was not started by this deployment's governor.
        try f.write("h-1", rec.text)
        // h-2: the sleeper's PID with another start time (what a reused PID looks like).
        var wrong = rec
        wrong.startTime = rec.startTime! + 1
        try f.write("h-2", wrong.text)
        // h-3: a bare PID (upstream's format): nothing to verify.
        try f.write("h-3", "\(sleeper.pid)\n")
        let r = try await f.run(["kill", "h-*", "--json"])
        #expect(r.code == 1)
        let rec1 = try #require(r.record)
        #expect(rec1["actions"]?.arrayValue?.isEmpty == true)
        let reasons = Dictionary(uniqueKeysWithValues: (rec1["skipped"]?.arrayValue ?? []).compactMap { s -> (String, String)? in
            guard let t = s["target"]?.stringValue, let why = s["reason"]?.stringValue else { return nil }
            return (t, why)
        })
        #expect(reasons["h-1"]?.contains("was not started by a governor") == true, "\(reasons)")
        #expect(reasons["h-2"]?.contains("PID reused or file forged") == true, "\(reasons)")
        #expect(reasons["h-3"]?.contains("no identity") == true, "\(reasons)")
        #expect(rec1["error"]?.stringValue?.contains("no verified target") == true)
        // Text mode says why too, and the sleeper was never signalled (not even stopped).
        let t = try await f.run(["pause", "h-1", "--for", "1s"])
        #expect(t.code == 1)
        #expect(t.lines.contains { $0.hasPrefix("skip h-1: pid \(sleeper.pid) was not started by a governor") }, "\(t.lines)")
        #expect(sleeper.exitStatus == nil && processState(sleeper.pid) == "S")
    }

    @Test func aProcessOfAnotherDeploymentIsSkipped() async throws {
        let f = Folder()
        let other = try TestProcess("/bin/sleep", ["300"], environment: [Reconciler.markerVariable: "/tmp/elsewhere/ci"])
        defer { other.stop() }
        try f.write("h-1", try #require(f.record(other.pid)).text)
        let r = try await f.run(["kill", "h-1"])
        #expect(r.code == 1)
        #expect(r.lines.contains { $0.contains("belongs to another deployment") }, "\(r.lines)")
        #expect(other.exitStatus == nil)
    }

    @Test func aStalePidFileIsSkippedAndAVerifiedProcessIsHit() async throws {
        let f = Folder()
        // A process that looks governed by this deployment (the governor's marker), and a stale file.
        let victim = try TestProcess("/bin/sleep", ["300"], environment: [Reconciler.markerVariable: f.deploymentDir])
        defer { victim.stop() }
        try f.write("h-2", try #require(f.record(victim.pid)).text)
        let gone = try TestProcess("/bin/true", [])
        _ = try await gone.waitExit()
        try f.write("h-1", PidRecord(pid: gone.pid, startTime: 1, executable: "/bin/true", name: "h-1").text)
        let r = try await f.run(["kill-random", "--target", "h-*", "--limit", "2", "--seed", "1", "--signal", "SIGTERM"])
        #expect(r.code == 0, "\(r.text) \(r.stderr)")
        #expect(r.lines.contains { $0.hasPrefix("skip h-1: stale PID file: pid \(gone.pid) is not running") }, "\(r.lines)")
        #expect(r.lines.contains("kill h-2 (pid \(victim.pid)): SIGTERM sent"))
        #expect(try await victim.waitExit() == .signaled(SIGTERM))
    }

    @Test func noTargetMatchingIsAnErrorNeverAll() async throws {
        let f = Folder()
        let p = try TestProcess("/bin/sleep", ["300"], environment: [Reconciler.markerVariable: f.deploymentDir])
        defer { p.stop() }
        try f.write("server", try #require(f.record(p.pid)).text)
        try f.write("governor", try #require(f.record(p.pid)).text)
        // Nothing matches: exit 1, the known names listed.
        var r = try await f.run(["kill-random", "--target", "x-*"])
        #expect(r.code == 1)
        #expect(r.stderr.contains("no target matches x-*") && r.stderr.contains("known: server"), "\(r.stderr)")
        // The server only with --include-server; the governor never.
        r = try await f.run(["kill", "server", "--dry-run"])
        #expect(r.code == 1 && r.stderr.contains("--include-server"), "\(r.stderr)")
        r = try await f.run(["kill", "governor", "--include-server", "--dry-run"])
        #expect(r.code == 1)
        r = try await f.run(["kill-random", "--include-server", "--dry-run", "--json"])
        #expect(r.code == 0 && r.record?["actions"]?.arrayValue?.first?["target"] == "server")
        // No name at all, a bad deployment name, a bad signal: usage errors, exit 2.
        for args in [["kill"], ["drop-replies", "h-1"], ["kill", "h-1", "--deployment", "../etc"], ["kill", "h-1", "--signal", "SIGNOPE"],
                     ["pause", "h-1", "--for", "soon"], ["drop-replies", "h-1", "--count", "1", "--probability", "0.5"]] {
            let u = try await SZChaosRun.run(args + ["--root", f.root])
            #expect(u.code == 2, "\(args): \(u.stderr)")
        }
        #expect(p.exitStatus == nil)
    }
}

@Suite(.tags(.unit), .leakChecked)
struct unit_SingleFaultParsing {
    @Test func signalNames() {
        #expect(SignalName.number("SIGKILL") == SIGKILL && SignalName.number("kill") == SIGKILL && SignalName.number("9") == SIGKILL)
        #expect(SignalName.number("usr1") == SIGUSR1 && SignalName.number("SIGNOPE") == nil && SignalName.number("999") == nil)
        #expect(SignalName.name(SIGSTOP) == "SIGSTOP")
    }

    @Test func controlFaultParams() throws {
        #expect(try ControlFaultActuator.faultParams(.dropReplies, ["count": 3]) == ["drop_next": 3])
        #expect(try ControlFaultActuator.faultParams(.dropReplies, ["probability": 0.5]) == ["drop_probability": 0.5])
        #expect(try ControlFaultActuator.faultParams(.delay, ["ms": 20, "jitter": 5]) == ["delay_ms": 20, "jitter_ms": 5])
        #expect(try ControlFaultActuator.faultParams(.forceEFSM, [:]) == ["swallow_next": 1])
        #expect(try ControlFaultActuator.faultParams(.crash, ["signal": "SIGABRT"]) == ["crash_after": 0, "crash_signal": "SIGABRT"])
        #expect(try ControlFaultActuator.faultParams(.garbage, [:]) == ["garbage": "bytes"])
        #expect(throws: (any Error).self) { try ControlFaultActuator.faultParams(.kill, [:]) }
    }

    @Test func deploymentNamesAreValidated() {
        #expect(throws: NameError.self) { try DeploymentPaths(root: "/tmp", name: "../x") }
        #expect(throws: NameError.self) { try DeploymentPaths(root: "/tmp", name: "a/b") }
        #expect(throws: TargetError.noTargetNamed) {
            try DeploymentTargets.select(TargetQuery(include: []), in: DeploymentPaths(root: "/nonexistent", name: "x"), seed: 1)
        }
    }
}

/// szchaos pause on a handler whose command started a `setsid` grandchild (issue 11, finding 8): SIGSTOP to
/// the handler left the grandchild running; its governor cgroup is frozen now, the grandchild with it.
@Suite(.tags(.regression, .integration, .governor), .leakChecked)
struct regression_integration_governor_PauseFreezesTheTree {
    /// Every handler of the ci file runs as `sh -c "setsid sh -c '...loop...' & szmock handler ..."` (no exec:
    /// the PID file names the shell, which stays what it was; szmock watches the shell as its parent, through
    /// SZGOVERNOR_PID); the grandchild writes its PID to `run/<name>.grandchild`.
    static func withGrandchildren(_ yaml: String) -> String {
        yaml.replacingOccurrences(of: #"command: ["${SZMOCK}", "handler","#, with: #"""
            command: ["/bin/sh", "-c", "setsid /bin/sh -c 'echo $$ > ${RUN_DIR}/${NAME}.grandchild; while :; do sleep 1; done' & SZGOVERNOR_PID=$$ \"$0\" \"$@\"", "${SZMOCK}", "handler",
            """#)
    }

    @Test func pauseFreezesTheSetsidGrandchildToo() async throws {
        try await withCIRig(edit: Self.withGrandchildren) { rig in
            let pid = try #require(rig.pid("h-1"))
            let file = rig.root + "/ci/run/h-1.grandchild"
            var found: pid_t?
            try await waitUntil("h-1's grandchild to write its PID") {
                found = (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                return found.map { processState($0) != nil } ?? false
            }
            let grandchild = try #require(found)
            #expect(LiveProcess.processGroup(of: grandchild) == grandchild, "a session of its own: SIGSTOP to h-1's group misses it")
            let p = try TestProcess(CIRig.szchaos, ["pause", "h-1", "--for", "10m", "--deployment", "ci", "--root", rig.root])
            defer { p.stop() }
            try await waitUntil("h-1 paused", timeout: .seconds(30)) { isPaused(pid) || p.exitStatus != nil }
            try #require(isPaused(pid), "\(p.lines) \(p.stderrText)")
            #expect(isPaused(grandchild), "the grandchild is paused with h-1 (state \(processState(grandchild).map(String.init) ?? "gone"))")
            let cgroup = try #require(governorCgroup(pid), "h-1 runs in a governor cgroup")
            #expect(governorCgroup(grandchild) == cgroup && cgroup.isFrozen)
            #expect(cgroup.path.hasSuffix("/" + ProcessTree.deploymentID(name: "ci", folder: rig.paths.directory) + "/h-1"))
            try await waitUntil("the pause line") { p.lines.contains { $0.hasPrefix("pause h-1 (pid \(pid)): cgroup \(cgroup.path) frozen") } }
            p.signal(SIGTERM)
            #expect(try await p.waitExit(timeout: .seconds(10)) == .exited(1))
            try await waitUntil("h-1 and its grandchild running again", timeout: .seconds(10)) {
                isRunningFree(pid) && isRunningFree(grandchild)
            }
            #expect(p.lines.contains { $0.hasPrefix("resume h-1 (pid \(pid)): cgroup \(cgroup.path) thawed") }, "\(p.lines)")
        }
    }
}
