import ArgumentParser
import CZMQBaseline
import MockPeers
import ScheduleZeroWire

/// The mock handler's throughput against a raw C REP echo, both loaded by the same C REQ clients.
struct MockBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock",
        abstract: "szmock handler throughput (1 and 4 clients) vs a raw C REP echo, in one run."
    )

    @Option(help: "Round trips per client per sample.") var iterations = 3000
    @Option(help: "Samples (interleaved; medians are reported).") var rounds = 5

    func run() throws {
        var bound = [CChar](repeating: 0, count: 256)
        guard let echo = szb_echo_start("tcp://127.0.0.1:*", &bound, Int32(bound.count)) else {
            throw ValidationError("cannot bind the C echo peer")
        }
        defer { _ = szb_echo_stop(echo) }
        let echoEndpoint = String(decoding: bound.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)

        var cfg = MockHandlerConfiguration(id: "bench", bind: "tcp://127.0.0.1:*")
        cfg.seed = 1
        let handler = MockHandler(configuration: cfg)
        try handler.startAndWait(timeout: .seconds(10))
        defer { _ = handler.stop(timeout: .seconds(5)) }
        guard let mockEndpoint = handler.endpoint else { throw ValidationError("the mock handler did not bind") }

        let requests: [(String, String)] = [
            ("ping", String(decoding: Request(method: "ping").encoded(), as: UTF8.self)),
            ("echo", String(decoding: Request(method: "echo", params: ["seq": 1, "text": "hello", "n": [1, 2, 3]]).encoded(), as: UTF8.self)),
        ]
        print("szbench mock: \(rounds) rounds x \(iterations) round trips per client, C REQ clients (medians)")
        for (name, payload) in requests {
            for clients in [1, 4] {
                var base: [Double] = [], mock: [Double] = []
                for _ in 0..<rounds {
                    let b = szb_parallel_roundtrips_ns(echoEndpoint, payload, Int32(iterations), Int32(clients))
                    let m = szb_parallel_roundtrips_ns(mockEndpoint, payload, Int32(iterations), Int32(clients))
                    guard b > 0, m > 0 else { throw ValidationError("a load run failed (\(name), \(clients) clients)") }
                    base.append(Double(iterations * clients) / (Double(b) / 1e9))
                    mock.append(Double(iterations * clients) / (Double(m) / 1e9))
                }
                let mb = Measure.median(base), mm = Measure.median(mock)
                Measure.row("C REP echo, \(name), \(clients) client(s) (baseline)", "\(Int(mb))", "req/s")
                Measure.row("szmock handler, \(name), \(clients) client(s)", "\(Int(mm))",
                            "req/s  \(Measure.fmt(mm / mb, 2))x C  " + (mm / mb >= 0.9 ? "goal >= 0.9x: met" : "goal >= 0.9x: NOT met"))
            }
        }
    }
}
