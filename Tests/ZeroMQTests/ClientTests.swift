import Foundation
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ

/// For tests about timeouts: short, so they run quickly.
private let fast = ClientConfiguration(timeout: .milliseconds(150), attempts: 3)
/// For tests where no timeout is expected: long enough that a loaded machine cannot trip one.
private let steady = ClientConfiguration(timeout: .seconds(5), attempts: 3)

@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_Client {
    @Test func basicCallsAndPing() async throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        try await ZMQClient.with(endpoint: peer.endpoint, configuration: steady) { c in
            let pong = try await c.ping()
            #expect(pong.success && pong["message"] == "pong")
            let r = try await c.call("echo", params: ["x": 1, "s": "é"])
            #expect(r.fields == ["x": 1, "s": "é", "success": true])
            let stats = await c.stats
            #expect(stats.calls == 2 && stats.replies == 2 && stats.timeouts == 0 && stats.recreations == 0)
        }
    }

    @Test func errorRepliesAreRepliesNotThrows() async throws {
        let peer = try TestPeer { req, _ in .reply(.failure(Wire.unknownMethod(req?.method ?? "?"))) }
        defer { peer.stop() }
        try await ZMQClient.with(endpoint: peer.endpoint, configuration: steady) { c in
            let r = try await c.call("nope")
            #expect(!r.success && r.error == "Unknown method: nope")
            #expect(await c.stats.errorReplies == 1)
        }
    }

    @Test func silentPeerGivesTypedErrorAfterAllAttempts() async throws {
        let port = freeTCPPort()  // nobody listens
        // Blocking calls run on a thread of their own, never on the cooperative pool; results come back.
        let (error, stats) = try await onThread("three attempts to a silent peer", timeout: .seconds(30)) {
            try SyncClient.with(endpoint: "tcp://127.0.0.1:\(port)", configuration: fast) { c -> (ClientError?, ClientStats) in
                do { _ = try c.call("heartbeat"); return (nil, c.stats) } catch { return (error as? ClientError, c.stats) }
            }
        }
        guard case let .noReply(ep, m, attempts, elapsed, _)? = error else {
            Issue.record("expected noReply, got \(String(describing: error))")
            return
        }
        #expect(ep.hasSuffix(":\(port)") && m == "heartbeat" && attempts == 3 && elapsed >= .milliseconds(440))
        #expect(stats.timeouts == 3 && stats.retries == 2 && stats.recreations == 3)
        #expect(stats.lastError?.contains("no reply after 3 attempts") == true)
    }

    @Test func peerDownThenBackIsReachedAgain() async throws {
        let port = freeTCPPort()
        var peer: TestPeer? = try TestPeer(bind: "tcp://127.0.0.1:\(port)")
        let client = try SyncClient(endpoint: "tcp://127.0.0.1:\(port)", configuration: .init(timeout: .milliseconds(500), attempts: 4))
        defer { client.terminate() }
        let box = UncheckedBox(client)
        #expect(try await onThread("ping") { try box.value.ping().success })
        peer?.stop()
        peer = nil
        let failedWhileDown = try await onThread("a call while the peer is down", timeout: .seconds(30)) {
            (try? box.value.call("echo")) == nil
        }
        #expect(failedWhileDown)
        let back = try TestPeer(bind: "tcp://127.0.0.1:\(port)")
        defer { back.stop() }
        #expect(try await onThread("a call once it is back", timeout: .seconds(30)) { try box.value.call("echo", params: ["n": 7])["n"] } == 7)
    }

    @Test func swallowedRequestLeavesNoEFSMForTheCaller() throws {
        let swallowNext = Locked(true)
        let peer = try TestPeer { req, frames in
            if swallowNext.withLock({ v in defer { v = false }; return v }) { return .swallow }
            return TestPeer.echo(req, frames)
        }
        defer { peer.stop() }
        let client = try SyncClient(endpoint: peer.endpoint, configuration: .init(timeout: .milliseconds(500), attempts: 5))
        defer { client.terminate() }
        let r = try client.call("echo", params: ["seq": 1])
        #expect(r["seq"] == 1)
        #expect(peer.swallowed == 1)
        // One timeout for the swallowed request (a very loaded machine may add one): each timeout costs
        // one new socket and one retry, and nothing fails.
        let s = client.stats
        #expect(s.timeouts >= 1 && s.recreations == s.timeouts && s.retries == s.timeouts && s.failures == 0)
    }

    @Test func efsmStateIsRecoveredOnTheNextCall() throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        let client = try SyncClient(endpoint: peer.endpoint, configuration: steady)
        defer { client.terminate() }
        try client.sabotage(.leaveAwaitingReply)
        let r = try client.call("echo", params: ["after": "efsm"])
        #expect(r["after"] == "efsm")
        #expect(client.stats.efsmRecoveries == 1)
        #expect(client.stats.failures == 0)
    }

    @Test func socketClosedOrContextTerminatedUnderneathIsRecreated() throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        let client = try SyncClient(endpoint: peer.endpoint, configuration: steady)
        defer { client.terminate() }
        try client.sabotage(.closeSocketUnderneath)
        #expect(try client.ping().success)
        try client.sabotage(.terminateContextUnderneath)
        #expect(try client.ping().success)
        #expect(client.stats.recreations >= 2)
        client.close()
        #expect(try client.ping().success)  // upstream fails here: calling after close
    }

    @Test func terminatedClientRefusesCalls() throws {
        let client = try SyncClient(endpoint: "tcp://127.0.0.1:1")
        client.terminate()
        client.terminate()
        #expect(throws: ClientError.terminated(endpoint: "tcp://127.0.0.1:1")) { try client.ping() }
    }

    @Test func badEndpointIsNotRetried() throws {
        let client = try SyncClient(endpoint: "tcp://", configuration: fast)
        defer { client.terminate() }
        #expect { try client.ping() } throws: {
            if case .badEndpoint? = $0 as? ClientError { return true }
            return false
        }
        #expect(client.stats.retries == 0)
    }

    @Test(arguments: RecoveryStrategy.allCases)
    func noRequestGetsAnotherRequestsReply(strategy: RecoveryStrategy) async throws {
        // Delay every third reply past the timeout and drop every fifth: stale replies must never be
        // taken for the reply of a later request.
        let counter = Locked(0)
        let peer = try TestPeer { req, frames in
            let n = counter.withLock { n in n += 1; return n }
            if n % 5 == 0 { return .swallow }
            if n % 3 == 0, let req { return .delayed(.milliseconds(120), .wrapping(.object(req.params))) }
            return TestPeer.echo(req, frames)
        }
        defer { peer.stop() }
        // Many attempts: this test is about which reply a request gets, not about how fast; on a loaded
        // machine the delayed replies can pile up behind each other for a while.
        let config = ClientConfiguration(timeout: .milliseconds(80), attempts: 50, strategy: strategy)
        let endpoint = peer.endpoint
        let (answers, timeouts) = try await onThread("40 calls through delays and drops", timeout: .seconds(120)) {
            try SyncClient.with(endpoint: endpoint, configuration: config) { c in
                (try (1...40).map { seq in try c.call("echo", params: ["seq": .int(Int64(seq))])["seq"] }, c.stats.timeouts)
            }
        }
        for (seq, got) in zip(1...40, answers) {
            #expect(got == .int(Int64(seq)), "request \(seq) got the reply of \(String(describing: got))")
        }
        #expect(timeouts > 0)
    }

    @Test func manyTasksCallingAtOnceEachGetTheirOwnReply() async throws {
        let peer = try TestPeer()
        defer { peer.stop() }
        try await ZMQClient.with(endpoint: peer.endpoint, configuration: steady) { c in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<16 {
                    group.addTask {
                        for i in 0..<25 {
                            let id = "\(task)-\(i)"
                            let r = try await c.call("echo", params: ["id": .string(id)])
                            #expect(r["id"] == .string(id))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let s = await c.stats
            #expect(s.calls == 400 && s.replies == 400 && s.failures == 0)
        }
    }

    @Test func multiFrameReplyIsInvalid() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let router = try ctx.socket(.router)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        let client = try SyncClient(endpoint: endpoint, configuration: .init(timeout: .seconds(5), attempts: 1))
        defer { client.terminate() }
        let box = UncheckedBox(router)
        let answer = Thread {
            guard let frames = try? box.value.receiveMultipart() else { return }
            // [identity, empty delimiter, request] -> answer with two body frames
            try? box.value.send(multipart: [frames[0], [], Array("{}".utf8), Array("{}".utf8)])
        }
        try router.setReceiveTimeout(.seconds(5))
        answer.start()
        #expect { try client.call("ping") } throws: {
            if case .invalidReply? = $0 as? ClientError { return true }
            return false
        }
    }
}

