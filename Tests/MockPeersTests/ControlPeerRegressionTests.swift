import Foundation
import MockPeers
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let nobodyPython = "/usr/bin/python3"
private let setpriv = "/usr/bin/setpriv"
private let canRunAsNobody = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: setpriv)
    && FileManager.default.isExecutableFile(atPath: nobodyPython)

/// Issue 11, finding 1, for `szmock handler --control`: under `umask 000` its control socket was
/// world-writable and any user could set faults on it.
@Suite(.tags(.regression, .integration, .zmq), .leakChecked)
struct regression_integration_zmq_MockControlPeers {
    @Test(.enabled(if: canRunAsNobody, "needs root (to run a client as user nobody), \(setpriv) and \(nobodyPython) with python3-zmq"))
    func anotherUserIsRefusedByTheHandlerControlChannelUnderUmask000() async throws {
        let dir = try TemporaryFolder(prefix: "szp")
        let controlEndpoint = dir.ipcEndpoint("h.control")
        let p = try TestProcess("/bin/sh", ["-c", "umask 000; exec \"$0\" \"$@\"", builtExecutable("szmock"), "handler",
                                            "--id", "h-p", "--bind", "tcp://127.0.0.1:0", "--control", controlEndpoint])
        defer { p.stop() }
        _ = try await p.ready()
        var st = stat()
        #expect(lstat(dir.file("h.control"), &st) == 0 && st.st_mode & 0o7777 == 0o600, "mode \(String(st.st_mode & 0o7777, radix: 8))")

        // Let nobody in (folder and socket), as a careless admin might: the peer check still refuses.
        chmod(dir.url.path, 0o755)
        chmod(dir.file("h.control"), 0o666)
        let script = try dir.write("""
            import json, sys, zmq
            ctx = zmq.Context()
            s = ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVTIMEO, 5000)
            s.connect(sys.argv[1])
            s.send(json.dumps({"method": "fault.set", "params": {"drop_next": 5}}).encode())
            try:
                reply = json.loads(s.recv())
            except zmq.Again:
                reply = None
            s.close()
            ctx.term()
            print(json.dumps({"reply": reply}), flush=True)
            """, to: "nobody.py")
        chmod(script.path, 0o644)
        let client = try TestProcess(setpriv, ["--reuid=nobody", "--regid=nogroup", "--clear-groups", nobodyPython, script.path, controlEndpoint])
        defer { client.stop() }
        #expect(try await client.waitExit(timeout: .seconds(20)) == .exited(0), "\(client.stderrText)")
        try await waitUntil("the client's line") { client.outputClosed }
        let reply = try #require(client.events.first?["reply"]?.objectValue, "\(client.lines) \(client.stderrText)")
        #expect(reply["success"]?.boolValue == false, "\(reply)")
        #expect(reply["error"]?.stringValue?.contains("uid 65534") == true, "\(reply)")
        try await waitUntil("the refusal on the handler's stderr") { p.stderrText.contains("\"control_refused\"") }
        let line = try #require(p.stderrText.split(separator: "\n").first { $0.contains("\"control_refused\"") })
        let event = try #require(try JSON.parse(Array(line.utf8)).objectValue)
        #expect(event["uid"]?.intValue == 65534 && event["pid"]?.intValue == Int64(client.pid), "\(event)")
        // Nothing was set, and the owner (root here) is still answered.
        let status = try await control(controlEndpoint, "status")
        #expect(status.success && status["faults"]?.objectValue?.isEmpty == true, "\(status)")
    }
}
