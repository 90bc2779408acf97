import Foundation
import ScheduleZeroTesting
import ScheduleZeroWire
import Testing
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif

/// The greeter (Service/greeter.py) under a real szgovernor, through the ScheduleZeroTesting kit: each test
/// gets the deployment in a temporary folder of its own, ready, and stopped and checked for leftovers after.
@Suite(.tags(.integration, .zmq, .governor), .leakChecked, .serialized,
       .enabled(if: pyzmqAvailable, "needs /usr/bin/python3 with python3-zmq"))
struct integration_zmq_governor_Greeter {
    /// deployments/pyservice.yaml of this package.
    static let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deployments/pyservice.yaml").path

    @Test func greetsThroughItsPublicEndpoint() async throws {
        try await withDeployment(file: Self.file, name: "pyservice") { d in
            let state = try #require(try await d.processes()["greeter-1"])
            #expect(state.status == "running")
            let endpoint = try #require(state.endpoint)
            let r = try await d.call(endpoint, "greet", ["name": "kit"])
            #expect(r.reply.success, "\(r.reply)")
            #expect(r.reply.fields["greeting"]?.stringValue == "hello, kit")
            #expect(r.reply.fields["pid"]?.intValue == state.pid.map { Int64($0) })
            let unknown = try await d.call(endpoint, "nope")
            #expect(!unknown.reply.success && unknown.reply.fields["error"]?.stringValue == "Unknown method: nope")
        }
    }

    @Test func killedGreeterIsRestartedAndNothingIsLeft() async throws {
        var oldPid: pid_t = 0
        var newPid: pid_t = 0
        var folder = ""
        try await withDeployment(file: Self.file, name: "pyservice") { d in
            folder = d.folder
            oldPid = try #require(try await d.pid("greeter-1"))
            try await d.kill("greeter-1")
            newPid = try await d.waitUntilRestarted("greeter-1", from: oldPid)
            let endpoint = try #require(try await d.endpoint("greeter-1"))
            let r = try await d.call(endpoint, "greet", ["name": "again"])
            #expect(r.reply.fields["pid"]?.intValue == Int64(newPid), "the restarted greeter answers: \(r.reply)")
            #expect(try await d.processes()["greeter-1"]?.restartCount == 1)
        }
        #expect(newPid != oldPid)
        // Stopped by the fixture: neither greeter is alive and the temporary folder is gone.
        for pid in [oldPid, newPid] { #expect(!LiveProcess.isAlive(pid), "pid \(pid) is still alive") }
        #expect(!FileManager.default.fileExists(atPath: folder), "\(folder) left behind")
    }

    @Test func droppedReplyIsRetriedByTheClient() async throws {
        try await withDeployment(file: Self.file, name: "pyservice") { d in
            let endpoint = try #require(try await d.endpoint("greeter-1"))
            let first = try await d.call(endpoint, "greet", ["name": "one"])
            let n = try #require(first.reply.fields["n"]?.intValue)
            // The interposer in front of greeter-1 loses its next reply: the greeter runs the request, the
            // client hears nothing within its timeout, opens a new socket and asks again.
            try await d.dropReplies("greeter-1", count: 1)
            let r = try await d.call(endpoint, "greet", ["name": "two"],
                                     configuration: ClientConfiguration(timeout: .milliseconds(700), attempts: 3))
            #expect(r.reply.success, "\(r.reply)")
            #expect(r.stats.retries == 1, "\(r.stats)")
            #expect(r.reply.fields["n"]?.intValue == n + 2, "the greeter ran the dropped request too: \(r.reply)")
            // The link saw it: the interposer's journal, summed up by szchaos links.
            let links = try await d.links(["greeter-1"])
            let link = try #require(links["links"]?.arrayValue?.first?.objectValue, "\(links)")
            #expect((link["requests"]?.intValue ?? 0) >= 3, "\(link)")
        }
    }

    struct Boom: Error {}

    @Test func aThrowingBodyStillStopsEverything() async throws {
        var pid: pid_t = 0
        var folder = ""
        await #expect(throws: Boom.self) {
            try await withDeployment(file: Self.file, name: "pyservice") { d in
                folder = d.folder
                pid = try #require(try await d.pid("greeter-1"))
                throw Boom()
            }
        }
        #expect(pid > 0)
        #expect(!LiveProcess.isAlive(pid), "greeter pid \(pid) is still alive")
        #expect(!FileManager.default.fileExists(atPath: folder), "\(folder) left behind")
    }
}
