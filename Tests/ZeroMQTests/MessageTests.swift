import Foundation
import ScheduleZeroTesting
import Testing
import ZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// `Message` without sockets: content, `move`, `copy`, `reset`, `set`.
@Suite(.tags(.unit, .zmq), .leakChecked)
struct unit_zmq_Message {
    @Test func aNewMessageIsEmptyAndSetCopiesTheBytesIn() {
        let m = Message()
        #expect(m.isEmpty && m.count == 0 && m.bytes == [] && !m.more)
        // Around libzmq's inline size (33 bytes), and a large one that lives in a buffer of its own.
        for n in [0, 1, 33, 34, 1 << 20] {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            m.set(bytes)
            #expect(m.count == n)
            #expect(m.bytes == bytes)
            #expect(Array(m.data) == bytes)
            #expect(Message(bytes[...]).bytes == bytes, "from a slice")
        }
        m.reset()
        #expect(m.isEmpty)
    }

    @Test func moveTakesTheContentAndLeavesTheSourceEmpty() {
        for n in [5, 1 << 16] {
            let bytes = [UInt8](repeating: 0xAB, count: n)
            let a = Message(bytes), b = Message(Array("old".utf8))
            b.move(from: a)
            #expect(b.bytes == bytes)
            #expect(a.isEmpty, "the source of a move is empty, not closed: it is closed once, at its end")
            a.move(from: a)  // onto itself: nothing happens
            b.move(from: b)
            #expect(b.bytes == bytes)
        }
    }

    @Test func copySharesTheContentAndEachStaysValidAfterTheOtherEnds() {
        for n in [3, 1 << 20] {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0) }
            var original: Message? = Message(bytes)
            let copy = original!.copy()
            let other = Message()
            other.copy(from: original!)
            #expect(original!.bytes == bytes && copy.bytes == bytes && other.bytes == bytes)
            original = nil  // the shared buffer outlives the first owner
            #expect(copy.bytes == bytes && other.bytes == bytes)
        }
    }

    /// Each `Message` closes its `zmq_msg_t` once (debug builds assert libzmq accepted the close, so a
    /// double close fails here), and nothing is kept past the end of its owners: 1 GiB of frames made,
    /// copied, moved and dropped leaves the resident memory where it was.
    @Test func framesAreClosedOnceAndNothingLeaks() {
        let frame = [UInt8](repeating: 7, count: 1 << 20)
        func churn(_ rounds: Int) {
            for _ in 0..<rounds {
                let a = Message(frame)
                let b = a.copy()
                let c = Message()
                c.move(from: a)
                let d = Message(frame)
                d.reset()
                #expect(b.count == frame.count && c.count == frame.count && a.isEmpty && d.isEmpty)
            }
        }
        churn(16)  // malloc's arenas settle
        let before = heapInUse()
        churn(512)
        let grown = heapInUse() - before
        #expect(grown < 64 << 20, "the heap grew by \(grown >> 20) MiB over 512 rounds of 2 MiB of frames")
    }
}

/// `Message` and `Poller` on sockets: frames received into and sent from messages without copies.
@Suite(.tags(.integration, .zmq), .leakChecked)
struct integration_zmq_Message {
    /// A connected ROUTER and DEALER on inproc, with receive timeouts.
    static func pair(_ ctx: Context) throws -> (router: Socket, dealer: Socket) {
        let router = try ctx.socket(.router)
        try router.bind("inproc://msg-\(UUID().uuidString)")
        let dealer = try ctx.socket(.dealer)
        try dealer.setRoutingID(Array("d1".utf8))
        try dealer.connect(try router.lastEndpoint)
        try router.setReceiveTimeout(.seconds(5))
        try dealer.setReceiveTimeout(.seconds(5))
        return (router, dealer)
    }

    @Test func multipartTravelsFrameByFrameWithItsMoreFlagsAndSentFramesAreGivenAway() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let (router, dealer) = try Self.pair(ctx)
        let large = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let frames: [[UInt8]] = [Array("a".utf8), [], large, [], Array("z".utf8)]
        let out = frames.map { Message($0) }
        try dealer.send(multipart: out)
        #expect(out.allSatisfy { $0.isEmpty }, "zmq_msg_send took every frame: nothing left to close twice")

        var inbound: [Message] = []
        let n = try router.receiveMultipart(into: &inbound)
        #expect(n == frames.count + 1)
        let received = inbound.prefix(n).map(\.bytes)
        #expect(received == [Array("d1".utf8)] + frames)
        #expect(inbound.prefix(n).map(\.more) == [true, true, true, true, true, false])

        // Forwarded as zmq_proxy does: the same messages go back, and are reused for the next message.
        try router.send(multipart: inbound[0..<n])
        #expect(inbound.allSatisfy { $0.isEmpty })
        #expect(try dealer.receiveMultipart() == frames, "the copying receive reads what the moving send sent")
        try dealer.send(multipart: [Array("short".utf8)])
        let short = try router.receiveMultipart(into: &inbound)
        #expect(short == 2, "fewer frames: the same messages, reused")
        #expect(inbound[0].bytes == Array("d1".utf8) && inbound[1].bytes == Array("short".utf8))
        #expect(inbound.count == frames.count + 1, "no new messages made")

        // One frame at a time, the flag on each.
        try dealer.send(multipart: [[1], [], [2]])
        let one = Message()
        var seen: [([UInt8], Bool)] = []
        repeat {
            let more = try router.receive(into: one)
            seen.append((one.bytes, more))
        } while seen.last!.1
        #expect(seen.map(\.0) == [Array("d1".utf8), [1], [], [2]])
        #expect(seen.map(\.1) == [true, true, true, false])
    }

    @Test func aFailedReceiveLeavesAnEmptyMessageAndAFailedSendKeepsItsContent() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let (router, dealer) = try Self.pair(ctx)
        let m = Message(Array("stale".utf8))
        #expect { try router.receive(into: m, flags: .dontWait) } throws: { ($0 as? ZMQError)?.code == .eagain }
        #expect(m.isEmpty)

        // A REQ socket refuses a second send (EFSM): the message is still the caller's.
        let req = try ctx.socket(.req)
        try req.connect("inproc://nobody-\(UUID().uuidString)")
        try req.send("one")
        let refused = Message(Array("two".utf8))
        #expect { try req.send(refused) } throws: { ($0 as? ZMQError)?.code == .efsm }
        #expect(refused.bytes == Array("two".utf8))

        // A closed socket refuses before libzmq sees the message.
        dealer.close()
        #expect { try dealer.send(refused) } throws: { $0 is ZMQUsageError }
        #expect(refused.bytes == Array("two".utf8))
        _ = router
    }

    /// The properties of a received frame (`zmq_msg_gets`), as `receiveMessage` reads them.
    @Test func aReceivedFrameCarriesItsPeerAddress() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let rep = try ctx.socket(.rep)
        try rep.bind("tcp://127.0.0.1:*")
        try rep.setReceiveTimeout(.seconds(5))
        let req = try ctx.socket(.req)
        try req.connect(try rep.lastEndpoint)
        try req.send("x")
        let m = Message()
        try rep.receive(into: m)
        #expect(m.property(Socket.peerAddressProperty) == "127.0.0.1")
        #expect(m.property("No-Such-Property") == nil)
    }

    @Test func pollerReportsEachSocketsEventsTurnAfterTurnAndHonoursItsDeadline() throws {
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let (router, dealer) = try Self.pair(ctx)
        let quiet = try ctx.socket(.pull)
        try quiet.bind("inproc://quiet-\(UUID().uuidString)")
        let poller = Poller([(quiet, .pollIn), (router, .pollIn)])
        #expect(poller.count == 2)
        let clock = ContinuousClock()
        let t0 = clock.now
        #expect(try poller.poll(timeout: .milliseconds(30)) == 0)
        #expect(clock.now - t0 >= .milliseconds(25))
        #expect(poller.events(0).isEmpty && poller.events(1).isEmpty)
        for turn in 0..<3 {
            try dealer.send("turn \(turn)")
            #expect(try poller.poll(timeout: .seconds(5)) == 1)
            #expect(poller.events(0).isEmpty)
            #expect(poller.events(1).contains(.pollIn))
            var frames: [Message] = []
            #expect(try router.receiveMultipart(into: &frames, flags: .dontWait) == 2)
            #expect(frames[1].bytes == Array("turn \(turn)".utf8))
        }
        // The free function is the same poll, made once.
        try dealer.send("again")
        let ready = try ZeroMQ.poll([(quiet, .pollIn), (router, .pollIn)], timeout: .seconds(5))
        #expect(ready.count == 2 && ready[0].isEmpty && ready[1].contains(.pollIn))
        quiet.close()
        #expect { try poller.poll(timeout: .zero) } throws: { $0 is ZMQUsageError }
        #expect(try router.poll(.pollIn, timeout: .zero).contains(.pollIn), "a refused poll let go of every socket it held")
    }
}

/// The process's resident memory in bytes (`/proc/self/statm`): every frame here is written to, so a frame
/// never freed stays resident.
private func heapInUse() -> Int {
    let fields = ((try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "").split(separator: " ")
    return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}
