import Foundation
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ

/// Regression catalogue, ZeroMQ layer: each test is named after what broke upstream (docs/TESTING.md).
@Suite(.tags(.regression, .integration, .zmq), .leakChecked)
struct regression_integration_zmq_Client {
    /// Upstream: after a reply went missing, the REQ socket stayed in its "sent" state and every later
    /// call failed with EFSM ("Operation cannot be accomplished in current state").
    @Test func efsmSocketErrorRecovered() async throws {
        let swallowed = SwallowFirst()
        let peer = try TestPeer { req, frames in swallowed.take() ? .swallow : TestPeer.echo(req, frames) }
        defer { peer.stop() }

        // The fault is real: a bare REQ socket that lost its reply refuses the next send with EFSM.
        swallowed.arm()
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let bare = try ctx.socket(.req)
        try bare.setReceiveTimeout(.milliseconds(100))
        try bare.connect(peer.endpoint)
        try bare.send(Request(method: "echo").encoded())
        #expect { try bare.receive() } throws: { ($0 as? ZMQError)?.code == .eagain }
        #expect { try bare.send(Request(method: "echo").encoded()) } throws: { ($0 as? ZMQError)?.code == .efsm }
        // Both checks above are local to the bare socket: its request can reach the peer only after them, and
        // then it took the swallow armed for the client below (two arms merged into one; seen as 0 timeouts).
        try await waitUntil("the bare request swallowed by the peer", timeout: .seconds(30)) { peer.swallowed == 1 }

        // The client recovers from both ways into that state and never shows EFSM to its caller.
        swallowed.arm()
        try await ZMQClient.with(endpoint: peer.endpoint, configuration: .init(timeout: .milliseconds(500), attempts: 5)) { c in
            #expect(try await c.call("echo", params: ["n": 1])["n"] == 1)
            try await c.sabotage(.leaveAwaitingReply)
            #expect(try await c.call("echo", params: ["n": 2])["n"] == 2)
            let s = await c.stats
            // The swallowed request costs a timeout (a very loaded machine may add one); the EFSM state
            // left by the unread send is recovered exactly once; nothing fails.
            #expect(s.timeouts >= 1 && s.efsmRecoveries == 1 && s.failures == 0, "\(s)")
            #expect(s.lastError?.contains("EFSM") != true)
        }
    }

    /// Upstream: each client made a context and dropped it without `term()`; file descriptors and libzmq
    /// I/O threads piled up. Measured in a child process of its own, so parallel tests cannot blur the count.
    @Test func noContextLeakAfter200CreateTerminateCycles() async throws {
        let report = await oneExitTestAtATime { await #expect(processExitsWith: .success) {
            func fail(_ why: String) -> Never {
                ExitTestReport.line("LEAK: \(why)")
                exit(1)
            }
            let peer = try TestPeer()
            let config = ClientConfiguration(timeout: .seconds(5))
            // Warm up once, so lazily made process-wide resources are not counted as leaks.
            _ = try SyncClient.with(endpoint: peer.endpoint, configuration: config) { try $0.ping() }
            let fdsBefore = openFileDescriptors().count
            let contextsBefore = Context.liveCount
            let threadsBefore = DedicatedThread.liveCount
            for i in 0..<200 {
                do {
                    if i % 2 == 0 {
                        _ = try SyncClient.with(endpoint: peer.endpoint, configuration: config) { try $0.ping() }
                    } else {
                        _ = try await ZMQClient.with(endpoint: peer.endpoint, configuration: config) { try await $0.ping() }
                    }
                } catch {
                    fail("cycle \(i) failed: \(error)")
                }
            }
            // libzmq closes the peer's side of finished connections on its I/O thread, a moment later:
            // wait for the count to settle (with a deadline) instead of reading it once.
            let settled = try? waitUntilSync("descriptors and client threads back to their count", timeout: .seconds(20)) {
                DedicatedThread.liveCount == threadsBefore && openFileDescriptors().count <= fdsBefore
            }
            if settled == nil {
                fail("descriptors \(fdsBefore) -> \(openFileDescriptors().count), client threads \(threadsBefore) -> \(DedicatedThread.liveCount)")
            }
            if Context.liveCount != contextsBefore { fail("contexts \(contextsBefore) -> \(Context.liveCount)") }
            peer.stop()
        } }
        #expect(!report.contains("LEAK"), "\(report)")
    }

    /// Upstream: using the client as a context manager (`with ZMQClient(...)`) closed the socket but never
    /// terminated the context, also when the body raised.
    @Test func scopedClientTerminatesItsContext() async {
        let report = await oneExitTestAtATime { await #expect(processExitsWith: .success) {
            struct Boom: Error {}
            let before = Context.liveCount
            _ = try? SyncClient.with(endpoint: "tcp://127.0.0.1:9") { _ -> Int in throw Boom() }
            _ = try? await ZMQClient.with(endpoint: "tcp://127.0.0.1:9") { _ -> Int in throw Boom() }
            _ = try SyncClient.with(endpoint: "tcp://127.0.0.1:9") { c in c.isTerminated }
            guard Context.liveCount == before else {
                ExitTestReport.line("LEAK: \(Context.liveCount - before) context(s) left alive by scoped use")
                exit(1)
            }
        } }
        #expect(!report.contains("LEAK"), "\(report)")
    }

    /// Upstream: after a timeout the socket was reused and the next call blocked forever.
    /// Times are taken on the calling thread itself, so a busy test pool cannot blur them.
    @Test func noHangAfterTimeout() async throws {
        let swallowed = SwallowFirst()
        swallowed.arm()
        let peer = try TestPeer { req, frames in swallowed.take() ? .swallow : TestPeer.echo(req, frames) }
        defer { peer.stop() }
        let endpoint = peer.endpoint
        let timeout = Duration.milliseconds(400)
        let (firstFailed, next, nextTook) = try await onThread("calls around a timeout", timeout: .seconds(20)) {
            try SyncClient.with(endpoint: endpoint, configuration: .init(timeout: timeout, attempts: 1)) { c in
                let failed = (try? c.call("echo")) == nil  // the swallowed one times out
                let clock = ContinuousClock()
                let t0 = clock.now
                let r = try c.call("echo", params: ["next": true])
                return (failed, r, clock.now - t0)
            }
        }
        #expect(firstFailed)
        #expect(next["next"] == true)
        #expect(nextTook < timeout, "the call after a timeout must return within its own deadline, took \(nextTook)")

        // And with the peer gone for good, every later call still ends within attempts x timeout.
        peer.stop()
        let took = try await onThread("calls to a dead peer", timeout: .seconds(20)) {
            try SyncClient.with(endpoint: endpoint, configuration: .init(timeout: timeout, attempts: 2)) { c in
                (0..<3).map { _ -> (Bool, Duration, Int) in
                    let clock = ContinuousClock()
                    let t0 = clock.now
                    let before = c.stats.timeouts
                    let threw = (try? c.call("echo")) == nil
                    return (threw, clock.now - t0, c.stats.timeouts - before)
                }
            }
        }
        // Each call gives up after its two attempts, each ended by its own timeout (the client's account); the
        // thread's 20 s deadline is what catches a hang. (A wall-clock bound of 2 x timeout + 400 ms read
        // 1.27 s once with one core busy: scheduling, not a hang.)
        for (threw, d, timeouts) in took {
            #expect(threw)
            #expect(timeouts == 2, "a call to a dead peer made \(timeouts) timed-out attempts in \(d)")
            #expect(d >= timeout * 2, "both attempts waited their timeout: \(d)")
        }
    }

    /// The relaxed strategy retried on the same socket however many timeouts came in a row: behind a peer
    /// slower than the timeout the duplicates piled up in the one pipe, and once the peer lagged every
    /// attempt of a call timed out (`noRequestGetsAnotherRequestsReply`, 50 of 50 under load). A second
    /// timeout in a row now reopens the socket.
    @Test func relaxedRetriesReopenTheSocketAfterTwoTimeoutsInARow() async throws {
        let peer = try TestPeer { _, _ in .swallow }
        defer { peer.stop() }
        let config = ClientConfiguration(timeout: .milliseconds(100), attempts: 4, strategy: .relaxedCorrelate)
        let endpoint = peer.endpoint
        let stats = try await onThread("a call that never gets its answer", timeout: .seconds(60)) {
            try SyncClient.with(endpoint: endpoint, configuration: config) { c in
                #expect(throws: ClientError.self) { try c.call("echo") }
                return c.stats
            }
        }
        #expect(stats.timeouts == 4, "\(stats)")
        // Timeouts 1 and 2 on the first socket, then a new one; timeouts 3 and 4 on it, then another.
        #expect(stats.recreations == 2, "\(stats)")
    }
}

final class SwallowFirst: @unchecked Sendable {
    private var armed = false
    private let lock = NSLock()
    func arm() { lock.lock(); armed = true; lock.unlock() }
    func take() -> Bool { lock.lock(); defer { lock.unlock() }; let a = armed; armed = false; return a }
}
