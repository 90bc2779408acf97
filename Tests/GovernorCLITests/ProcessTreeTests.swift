import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// Whole process trees under the real `szgovernor` (issue 11, finding 8): a handler whose command starts a
/// grandchild in a session of its own (`setsid`), which the process group of the handler does not reach.
@Suite(.tags(.regression, .integration, .governor), .leakChecked)
struct regression_integration_governor_ProcessTrees {
    /// A deployment of handlers `a` and `b`; each command starts `setsid sh -c ...` (the grandchild writes
    /// its PID to `run/<name>.grandchild` and loops; `ignoreTerm`: it and the handler ignore SIGTERM), then
    /// execs the mock handler.
    static func treeDeployment(_ h: CLIHarness, _ name: String, ignoreTerm: Bool = false, stopTimeout: String = "1s") throws -> String {
        let trap = ignoreTerm ? "trap '' TERM; " : ""
        let handlerFlag = ignoreTerm ? ", \"--ignore-sigterm\"" : ""
        func handler(_ id: String) -> String {
            """
              - id: \(id)
                endpoint: "ipc://${RUN_DIR}/\(id).sock"
                command: ["/bin/sh", "-c", "setsid /bin/sh -c '\(trap)echo $$ > ${RUN_DIR}/\(id).grandchild; while :; do sleep 1; done' & exec \\"$0\\" \\"$@\\"",
                          "${SZMOCK}", "handler", "--id", "\(id)", "--bind", "${ENDPOINT}"\(handlerFlag)]
                readiness: ping
            """
        }
        return try h.writeDeployment(name, """
            deployment: \(name)
            defaults: {stop_timeout: \(stopTimeout), restart: {policy: never}}
            handlers:
            \(handler("a"))
            \(handler("b"))
            """)
    }

    /// The grandchild's PID, once it has written it.
    static func grandchild(_ h: CLIHarness, _ d: String, _ name: String) async throws -> pid_t {
        let file = h.deploymentDir(d) + "/run/\(name).grandchild"
        var pid: pid_t?
        try await waitUntil("\(name)'s grandchild to write its PID") {
            pid = (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            return pid.map(LiveProcess.isAlive) ?? false
        }
        let found = try #require(pid)
        #expect(LiveProcess.processGroup(of: found) == found, "the grandchild leads a session of its own")
        return found
    }

    /// `remove` and `down` left a `setsid` grandchild running: the handler's process group does not hold it.
    @Test func setsidGrandchildDiesWithRemoveAndDown() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up("tree", file: try Self.treeDeployment(h, "tree"))
        let ga = try await Self.grandchild(h, "tree", "a")
        let gb = try await Self.grandchild(h, "tree", "b")
        defer { for g in [ga, gb] where LiveProcess.isAlive(g) { kill(g, SIGKILL) } }

        let removed = try await h.run(["remove", "a", "--deployment", "tree"])
        #expect(removed.ok, "\(removed)")
        try await waitUntil("a's setsid grandchild gone after remove") { !LiveProcess.isAlive(ga) }
        #expect(LiveProcess.isAlive(gb), "b's tree untouched")

        let tree = try await h.status("tree")["process_tree"]
        #expect(tree?["mode"] == "cgroup", "\(String(describing: tree))")
        let group = try #require(tree?["cgroup"]?.stringValue)
        #expect(group.hasSuffix("/szgovernor/" + ProcessTree.deploymentID(name: "tree", folder: h.deploymentDir("tree"))))
        #expect(!FileManager.default.fileExists(atPath: group + "/a"), "a's cgroup removed with a")
        #expect(FileManager.default.fileExists(atPath: group + "/b"))
        let table = try await h.run(["status", "--deployment", "tree"])
        #expect(table.stdout.contains("process trees: cgroup \(group)"), "\(table)")

        let down = try await h.run(["down", "--deployment", "tree"])
        #expect(down.ok, "\(down)")
        try await waitUntil("b's setsid grandchild gone after down") { !LiveProcess.isAlive(gb) }
        try await waitUntil("the deployment's cgroup removed") { !FileManager.default.fileExists(atPath: group) }
        try await waitUntil("everything to be gone") { h.tracker.alive.isEmpty }
    }

    /// A grandchild that ignores SIGTERM, under a handler that ignores it too, is killed by `cgroup.kill`
    /// at the stop timeout.
    @Test func grandchildIgnoringSigtermIsKilledAtTheStopTimeout() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up("deaf", file: try Self.treeDeployment(h, "deaf", ignoreTerm: true, stopTimeout: "500ms"))
        let ga = try await Self.grandchild(h, "deaf", "a")
        defer { if LiveProcess.isAlive(ga) { kill(ga, SIGKILL) } }
        let clock = ContinuousClock()
        let t0 = clock.now
        let removed = try await h.run(["remove", "a", "--deployment", "deaf"])
        let took = clock.now - t0
        #expect(removed.ok, "\(removed)")
        #expect(!LiveProcess.isAlive(ga), "gone when remove answers: the stop waits for the empty cgroup")
        #expect(took >= .milliseconds(500), "SIGTERM was ignored: the kill came at the stop timeout (\(took))")
        #expect(h.events("deaf").contains { $0["process"] == "a" && $0["event"] == "escalated" })
        let down = try await h.run(["down", "--deployment", "deaf"])
        #expect(down.ok, "\(down)")
        try await waitUntil("everything to be gone") { h.tracker.alive.isEmpty }
    }

    /// A governor SIGKILLed with a tree running: `down` without a governor kills what is left in the cgroups
    /// (the setsid grandchild included) and removes them.
    @Test func downWithoutAGovernorKillsTheLeftoversOfItsCgroups() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        try await h.up("orph", file: try Self.treeDeployment(h, "orph"))
        let ga = try await Self.grandchild(h, "orph", "a")
        defer { if LiveProcess.isAlive(ga) { kill(ga, SIGKILL) } }
        let group = try #require(try await h.status("orph")["process_tree"]?["cgroup"]?.stringValue)
        let governor = try #require(h.pids("orph")["governor"])
        kill(governor, SIGKILL)
        try await waitUntil("the governor gone") { !LiveProcess.isAlive(governor) }
        let offline = try await h.run(["status", "--deployment", "orph"])
        #expect(offline.stdout.contains("cgroup \(group) is left by an earlier governor"), "\(offline)")
        let down = try await h.run(["down", "--deployment", "orph"])
        #expect(down.ok, "\(down)")
        #expect(!LiveProcess.isAlive(ga), "the grandchild of an orphan is killed by down: \(down)")
        #expect(!FileManager.default.fileExists(atPath: group), "\(group) removed")
        try await waitUntil("everything to be gone") { h.tracker.alive.isEmpty }
    }

    /// `SZGOVERNOR_CGROUP=off`: the process-group mode, said by `up` (a warning), the event log and `status`;
    /// no cgroup is made; the handlers still start and stop.
    @Test func cgroupOffFallsBackToTheProcessGroupAndWarns() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let up = try await h.up("plain", file: try Self.treeDeployment(h, "plain"), environment: [ProcessTree.switchVariable: "off"])
        let ga = try await Self.grandchild(h, "plain", "a")
        let gb = try await Self.grandchild(h, "plain", "b")
        defer { for g in [ga, gb] where LiveProcess.isAlive(g) { kill(g, SIGKILL) } }
        #expect(up.stderr.contains("warning: no cgroup for the process trees (SZGOVERNOR_CGROUP=off)"), "\(up)")
        let tree = try await h.status("plain")["process_tree"]
        #expect(tree?["mode"] == "process-group" && tree?["reason"] == "SZGOVERNOR_CGROUP=off", "\(String(describing: tree))")
        let table = try await h.run(["status", "--deployment", "plain"])
        #expect(table.stdout.contains("process trees: process group only"), "\(table)")
        #expect(h.events("plain").contains { $0["event"] == "warning" && ($0["detail"]?.stringValue ?? "").contains("process group only") })
        let id = ProcessTree.deploymentID(name: "plain", folder: h.deploymentDir("plain"))
        #expect(!ProcessTree.deploymentGroups().contains { $0.group.hasSuffix("/" + id) }, "no cgroup made")
        #expect(ProcessTree.cgroup(of: ga)?.contains("/szgovernor/") != true)
        let down = try await h.run(["down", "--deployment", "plain"])
        #expect(down.ok, "\(down)")
        try await waitUntil("the handlers gone") { h.tracker.alive.isEmpty }
        // What the mode promises and no more: the setsid grandchildren escaped the process groups.
        #expect(LiveProcess.isAlive(ga) && LiveProcess.isAlive(gb))
    }
}

/// The parts of ProcessTree that need no process.
@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_ProcessTreeNames {
    @Test func cgroup2MountIsReadFromMountinfoWithItsEscapes() {
        let info = """
            31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
            41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw,relatime shared:9 - cgroup2 cgroup2 rw
            """
        #expect(ProcessTree.cgroup2Mount(mountinfo: info) == "/sys/fs/cgroup/uni fied")
        #expect(ProcessTree.cgroup2Mount(mountinfo: "37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer") == nil)
    }

    @Test func deploymentIDIsUniquePerFolder() {
        let a = ProcessTree.deploymentID(name: "ci", folder: "/tmp/x1/ci")
        let b = ProcessTree.deploymentID(name: "ci", folder: "/tmp/x2/ci")
        #expect(a != b && a.hasPrefix("ci-") && b.hasPrefix("ci-"))
        #expect(a == ProcessTree.deploymentID(name: "ci", folder: "/tmp/x1/./ci"), "the same folder, spelled otherwise")
        #expect(a.count == "ci-".count + 12)
    }

    /// No cgroup2, a group that cannot be made (read-only, not root), a folder that is no cgroup: each is the
    /// process-group mode with its reason, never an error, and nothing is left made.
    @Test func whateverStandsInTheWayIsTheReasonOfTheProcessGroupMode() async throws {
        #expect(ProcessTree.prepare(name: "ci", folder: "/tmp/none/ci", environment: [:], mount: .some(nil))
                == .processGroup(reason: "no cgroup2 hierarchy is mounted"))
        guard case .processGroup(let reason) = ProcessTree.prepare(name: "ci", folder: "/tmp/none/ci", environment: [:],
                                                                   mount: "/proc/self") else {
            Issue.record("a group was made in /proc/self"); return
        }
        #expect(reason.hasPrefix("cannot create cgroup /proc/self/szgovernor:"), "\(reason)")
        try await withTemporaryDirectory { dir in
            let fake = dir.file("notacgroup")
            try FileManager.default.createDirectory(atPath: fake, withIntermediateDirectories: true)
            guard case .processGroup(let why) = ProcessTree.prepare(name: "ci", folder: "/tmp/none/ci", environment: [:], mount: fake) else {
                Issue.record("a plain folder taken for a cgroup"); return
            }
            #expect(why.contains("cgroup.procs"), "\(why)")
            let id = ProcessTree.deploymentID(name: "ci", folder: "/tmp/none/ci")
            #expect(!FileManager.default.fileExists(atPath: fake + "/szgovernor/" + id), "the group it could not use is removed")
        }
    }

    @Test func switchOffIsTheProcessGroupMode() {
        let mode = ProcessTree.prepare(name: "ci", folder: "/tmp/none/ci", environment: [ProcessTree.switchVariable: "off"])
        #expect(mode == .processGroup(reason: "SZGOVERNOR_CGROUP=off"))
        #expect(mode.json == ["mode": "process-group", "reason": "SZGOVERNOR_CGROUP=off"])
    }
}
