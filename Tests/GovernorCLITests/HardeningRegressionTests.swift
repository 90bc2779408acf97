import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

private let python = "/usr/bin/python3"
private let setpriv = "/usr/bin/setpriv"
private let canRunAsNobody = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: setpriv)
    && FileManager.default.isExecutableFile(atPath: python)

/// Issue 11, findings 1, 2 and 6, against the real `szgovernor`: another user gets nothing (modes whatever
/// the umask, the control endpoint's peer check), `down` signals only the lock's real holder, and the
/// control endpoint has a size limit.
@Suite(.tags(.regression, .integration, .governor), .leakChecked)
struct regression_integration_governor_Hardening {
    static let serverOnly = """
        deployment: NAME
        server:
          command: ["${SZMOCK}", "server", "--bind", "${ENDPOINT}"]
          endpoint: "ipc://${RUN_DIR}/server.sock"
          readiness: ping
        """

    static func mode(_ path: String) -> (type: mode_t, perm: mode_t)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (st.st_mode & S_IFMT, st.st_mode & 0o7777)
    }

    /// Under `umask 000` the folders and the control socket were world-writable and user `nobody` ran `add`
    /// (and a command as root) through the control endpoint; any user could also share the 0644 lock.
    @Test(.enabled(if: canRunAsNobody, "needs root (to run a client as user nobody), \(setpriv) and \(python) with python3-zmq"))
    func anotherUserIsRefusedByTheControlEndpointUnderUmask000() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("perm", Self.serverOnly.replacingOccurrences(of: "NAME", with: "perm"))
        let up = try TestProcess("/bin/sh", ["-c", "umask 000; exec \"$0\" \"$@\"", h.szgovernor, "up", "--detach",
                                             "--deployment", "perm", "--file", file, "--root", h.root])
        defer { up.stop() }
        #expect(try await up.waitExit(timeout: .seconds(90)) == .exited(0), "\(up.stderrText) \(up.lines)")
        h.track()
        let d = h.deploymentDir("perm")
        for folder in [d, d + "/pids", d + "/logs", d + "/run"] {
            #expect(Self.mode(folder)?.perm == 0o700, "\(folder): \(String(describing: Self.mode(folder)))")
        }
        #expect(Self.mode(d + "/run/governor.control")?.type == S_IFSOCK)
        #expect(Self.mode(d + "/run/governor.control")?.perm == 0o600, "\(String(describing: Self.mode(d + "/run/governor.control")))")
        #expect(Self.mode(d + "/governor.lock")?.perm == 0o600, "\(String(describing: Self.mode(d + "/governor.lock")))")
        for f in ["pids/governor.pid", "pids/server.pid", "logs/server.log", "logs/governor.log", "events.jsonl"] {
            let m = Self.mode(d + "/" + f)
            #expect(m != nil && m!.perm & 0o022 == 0, "\(f) is writable by others: \(String(describing: m))")
        }

        // Let nobody reach the folder and connect (what a careless admin might do): the lock file and the
        // peer check must still keep it out.
        for folder in [h.dir.url.path, h.root, d, d + "/run"] { chmod(folder, 0o755) }
        chmod(d + "/run/governor.control", 0o666)
        let script = try h.dir.write("""
            import fcntl, json, os, sys, zmq
            lock, endpoint = sys.argv[1], sys.argv[2]
            out = {"uid": os.getuid()}
            try:
                fd = os.open(lock, os.O_RDONLY)
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                out["lock"] = "held"
            except OSError as e:
                out["lock"] = "denied: " + str(e.strerror)
            ctx = zmq.Context()
            s = ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVTIMEO, 5000)
            s.connect(endpoint)
            s.send(json.dumps({"method": "add", "params": {"id": "intruder", "command": ["/usr/bin/id"]}}).encode())
            try:
                out["reply"] = json.loads(s.recv())
            except zmq.Again:
                out["reply"] = None
            s.close()
            ctx.term()
            print(json.dumps(out), flush=True)
            """, to: "nobody.py")
        chmod(script.path, 0o644)
        let client = try TestProcess(setpriv, ["--reuid=nobody", "--regid=nogroup", "--clear-groups", python, script.path,
                                              d + "/governor.lock", "ipc://" + d + "/run/governor.control"])
        defer { client.stop() }
        #expect(try await client.waitExit(timeout: .seconds(20)) == .exited(0), "\(client.stderrText)")
        try await waitUntil("the client's line") { client.outputClosed }
        let out = try #require(client.events.first, "\(client.lines) \(client.stderrText)")
        #expect(out["uid"]?.intValue == 65534)
        #expect(out["lock"]?.stringValue == "denied: Permission denied", "nobody could open (and share) the lock: \(out)")
        let reply = try #require(out["reply"]?.objectValue, "no reply: \(out)")
        #expect(reply["success"]?.boolValue == false, "\(reply)")
        #expect(reply["error"]?.stringValue?.contains("uid 65534") == true, "\(reply)")
        let refused = h.events("perm").filter { $0["event"]?.stringValue == "control_refused" }
        #expect(refused.count == 1, "\(h.events("perm"))")
        #expect(refused.first?["pid"]?.intValue == Int64(client.pid), "the refusal names the client: \(refused)")
        #expect(try await h.processes("perm")["intruder"] == nil, "nothing was added")
        #expect(try await h.run(["down", "--deployment", "perm"]).ok)
    }

    /// `down`, finding the lock held and nothing answering, sent SIGTERM then SIGKILL to whatever
    /// pids/governor.pid named after the identity check only: a forged file killed an unrelated `sleep`.
    @Test func downNeverSignalsAnUnrelatedProcessNamedByAForgedGovernorPidFile() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let d = h.deploymentDir("forged")
        try FileManager.default.createDirectory(atPath: d + "/pids", withIntermediateDirectories: true)
        let holder = try TestProcess("/usr/bin/flock", ["-x", d + "/governor.lock", "/bin/sleep", "300"])
        defer { holder.stop() }
        try await waitUntil("flock to hold the deployment lock") { DeploymentLock.isHeld(at: d + "/governor.lock") }
        let victim = try TestProcess("/bin/sleep", ["300"])
        defer { victim.stop() }
        let identity = try #require(ProcessIdentity.of(pid: victim.pid))
        try PidFile.write(PidRecord(identity: identity, name: "governor"), to: d + "/pids/governor.pid")
        let down = try await h.run(["down", "--deployment", "forged"], timeout: .seconds(60))
        #expect(!down.ok, "\(down)")
        #expect(down.stderr.contains("does not hold the deployment lock"), "\(down)")
        #expect(down.stderr.contains("nothing was signalled"), "\(down)")
        #expect(victim.exitStatus == nil, "the unrelated sleep was signalled: \(String(describing: victim.exitStatus))")
        #expect(holder.exitStatus == nil)
    }

    /// The same with a forged file naming PID 1 (its real start time and executable): never signalled.
    /// Not through CLIHarness, whose tracker adopts every PID a PID file names (and kills them at cleanup).
    @Test func downNeverSignalsPid1NamedByAForgedGovernorPidFile() async throws {
        let dir = TemporaryDirectory(prefix: "szg")
        let d = dir.file("d/init")
        try FileManager.default.createDirectory(atPath: d + "/pids", withIntermediateDirectories: true)
        let holder = try TestProcess("/usr/bin/flock", ["-x", d + "/governor.lock", "/bin/sleep", "300"])
        defer { holder.stop() }
        try await waitUntil("flock to hold the deployment lock") { DeploymentLock.isHeld(at: d + "/governor.lock") }
        let initIdentity = try #require(ProcessIdentity.of(pid: 1))
        try PidFile.write(PidRecord(identity: initIdentity, name: "governor"), to: d + "/pids/governor.pid")
        defer { PidFile.remove(d + "/pids/governor.pid") }
        let down = try TestProcess(builtExecutable("szgovernor"), ["down", "--deployment", "init", "--root", dir.file("d")])
        defer { down.stop() }
        #expect(try await down.waitExit(timeout: .seconds(60)) == .exited(1))
        try await waitUntil("the output of down") { down.outputClosed }
        #expect(down.stderrText.contains("PID 1"), "\(down.stderrText)")
        #expect(down.stderrText.contains("nothing was signalled"), "\(down.stderrText)")
        #expect(ProcessIdentity.of(pid: 1).map { $0.matches(initIdentity) } == true)
    }

    /// No size limit on the control endpoint: a 256 MiB request peaked at 600 MB in the governor.
    @Test func oversizedControlRequestIsDroppedAndTheGovernorStillAnswersPing() async throws {
        let h = CLIHarness()
        defer { h.cleanup() }
        let file = try h.writeDeployment("big", Self.serverOnly.replacingOccurrences(of: "NAME", with: "big"))
        try await h.up("big", file: file)
        let endpoint = "ipc://" + h.deploymentDir("big") + "/run/governor.control"
        let blob = JSONValue.string(String(repeating: "x", count: 2 << 20))
        let oversized = try await onThread("an oversized ping", timeout: .seconds(20)) {
            ControlClient.call(endpoint, "ping", params: ["blob": blob], timeout: .seconds(2))
        }
        #expect(oversized == nil, "a 2 MiB request was answered: \(String(describing: oversized))")
        let ping = try await onThread("a ping after", timeout: .seconds(20)) { ControlClient.call(endpoint, "ping") }
        #expect(ping?.success == true, "\(String(describing: ping))")
        #expect(try await h.run(["down", "--deployment", "big"]).ok)
    }
}
