import Chaos
import Foundation
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ
import Interposer

@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_ChaosProxy {
    @Test func forwardsEveryReplyToItsOwnClientWithNoFaults() async throws {
        let rig = try ProxyRig()
        defer { rig.stop() }
        try await onThread("three clients through the proxy") {
            let clients = try (1...3).map { _ in try rig.client() }
            defer { clients.forEach { $0.terminate() } }
            for n in 1...10 {
                for (i, c) in clients.enumerated() {
                    let r = try c.call("echo", params: ["seq": .int(Int64(n)), "client": .int(Int64(i))])
                    #expect(r["seq"] == .int(Int64(n)) && r["client"] == .int(Int64(i)))
                }
            }
        }
        let s = rig.proxy.stats
        #expect(s.forwarded[.request] == 30 && s.forwarded[.reply] == 30 && s.dropped == 0)
    }

    @Test func dropMakesTheClientTimeOutThenItRecovers() async throws {
        let rig = try ProxyRig(faults: ProxyFaults(drop: 1, direction: .replies))
        defer { rig.stop() }
        try await onThread("drop then recovery") {
            let c = try rig.client(timeout: .seconds(1), attempts: 1)
            defer { c.terminate() }
            #expect(throws: ClientError.self) { try c.call("echo", params: ["seq": 1]) }
            #expect(c.stats.timeouts == 1)
            #expect(rig.peer.received.count == 1, "the request reached the handler; its reply was dropped")
            rig.proxy.clear()
            #expect(try c.call("echo", params: ["seq": 2])["seq"] == 2)
        }
        #expect(rig.proxy.stats.dropped == 1)
    }

    @Test func seededPartialDropIsHealedByRetries() async throws {
        let rig = try ProxyRig(faults: ProxyFaults(drop: 0.3), seed: 99)
        defer { rig.stop() }
        let (seqs, retries) = try await onThread("retries through drops", timeout: .seconds(60)) {
            let c = try rig.client(timeout: .milliseconds(400), attempts: 12)
            defer { c.terminate() }
            let seqs = try (1...20).map { n in try c.call("echo", params: ["seq": .int(Int64(n))])["seq"] }
            return (seqs, c.stats.retries)
        }
        #expect(seqs == (1...20).map { .int(Int64($0)) })
        #expect(retries > 0)
        #expect(rig.proxy.stats.dropped > 0)
    }

    @Test func duplicatedRequestsReachTheHandlerTwiceAndTheClientGetsExactlyItsOwnReply() async throws {
        let rig = try ProxyRig(faults: ProxyFaults(duplicate: 1, direction: .requests))
        defer { rig.stop() }
        let seen = Locked<[JSONValue?]>([])
        try await onThread("duplicates") {
            let c = try rig.client(timeout: .seconds(5), attempts: 1)
            defer { c.terminate() }
            for n in 1...15 { seen.mutate { $0.append(try? c.call("echo", params: ["seq": .int(Int64(n))])["seq"]) } }
        }
        #expect(seen.get() == (1...15).map { .int(Int64($0)) })
        try await waitUntil("every duplicated request reached the handler") { rig.peer.received.count == 30 }
        let seqs = rig.peer.received.compactMap { $0.params["seq"]?.intValue }
        #expect(seqs == (1...15).flatMap { [Int64($0), Int64($0)] })
        try await waitUntil("the extra replies swallowed") { rig.proxy.stats.duplicateRepliesSwallowed == 15 }
        #expect(rig.proxy.stats.duplicated == 15)
    }

    /// A reply offered twice to a plain REQ socket: libzmq drops the copy if it is there before the next send,
    /// otherwise the REQ socket takes it as the next reply. The client sees its own reply or an older one
    /// (a sequence-number mismatch the load generator counts), never a later one.
    @Test func duplicatedRepliesShowAsOlderSequenceNumbersNeverNewerOnes() async throws {
        let rig = try ProxyRig(faults: ProxyFaults(duplicate: 1, direction: .replies))
        defer { rig.stop() }
        let seen = Locked<[Int64]>([])
        try await onThread("duplicate replies") {
            let c = try rig.client(timeout: .seconds(5), attempts: 1)
            defer { c.terminate() }
            for n in 1...15 { seen.mutate { $0.append((try? c.call("echo", params: ["seq": .int(Int64(n))])["seq"]?.intValue) ?? -1) } }
        }
        let got = seen.get()
        #expect(got.count == 15)
        #expect(zip(got, 1...15).allSatisfy { g, n in g >= 1 && g <= Int64(n) })
        // A call can return on an older duplicate while its own request is still on its way to the handler
        // (seen under load: 13 of 15 received right after the last call): the requests are waited for.
        try await waitUntil("the handler to receive all 15 requests", timeout: .seconds(30)) { rig.peer.received.count >= 15 }
        #expect(rig.peer.received.count == 15, "the handler ran each request once")
        // The proxy counts a copy after it sent it, and the client can have its reply first: the count is
        // waited for (it once read 12 of 15 right after the last call, under load).
        try await waitUntil("the proxy to count 15 duplicated replies", timeout: .seconds(10)) { rig.proxy.stats.duplicated == 15 }
    }

    @Test func reorderSwapsAHeldRequestWithTheNextOne() async throws {
        let rig = try ProxyRig(faults: ProxyFaults(reorder: 1, reorderHoldMs: 60_000, direction: .requests))
        defer { rig.stop() }
        let first = Task.detached {
            try await onThread("client A") {
                try SyncClient.with(endpoint: rig.endpoint, configuration: .init(timeout: .seconds(30), attempts: 1)) {
                    try $0.call("echo", params: ["who": "A"])["who"]
                }
            }
        }
        try await waitUntil("A held by the proxy") { rig.proxy.holding == 1 }
        let b = try await onThread("client B") {
            try SyncClient.with(endpoint: rig.endpoint, configuration: .init(timeout: .seconds(30), attempts: 1)) {
                try $0.call("echo", params: ["who": "B"])["who"]
            }
        }
        #expect(b == "B")
        #expect(try await first.value == "A")
        #expect(rig.peer.received.map { $0.params["who"] } == ["B", "A"])
        #expect(rig.proxy.stats.reordered == 1)
    }

    @Test func heldMessageWithNobodyToSwapWithGoesAloneAfterItsHoldTime() async throws {
        let rig = try ProxyRig(faults: ProxyFaults(reorder: 1, reorderHoldMs: 100, direction: .requests))
        defer { rig.stop() }
        let (latency, reply) = try await onThread("lone held request") {
            try SyncClient.with(endpoint: rig.endpoint, configuration: .init(timeout: .seconds(2), attempts: 1)) { c in
                let t0 = ContinuousClock.now
                let r = try c.call("echo", params: ["seq": 1])
                return (ContinuousClock.now - t0, r)
            }
        }
        #expect(reply["seq"] == 1)
        #expect(latency >= .milliseconds(95))
    }

    @Test func corruptRequestGetsAnErrorReplyAndCorruptReplyIsInvalid() async throws {
        let rig = try ProxyRig(faults: ProxyFaults(corrupt: 1, direction: .requests))
        defer { rig.stop() }
        try await onThread("corrupt") {
            let c = try rig.client(timeout: .seconds(5), attempts: 1)
            defer { c.terminate() }
            let r = try c.call("echo", params: ["seq": 1])
            #expect(!r.success && r.error == Wire.invalidJSON)
            rig.proxy.faults = ProxyFaults(corrupt: 1, direction: .replies)
            #expect {
                try c.call("echo", params: ["seq": 2])
            } throws: { e in
                if case .invalidReply? = e as? ClientError { return true }
                return false
            }
        }
        #expect(rig.proxy.stats.corrupted == 2)
    }

    @Test func delayAddsLatencyWithoutBlockingOtherTraffic() async throws {
        // The slow request is held far longer than any machine needs to send the fast one (no wall-clock
        // race), then released on purpose once the fast one has been answered.
        let rig = try ProxyRig(faults: ProxyFaults(delayMs: 60_000, jitterMs: 0, direction: .requests))
        defer { rig.stop() }
        let endpoint = rig.endpoint
        let slow = Task {
            try await onThread("slow client", timeout: .seconds(120)) {
                try SyncClient.with(endpoint: endpoint, configuration: .init(timeout: .seconds(90), attempts: 1)) { c in
                    try c.call("echo", params: ["seq": 1])["seq"]
                }
            }
        }
        // `delayed` counts holds and only grows, so this wait cannot miss the window.
        try await waitUntil("the slow request held") { rig.proxy.stats.delayed == 1 }
        rig.proxy.update { $0.delayMs = 0; $0.jitterMs = 0 }
        let proxy = rig.proxy
        let (fastSeq, slowStillHeld) = try await onThread("fast client", timeout: .seconds(60)) {
            try SyncClient.with(endpoint: endpoint, configuration: .init(timeout: .seconds(30), attempts: 1)) { c in
                let r = try c.call("echo", params: ["seq": 2])
                return (r["seq"], proxy.holding == 1)
            }
        }
        #expect(fastSeq == 2)
        #expect(slowStillHeld, "the fast request was answered while the slow one was still held")
        #expect(rig.peer.received.map { $0.params["seq"] } == [2], "only the fast request reached the handler so far")
        rig.proxy.releaseHeld()
        #expect(try await slow.value == 1)
        #expect(rig.peer.received.map { $0.params["seq"] } == [2, 1])
        #expect(rig.proxy.stats.delayed == 1 && rig.proxy.holding == 0)
    }

    @Test func blackholeSwallowsEverythingUntilClearedThroughTheControlEndpoint() async throws {
        let rig = try ProxyRig(control: true)
        defer { rig.stop() }
        let control = try #require(rig.proxy.controlEndpoint)
        try await onThread("blackhole via control") {
            let ctl = try SyncClient(endpoint: control, configuration: .init(timeout: .seconds(2), attempts: 1))
            defer { ctl.terminate() }
            let c = try rig.client(timeout: .seconds(1), attempts: 2)
            defer { c.terminate() }
            #expect(try ctl.ping()["message"] == "pong")
            let set = try ctl.call("set", params: ["blackhole": true])
            #expect(set.success && set["settings"]?["blackhole"] == true)
            #expect(throws: ClientError.self) { try c.call("echo", params: ["seq": 1]) }
            #expect(rig.peer.received.isEmpty)
            let status = try ctl.call("status")
            #expect(status["faults"]?["blackhole"] == 2)
            #expect(status["settings"]?["blackhole"] == true)
            #expect(try ctl.call("clear").success)
            #expect(try c.call("echo", params: ["seq": 2])["seq"] == 2)
        }
    }

    @Test func controlEndpointSwitchesFaultsAndRefusesBadSettings() async throws {
        let rig = try ProxyRig(control: true)
        defer { rig.stop() }
        let control = try #require(rig.proxy.controlEndpoint)
        try await onThread("control") {
            let ctl = try SyncClient(endpoint: control, configuration: .init(timeout: .seconds(2), attempts: 1))
            defer { ctl.terminate() }
            let r = try ctl.call("set", params: ["drop": 0.5, "delay_ms": 20, "jitter_ms": 5, "direction": "replies"])
            #expect(r.success)
            #expect(rig.proxy.faults == ProxyFaults(drop: 0.5, delayMs: 20, jitterMs: 5, direction: .replies))
            let bad = try ctl.call("set", params: ["drop": 2])
            #expect(!bad.success && bad.error?.contains("drop") == true)
            let unknown = try ctl.call("set", params: ["dorp": 1])
            #expect(!unknown.success && unknown.error?.contains("dorp") == true)
            #expect(rig.proxy.faults.drop == 0.5, "a refused set changes nothing")
            let status = try ctl.call("status")
            #expect(status["settings"]?["direction"] == "replies" && status["seed"] == "42")
            #expect(status["forwarded"]?["requests"] == 0)
            #expect(try ctl.call("nope").error == Wire.unknownMethod("nope"))
            #expect(try ctl.call("clear").success)
            #expect(rig.proxy.faults == .none)
        }
    }

    /// The control socket is polled by its ZMQ_FD, which signals a change, not a state: a burst of requests
    /// from 40 clients at once (more than the 16 the proxy answers per turn) is answered in full, during
    /// traffic and after it. (libzmq signalled again after each reply here even when the proxy answered one
    /// request per signal, so this guards the behaviour, not that one way of losing it.)
    @Test func controlEndpointAnswersEveryRequestOfABurstDuringTraffic() async throws {
        let rig = try ProxyRig(control: true)
        defer { rig.stop() }
        let control = try #require(rig.proxy.controlEndpoint)
        try await onThread("control burst", timeout: .seconds(60)) {
            let ctx = try Context()
            defer { try? ctx.terminate() }
            let c = try rig.client(timeout: .seconds(5), attempts: 1)
            defer { c.terminate() }
            for round in 0..<3 {
                let reqs = try (0..<40).map { _ in
                    let r = try ctx.socket(.req)
                    try r.setReceiveTimeout(.seconds(10))
                    try r.connect(control)
                    return r
                }
                for r in reqs { try r.send(Request(method: "ping").encoded()) }
                if round < 2 { #expect(try c.call("echo", params: ["seq": .int(Int64(round))])["seq"] == .int(Int64(round))) }
                var answered = 0
                for r in reqs {
                    let reply = try Reply.decode(r.receive())
                    if reply["message"] == "pong" { answered += 1 }
                    r.close()
                }
                #expect(answered == reqs.count, "round \(round)")
            }
            #expect(rig.proxy.stats.controlRequests == 120)
        }
    }

    @Test func sameSeedAndTrafficGiveTheSameDecisions() async throws {
        func run(seed: UInt64) async throws -> [ProxyDecision] {
            let rig = try ProxyRig(faults: ProxyFaults(drop: 0.3, delayMs: 2, jitterMs: 2, duplicate: 0.2, corrupt: 0.1,
                                                       direction: .requests), seed: seed)
            defer { rig.stop() }
            try await onThread("seeded traffic", timeout: .seconds(30)) {
                let c = try rig.client(timeout: .milliseconds(150), attempts: 1)
                defer { c.terminate() }
                for n in 1...25 { _ = try? c.call("echo", params: ["seq": .int(Int64(n))]) }
            }
            return rig.proxy.decisions(.request)
        }
        let a = try await run(seed: 1234)
        let b = try await run(seed: 1234)
        let c = try await run(seed: 4321)
        // The decision for the proxy's n-th message depends only on the seed and n. On a loaded machine a
        // client may give up on its last requests before they leave it, so compare what both runs saw.
        let n = min(a.count, b.count, c.count)
        #expect(n >= 15, "the proxy saw too few requests: \(a.count), \(b.count), \(c.count)")
        #expect(Array(a.prefix(n)) == Array(b.prefix(n)))
        #expect(Array(a.prefix(n)) != Array(c.prefix(n)))
        #expect(a.contains { $0.dropped } && a.contains { !$0.dropped })
    }

    @Test func stopIsPromptAndLeavesNothingRunning() async throws {
        let rig = try ProxyRig(faults: ProxyFaults(delayMs: 10_000))
        let c = try rig.client(timeout: .milliseconds(100), attempts: 1)
        _ = try? c.call("echo")  // held in the timer heap when we stop
        c.terminate()
        let t0 = ContinuousClock.now
        rig.proxy.stop()
        #expect(ContinuousClock.now - t0 < .seconds(5), "stop must not wait for the 10 s hold")
        #expect(!rig.proxy.isRunning)
        rig.peer.stop()
    }

    @Test func unusableEndpointsAreNamedInTheError() throws {
        #expect {
            try ChaosProxy(ChaosProxyConfiguration(listen: "tcp://nowhere:bad", upstream: "tcp://127.0.0.1:1"))
        } throws: { e in "\(e)".contains("listen") && "\(e)".contains("tcp://nowhere:bad") }
    }
}

@Suite(.tags(.unit), .leakChecked)
struct unit_ProxyFaultSettings {
    @Test func sameSeedSameDecisionsAndDirectionsAreIndependent() {
        let f = ProxyFaults(drop: 0.2, delayMs: 10, jitterMs: 5, duplicate: 0.2, reorder: 0.2, corrupt: 0.2)
        var a = FaultDecider(seed: 5), b = FaultDecider(seed: 5)
        let da = (0..<200).map { _ in a.decide(.request, bodySize: 40, faults: f) }
        // b sees replies interleaved: request decisions must not move.
        var db: [ProxyDecision] = []
        for _ in 0..<200 {
            db.append(b.decide(.request, bodySize: 40, faults: f))
            _ = b.decide(.reply, bodySize: 40, faults: f)
        }
        #expect(da == db)
        let drops = da.filter { $0.dropped || $0.dropsReply }.count
        #expect(drops > 20 && drops < 60)
        #expect(da.compactMap(\.delayMs).allSatisfy { (5...15).contains($0) })
    }

    @Test func directionLimitsWhereFaultsApply() {
        var d = FaultDecider(seed: 1)
        let f = ProxyFaults(drop: 1, direction: .replies)
        #expect(!d.decide(.request, bodySize: 3, faults: f).dropped)
        #expect(d.decide(.reply, bodySize: 3, faults: f).dropped)
    }

    @Test func applyingValidatesEveryKey() throws {
        let f = try ProxyFaults.none.applying(["drop": 0.25, "blackhole": true, "direction": "requests", "delay_ms": 5])
        #expect(f.drop == 0.25 && f.blackhole && f.direction == .requests && f.delayMs == 5)
        #expect(throws: ProxyFaults.InvalidSetting.self) { try ProxyFaults.none.applying(["corrupt": -0.1]) }
        #expect(throws: ProxyFaults.InvalidSetting.self) { try ProxyFaults.none.applying(["direction": "sideways"]) }
        #expect(throws: ProxyFaults.InvalidSetting.self) { try ProxyFaults.none.applying(["jitter_ms": "a"]) }
    }
}
