import Foundation
import ScheduleZeroTesting
import ScheduleZeroWire
import Testing
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif

/// The test kit's `withDeployment` on the ci fixture (szmock server and h-1..h-3, control channels): every
/// fault helper reaches its handler through the real szchaos, the client helper sees it, and the fixture
/// stops everything (Examples/pyservice does the same from outside, on an interposed Python handler).
@Suite(.tags(.integration, .zmq, .governor), .leakChecked, .serialized)
struct integration_zmq_governor_DeploymentFixture {
    static let quick = ClientConfiguration(timeout: .milliseconds(500), attempts: 3)
    static let once = ClientConfiguration(timeout: .seconds(3), attempts: 1)

    @Test func messageFaultHelpersReachTheHandler() async throws {
        try await withDeployment(file: CLIHarness.fixture("ci"), name: "ci") { d in
            let ep = try #require(try await d.endpoint("h-1"))
            try await d.dropReplies("h-1", count: 1)
            let dropped = try await d.call(ep, "ping", configuration: Self.quick)
            #expect(dropped.reply.success && dropped.stats.retries == 1, "\(dropped.stats)")

            try await d.forceEFSM("h-1")
            let swallowed = try await d.call(ep, "ping", configuration: Self.quick)
            #expect(swallowed.reply.success && swallowed.stats.timeouts == 1 && swallowed.stats.recreations >= 1, "\(swallowed.stats)")

            try await d.delayReplies("h-1", by: .milliseconds(300))
            let (delayed, took) = try await measure { try await d.call(ep, "ping", configuration: Self.once) }
            #expect(delayed.reply.success && took >= .milliseconds(300), "took \(took)")

            try await d.garbage("h-1", kind: "wrong_shape")
            await #expect(throws: ClientError.self) { try await d.call(ep, "ping", configuration: Self.once) }

            try await d.clearFaults("h-1")
            let (clean, _) = try await measure { try await d.call(ep, "ping", configuration: Self.once) }
            #expect(clean.reply.fields["message"] == "pong" && clean.stats.retries == 0)
        }
    }

    @Test func killAndPauseHelpers() async throws {
        var pids: [pid_t] = []
        try await withDeployment(file: CLIHarness.fixture("ci"), name: "ci") { d in
            let old = try #require(try await d.pid("h-2"))
            try await d.kill("h-2")
            let new = try await d.waitUntilRestarted("h-2", from: old)
            #expect(new != old)
            pids = Array(d.governor.pids("ci").values)

            let ep = try #require(try await d.endpoint("h-3"))
            let pausing = Task { try await d.pause("h-3", for: .seconds(2)) }
            try await waitUntil("h-3 stops answering while paused", timeout: .seconds(10)) {
                (try? await d.call(ep, "ping", configuration: ClientConfiguration(timeout: .milliseconds(200), attempts: 1))) == nil
            }
            let paused = try await pausing.value
            #expect(paused.ok)
            let after = try await d.call(ep, "ping", configuration: Self.once)
            #expect(after.reply.success, "h-3 answers once thawed")
            try await d.waitUntilAllRunning()
        }
        #expect(pids.count >= 4, "\(pids)")
        for pid in pids { #expect(!LiveProcess.isAlive(pid), "pid \(pid) of the deployment is still alive (zombies count as gone)") }
    }
}
