import Foundation
import Synchronization
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZeroMQ

@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_Binding {
    /// `freeTCPPort` hands out distinct ports below the kernel's ephemeral range, where no outgoing
    /// connection can take them, and a REP socket binds each.
    @Test func freeTCPPortsAreDistinctBindableAndBelowTheEphemeralRange() throws {
        let text = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        let ephemeralLow = try #require(text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) })
        let ports = (0..<200).map { _ in freeTCPPort() }
        #expect(Set(ports).count == ports.count, "a port handed out twice")
        #expect(ports.allSatisfy { $0 >= 1024 && $0 < ephemeralLow }, "\(ports.filter { $0 >= ephemeralLow })")
        let ctx = try Context()
        defer { try? ctx.terminate(timeout: .seconds(2)) }
        for port in ports.prefix(20) {
            let rep = try ctx.socket(.rep)
            try rep.bind("tcp://127.0.0.1:\(port)")
            rep.close()
        }
    }

    @Test func reqRepRoundTripOverTCPAndIPC() throws {
        let tmp = TemporaryFolder()
        for bind in ["tcp://127.0.0.1:*", tmp.ipcEndpoint("rep.sock")] {
            let ctx = try Context()
            let rep = try ctx.socket(.rep)
            try rep.bind(bind)
            let endpoint = try rep.lastEndpoint
            #expect(!endpoint.hasSuffix("*"))
            let req = try ctx.socket(.req)
            try req.setReceiveTimeout(.seconds(5))
            try rep.setReceiveTimeout(.seconds(5))
            try req.connect(endpoint)
            try req.send("hello")
            #expect(try rep.receiveString() == "hello")
            try rep.send([0, 1, 2, 255])
            #expect(try req.receive() == [0, 1, 2, 255])
            try ctx.terminate()
            #expect(rep.isClosed && req.isClosed)
        }
    }

    /// `receiveMessage` reads `Peer-Address` (zmq_msg_gets): over ipc it carries the peer's uid, gid and pid
    /// (SO_PEERCRED), over tcp only an address.
    @Test func receiveMessageCarriesThePeerCredentialsOverIPC() throws {
        #expect(PeerCredentials(peerAddress: "localhost:0:0:3696") == PeerCredentials(uid: 0, gid: 0, pid: 3696))
        #expect(PeerCredentials(peerAddress: "127.0.0.1") == nil)
        let tmp = TemporaryFolder()
        for bind in [tmp.ipcEndpoint("creds.sock"), "tcp://127.0.0.1:*"] {
            let ctx = try Context()
            defer { try? ctx.terminate() }
            let rep = try ctx.socket(.rep)
            try rep.bind(bind)
            try rep.setReceiveTimeout(.seconds(5))
            let req = try ctx.socket(.req)
            try req.connect(try rep.lastEndpoint)
            try req.send(multipart: [Array("a".utf8), Array("b".utf8)])
            let message = try rep.receiveMessage()
            #expect(message.frames == [Array("a".utf8), Array("b".utf8)])
            if bind.hasPrefix("ipc://") {
                #expect(message.peerCredentials == PeerCredentials(uid: geteuid(), gid: getegid(), pid: getpid()),
                        "\(String(describing: message.peerAddress))")
            } else {
                #expect(message.peerAddress == "127.0.0.1", "\(String(describing: message.peerAddress))")
                #expect(message.peerCredentials == nil)
            }
        }
    }

    @Test func multipartKeepsFramesAndOrder() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let router = try ctx.socket(.router)
        try router.bind("tcp://127.0.0.1:*")
        let dealer = try ctx.socket(.dealer)
        try dealer.setRoutingID(Array("d1".utf8))
        try dealer.connect(try router.lastEndpoint)
        try router.setReceiveTimeout(.seconds(5))
        try dealer.setReceiveTimeout(.seconds(5))
        try dealer.send(multipart: [Array("a".utf8), [], Array("ccc".utf8)])
        let got = try router.receiveMultipart()
        #expect(got == [Array("d1".utf8), Array("a".utf8), [], Array("ccc".utf8)])
        try router.send(multipart: [Array("d1".utf8), Array("back".utf8)])
        #expect(try dealer.receiveMultipart() == [Array("back".utf8)])
    }

    @Test func pubSubAndPairDeliver() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let a = try ctx.socket(.pair), b = try ctx.socket(.pair)
        try a.bind("inproc://pair-\(UUID().uuidString)")
        try b.connect(try a.lastEndpoint)
        try a.send("ping")
        try b.setReceiveTimeout(.seconds(5))
        #expect(try b.receiveString() == "ping")

        let pub = try ctx.socket(.pub), sub = try ctx.socket(.sub)
        try pub.bind("tcp://127.0.0.1:*")
        try sub.subscribe(Array("job.".utf8))
        try sub.connect(try pub.lastEndpoint)
        // A slow joiner misses what was published before its subscription arrived: publish until seen.
        try waitUntilSync("SUB receives a published message", timeout: .seconds(5)) {
            try pub.send("other.x")
            try pub.send("job.done")
            return (try? sub.poll(.pollIn, timeout: .milliseconds(10)))?.contains(.pollIn) == true
        }
        #expect(try sub.receiveString() == "job.done")
    }

    @Test func receiveTimeoutIsEAGAINAndPollHonoursItsDeadline() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let rep = try ctx.socket(.rep)
        try rep.bind("tcp://127.0.0.1:*")
        try rep.setReceiveTimeout(.milliseconds(30))
        let clock = ContinuousClock()
        let t0 = clock.now
        #expect { try rep.receive() } throws: { ($0 as? ZMQError)?.code == .eagain }
        #expect(clock.now - t0 >= .milliseconds(25))
        #expect(try rep.poll(.pollIn, timeout: .milliseconds(20)).isEmpty)
        #expect { try rep.receive(flags: .dontWait) } throws: { ($0 as? ZMQError)?.code == .eagain }
    }

    @Test func reqSocketSendingTwiceIsEFSM() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let req = try ctx.socket(.req)
        try req.connect("tcp://127.0.0.1:\(freeTCPPort())")
        try req.send("one")
        #expect { try req.send("two") } throws: { ($0 as? ZMQError)?.code == .efsm }
        // REQ_RELAXED lifts that rule.
        let relaxed = try ctx.socket(.req)
        try relaxed.setRequestRelaxed(true)
        try relaxed.setRequestCorrelate(true)
        try relaxed.connect("tcp://127.0.0.1:\(freeTCPPort())")
        try relaxed.send("one")
        try relaxed.send("two")
    }

    @Test func optionsRoundTrip() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let s = try ctx.socket(.req)
        #expect(try s.linger == .zero)  // the binding's default, unlike libzmq's infinite linger
        try s.setLinger(.milliseconds(250))
        #expect(try s.linger == .milliseconds(250))
        try s.setLinger(nil)
        #expect(try s.linger == nil)
        try s.setReceiveTimeout(.milliseconds(1500))
        #expect(try s.receiveTimeout == .milliseconds(1500))
        try s.setMaxMessageSize(1024)
        #expect(try s.int64Option(22 /* ZMQ_MAXMSGSIZE */) == 1024)
        try s.setReconnect(interval: .milliseconds(50), max: .seconds(2))
        #expect(try s.int32Option(18 /* ZMQ_RECONNECT_IVL */) == 50)
        #expect(try s.int32Option(21 /* ZMQ_RECONNECT_IVL_MAX */) == 2000)
        try s.setHeartbeat(interval: .seconds(1), timeout: .seconds(3), ttl: .seconds(5))
        #expect(try s.int32Option(75 /* ZMQ_HEARTBEAT_IVL */) == 1000)
        try s.setImmediate(true)
        #expect(try s.int32Option(39 /* ZMQ_IMMEDIATE */) == 1)
        #expect { try s.setOption(9999, Int32(1)) } throws: { ($0 as? ZMQError)?.code == .einval }
    }

    @Test func badEndpointsAreTypedErrors() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let s = try ctx.socket(.rep)
        #expect { try s.bind("nonsense") } throws: { ($0 as? ZMQError)?.code == .einval }
        #expect { try s.bind("bogus://x") } throws: { ($0 as? ZMQError)?.code == .eprotonosupport }
        let a = try ctx.socket(.rep)
        try a.bind("tcp://127.0.0.1:*")
        let b = try ctx.socket(.rep)
        #expect { try b.bind(try a.lastEndpoint) } throws: { ($0 as? ZMQError)?.code == .eaddrinuse }
    }

    @Test func closeIsIdempotentAndUseAfterCloseIsRefused() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let s = try ctx.socket(.req)
        #expect(ctx.openSocketCount == 1)
        s.close()
        s.close(linger: .zero)
        #expect(s.isClosed)
        #expect(ctx.openSocketCount == 0)
        #expect { try s.send("x") } throws: { ($0 as? ZMQUsageError) == .closed(socket: s.label, operation: "zmq_send") }
    }

    @Test func secondThreadInsideOneSocketIsRefused() async throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let tmp = TemporaryFolder()
        let rep = try ctx.socket(.rep)
        // ipc, not a TCP port: a client of an earlier test still reconnecting to a port the kernel hands out
        // again delivered its request here once, and the blocked receive returned before we looked.
        try rep.bind(tmp.ipcEndpoint("rep.sock"))
        let box = UncheckedBox(rep)
        // One thread blocks inside receive (no timeout: only the context's termination ends it, so a slow
        // machine cannot let it leave before we look); a second call from here must be refused, not entered.
        let blocked = try await receiveBlockedUntilTermination(rep, "a receive blocked on its socket")
        #expect { try box.value.send("x") } throws: {
            if case .concurrentUse = $0 as? ZMQUsageError { return true }
            return false
        }
        try ctx.terminate(timeout: .seconds(5))  // wakes the blocked receive with ETERM
        #expect(try await blocked.value == .eterm)
        #expect(rep.isClosed)
    }

    /// The socket with the pending message is the one blocked in a call: its linger cannot be lowered before
    /// the shutdown (its owner is inside libzmq) nor after it (libzmq answers ETERM), and infinite linger is
    /// what was asked for. The caller must not wait for a peer that may never come: `terminate` returns at
    /// its deadline saying why, and libzmq finishes on its own thread once a peer takes the message. (Before,
    /// zmq_ctx_term held the caller for good.)
    @Test func terminatingWhileTheSocketWithThePendingMessageIsBlockedReturnsAtItsDeadline() async throws {
        let ctx = try Context(blocky: true)
        let req = try ctx.socket(.req)
        try req.setLinger(nil)
        let tmp = TemporaryFolder()
        let endpoint = tmp.ipcEndpoint("later.sock")
        try req.connect(endpoint)  // nobody there yet
        try req.send("never delivered")
        let blocked = try await receiveBlockedUntilTermination(req, "a REQ blocked waiting for its reply")
        let outcome = try await onThread("zmq context termination", timeout: .seconds(60)) { () -> String in
            do { try ctx.terminate(timeout: .seconds(1)); return "terminated" } catch { return "\(error)" }
        }
        #expect(outcome.contains("did not finish within 1.0 seconds: zmq_ctx_term still running"), "\(outcome)")
        #expect(try await blocked.value == .eterm)
        #expect(req.isClosed && !ctx.terminationFinished)
        // The lingering message reaches the first peer that comes; then libzmq's termination completes.
        let got = try await onThread("a peer taking the lingering message") { () -> String in
            let peerContext = try Context()
            defer { try? peerContext.terminate(timeout: .seconds(5)) }
            let rep = try peerContext.socket(.rep)
            try rep.setReceiveTimeout(.seconds(20))
            try rep.bind(endpoint)
            return String(decoding: try rep.receive(), as: UTF8.self)
        }
        #expect(got == "never delivered")
        try await waitUntil("libzmq's termination to finish", timeout: .seconds(20)) { ctx.terminationFinished }
    }

    @Test func terminatingWithABlockedReceiverAndPendingMessagesDoesNotHang() async throws {
        let ctx = try Context(blocky: true)  // libzmq's own default: infinite linger
        let req = try ctx.socket(.req)
        try req.setLinger(nil)
        let tmp = TemporaryFolder()
        try req.connect(tmp.ipcEndpoint("nobody.sock"))  // nobody there: the message stays pending
        try req.send("never delivered")
        let rep = try ctx.socket(.rep)
        try rep.bind(tmp.ipcEndpoint("rep.sock"))  // ipc: no stray client of another test can reach it
        let blocked = try await receiveBlockedUntilTermination(rep, "a receive blocked until termination")
        // Without the binding's shutdown-then-close, zmq_ctx_term would block here forever (a receive in
        // progress, a message pending with infinite linger). It must return, and without giving up on a socket
        // (`terminationTimedOut` would be thrown).
        try await onThread("zmq context termination", timeout: .seconds(60)) { try ctx.terminate(timeout: .seconds(30)) }
        #expect(try await blocked.value == .eterm)
        #expect(req.isClosed && rep.isClosed)
        #expect { try ctx.socket(.req) } throws: { ($0 as? ZMQUsageError) == .contextTerminated }
    }

    @Test func libzmqVersionIsFourThree() {
        #expect(libzmqVersion.major == 4)
        #expect(libzmqVersion.minor >= 3)
    }
}

/// Waits until another thread is inside a blocking libzmq call on `socket` (the binding then refuses us).
/// Starts a receive on `socket` on a thread of its own (no timeout: only the context's termination ends it)
/// and returns once that thread is inside libzmq; the task gives the error code the receive ended with.
///
/// The waiter looks by making a call of its own (`lastEndpoint`), which holds the socket's guard for a moment.
/// A receive that starts in that moment is refused with `concurrentUse` like any second caller; it tries
/// again until it is inside. (It used to give up, and the waiter then waited 30 s for a receive that had
/// already ended: a flake seen with one core busy, where the waiter is descheduled while holding the guard.)
func receiveBlockedUntilTermination(_ socket: Socket, _ what: String,
                                    attempts: AttemptCounter? = nil) async throws -> Task<ZMQError.Code?, any Error> {
    let box = UncheckedBox(socket)
    let counter = attempts
    let blocked = Task {
        try await onThread(what, timeout: .seconds(60)) { () -> ZMQError.Code? in
            while true {
                counter?.count.add(1, ordering: .relaxed)
                do {
                    _ = try box.value.receive()
                    return nil
                } catch let e as ZMQUsageError {
                    guard case .concurrentUse = e else { return nil }
                    sched_yield()  // the waiter holds the guard for one call: try again
                } catch let e as ZMQError {
                    return e.code
                } catch {
                    return nil
                }
            }
        }
    }
    try await waitUntilInsideLibzmq(box.value)
    return blocked
}

func waitUntilInsideLibzmq(_ socket: Socket) async throws {
    let box = UncheckedBox(socket)
    try await waitUntil("another thread to be inside a libzmq call on \(socket.label)") {
        do { _ = try box.value.lastEndpoint; return false } catch let e as ZMQUsageError {
            if case .concurrentUse = e { return true }
            return false
        }
    }
}

/// How many times a helper thread tried its call.
final class AttemptCounter: Sendable {
    let count = Atomic<Int>(0)
}

/// Hands a non-Sendable value to another task on purpose, to test the binding's own runtime guard.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

/// Flakes of the suite itself, fixed at their cause (issue 11, finding 9).
@Suite(.tags(.regression, .integration, .zmq), .leakChecked)
struct regression_integration_zmq_SuiteFlakes {
    /// `secondThreadInsideOneSocketIsRefused` and `terminatingWithABlockedReceiverAndPendingMessagesDoesNotHang`
    /// failed with one core busy: "another thread to be inside a libzmq call" ran out after 30 s. The
    /// blocked receive had started while the waiter held the socket's guard, was refused as a second caller,
    /// and ended at once. Here the guard is held on purpose (a 500 ms poll) while the receive starts: the
    /// receive must still end up inside libzmq and end with ETERM at the termination, not with nothing.
    @Test func blockedReceiveThatStartsWhileTheGuardIsHeldStillBlocks() async throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let tmp = TemporaryFolder()
        let pull = try ctx.socket(.pull)
        try pull.bind(tmp.ipcEndpoint("pull.sock"))
        let push = try ctx.socket(.push)
        try push.connect(tmp.ipcEndpoint("pull.sock"))
        let box = UncheckedBox(pull)
        // A holder inside a receive keeps the guard until a message arrives.
        let holder = Task { try await onThread("a receive holding the guard") { _ = try? box.value.receive() } }
        try await waitUntilInsideLibzmq(pull)
        let attempts = AttemptCounter()
        let blocked = try await receiveBlockedUntilTermination(pull, "a receive started while the guard is held", attempts: attempts)
        try await waitUntil("the second receive to be refused at least once") { attempts.count.load(ordering: .relaxed) >= 2 }
        try push.send("release the holder")
        try await holder.value
        try await waitUntilInsideLibzmq(pull)  // the second receive, now that the holder has left
        try ctx.terminate(timeout: .seconds(5))
        #expect(try await blocked.value == .eterm, "the receive never got inside libzmq")
    }
}
