import ArgumentParser
import CZMQBaseline
import ScheduleZeroWire
import ZMQClient
import ZeroMQ

/// The ZeroMQ layer against raw libzmq from C: round trip, and the cost of one recovery step.
struct ZMQBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zmq",
        abstract: "Client round trip vs raw C, and one recovery step vs a bare close+reopen+round trip."
    )

    @Option(help: "Round trips per sample.") var iterations = 2000
    @Option(help: "Recovery steps per sample.") var recoveries = 300
    @Option(help: "Samples (interleaved; medians are reported).") var rounds = 7
    @Option(help: "Endpoint for the echo peer to bind.") var bind = "tcp://127.0.0.1:*"

    func run() async throws {
        var bound = [CChar](repeating: 0, count: 256)
        guard let server = szb_echo_start(bind, &bound, Int32(bound.count)) else {
            throw ValidationError("cannot bind the C echo peer at \(bind)")
        }
        defer { _ = szb_echo_stop(server) }
        let endpoint = String(decoding: bound.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let request = Request(method: "ping")
        let payload = String(decoding: request.encoded(), as: UTF8.self)

        var cRT: [Double] = [], rawRT: [Double] = [], clientRT: [Double] = []
        var cReopen: [Double] = [], recovery: [Double] = [], actorRT: [Double] = []
        let actor = try ZMQClient(endpoint: endpoint, configuration: .init(timeout: .seconds(5)))
        for _ in 0..<200 { _ = try await actor.call(request) }

        let client = try SyncClient(endpoint: endpoint, configuration: .init(timeout: .seconds(5)))
        defer { client.terminate() }
        let ctx = try Context()
        defer { try? ctx.terminate() }
        let raw = try ctx.socket(.req)
        try raw.setReceiveTimeout(.seconds(5))
        try raw.connect(endpoint)
        let frame = request.encoded()
        // Warm up every path once.
        _ = szb_roundtrips_ns(endpoint, payload, 200)
        for _ in 0..<200 { _ = try client.call(request); try raw.send(frame); _ = try raw.receive() }

        guard let cClient = szb_client_open(endpoint) else { throw ValidationError("cannot open the C client") }
        defer { szb_client_close(cClient) }
        _ = szb_client_roundtrips_ns(cClient, payload, 200)
        let chunk = 100
        for _ in 0..<rounds {
            // Interleave the four paths in small chunks, so a change in machine load touches them alike.
            var cNs: Int64 = 0, rawNs: Int64 = 0, clientNs: Int64 = 0, actorNs: Int64 = 0
            let clock = ContinuousClock()
            for _ in 0..<(iterations / chunk) {
                let c = szb_client_roundtrips_ns(cClient, payload, Int32(chunk))
                guard c > 0 else { throw ValidationError("C round trips failed against \(endpoint)") }
                cNs += c
                rawNs += try Measure.ns { for _ in 0..<chunk { try raw.send(frame); _ = try raw.receive() } }
                clientNs += try Measure.ns { for _ in 0..<chunk { _ = try client.call(request) } }
                let t0 = clock.now
                for _ in 0..<chunk { _ = try await actor.call(request) }
                let a = clock.now - t0
                actorNs += a.components.seconds * 1_000_000_000 + a.components.attoseconds / 1_000_000_000
            }
            let done = Double((iterations / chunk) * chunk)
            cRT.append(Double(cNs) / done / 1000)
            rawRT.append(Double(rawNs) / done / 1000)
            clientRT.append(Double(clientNs) / done / 1000)
            actorRT.append(Double(actorNs) / done / 1000)

            let f = szb_reopen_roundtrips_ns(endpoint, payload, Int32(recoveries))
            guard f > 0 else { throw ValidationError("C reopen round trips failed") }
            cReopen.append(Double(f) / Double(recoveries) / 1000)

            // One recovery step: the REQ socket is stuck (a request went out, its reply is never read);
            // the timed call finds EFSM, closes with linger 0, reopens, reconnects and gets its reply.
            var total: Int64 = 0
            for _ in 0..<recoveries {
                try client.sabotage(.leaveAwaitingReply)
                total += try Measure.ns { _ = try client.call(request) }
            }
            recovery.append(Double(total) / Double(recoveries) / 1000)
        }
        let stats = client.stats
        let mc = Measure.median(cRT), mr = Measure.median(rawRT), ms = Measure.median(clientRT)
        let mf = Measure.median(cReopen), mrec = Measure.median(recovery)
        print("szbench zmq: libzmq \(libzmqVersion.major).\(libzmqVersion.minor).\(libzmqVersion.patch), endpoint \(endpoint), \(rounds) rounds of \(iterations) round trips / \(recoveries) recoveries (medians)")
        Measure.row("raw C REQ/REP round trip (baseline)", Measure.fmt(mc), "us")
        Measure.row("Swift binding, raw frames", Measure.fmt(mr), "us  \(Measure.fmt(mr / mc, 2))x C")
        Measure.row("SyncClient.call (JSON encode+decode)", Measure.fmt(ms), "us  \(Measure.fmt(ms / mc, 2))x C  \(Measure.verdict(ms / mc, goal: 1.10))")
        let ma = Measure.median(actorRT)
        Measure.row("ZMQClient actor (own thread) from a task", Measure.fmt(ma), "us  \(Measure.fmt(ma / mc, 2))x C  (two thread hops per call)")
        await actor.terminate()
        Measure.row("C close+reopen+connect+round trip (floor)", Measure.fmt(mf), "us")
        Measure.row("client recovery step from EFSM", Measure.fmt(mrec), "us  \(Measure.fmt(mrec / mf, 2))x floor  \(Measure.verdict(mrec / mf, goal: 1.5))")
        print("  recoveries counted by the client: \(stats.efsmRecoveries), failures: \(stats.failures)")
    }
}
