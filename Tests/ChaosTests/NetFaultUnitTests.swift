import Chaos
import Foundation
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting

/// What each network fault does, as rules and qdiscs, and how experiments spell them. No namespace is made.
@Suite(.tags(.unit), .leakChecked)
struct unit_NetFaultPlans {
    static let hosts: [String: NetHost] = [
        "a": NetHost(name: "a", addresses: ["10.77.0.1"], interface: "eth0", peer: "a-v"),
        "b": NetHost(name: "b", addresses: ["10.77.0.2"], interface: "eth0", peer: "b-v"),
        "c": NetHost(name: "c", addresses: ["10.77.0.3"], interface: "eth0", peer: nil),
    ]

    @Test func partitionDropsTrafficBetweenGroupsBothWaysInChainsOfItsOwn() throws {
        let acts = try NetFault.partition(groups: [["a"], ["b", "c"]]).actions(id: "12345678", hosts: Self.hosts)
        #expect(acts.count == 6)
        #expect(acts.contains(.chain(namespace: "a", hook: "INPUT", chain: "SZCHAOS-12345678-IN",
                                     rules: [["-s", "10.77.0.2", "-j", "DROP"], ["-s", "10.77.0.3", "-j", "DROP"]])))
        #expect(acts.contains(.chain(namespace: "c", hook: "OUTPUT", chain: "SZCHAOS-12345678-OUT", rules: [["-d", "10.77.0.1", "-j", "DROP"]])))
        // Nothing between b and c, which are on the same side.
        #expect(!acts.contains { if case .chain("b", _, _, let r) = $0 { r.joined().contains("10.77.0.3") } else { false } })
    }

    @Test func oneWayDropsOnlyConnectionsTheFromSideOpens() throws {
        let acts = try NetFault.oneWay(from: ["a"], to: ["b"]).actions(id: "12345678", hosts: Self.hosts)
        let original = ["-m", "conntrack", "--ctdir", "ORIGINAL", "-j", "DROP"]
        #expect(acts == [.chain(namespace: "a", hook: "OUTPUT", chain: "SZCHAOS-12345678-OUT", rules: [["-d", "10.77.0.2"] + original]),
                         .chain(namespace: "b", hook: "INPUT", chain: "SZCHAOS-12345678-IN", rules: [["-s", "10.77.0.1"] + original])])
    }

    @Test func lossIsolateAndBandwidthShapes() throws {
        let loss = try NetFault.loss(hosts: ["a"], probability: 0.25).actions(id: "12345678", hosts: Self.hosts)
        #expect(loss.count == 2 && loss.allSatisfy { if case .chain(_, _, _, let r) = $0 { r[0].contains("0.250000") && r[0].contains("lo") } else { false } })
        let iso = try NetFault.isolate(hosts: ["b"]).actions(id: "12345678", hosts: Self.hosts)
        #expect(iso.contains(.chain(namespace: "b", hook: "INPUT", chain: "SZCHAOS-12345678-IN", rules: [["!", "-i", "lo", "-j", "DROP"]])))
        let bw = try NetFault.bandwidth(hosts: ["a"], rate: "4mbit", direction: .both).actions(id: "12345678", hosts: Self.hosts)
        #expect(bw.map(\.namespace) == ["a", nil], "out on a's eth0, in on its veth's other end a-v")
        if case .qdisc(_, let dev, let handle, let spec) = bw[1] {
            #expect(dev == "a-v" && handle == "1234:" && spec.prefix(3) == ["tbf", "rate", "4mbit"])
        }
        // No veth peer: incoming traffic cannot be shaped, and it says so.
        #expect(throws: NetFaultError.self) { try NetFault.bandwidth(hosts: ["c"], rate: "1mbit", direction: .in).actions(id: "12345678", hosts: Self.hosts) }
    }

    @Test func badShapesAreRefused() {
        #expect(throws: NetFaultError.self) { try NetFault.partition(groups: [["a"]]).validate() }
        #expect(throws: NetFaultError.self) { try NetFault.partition(groups: [["a"], ["a"]]).validate() }
        #expect(throws: NetFaultError.self) { try NetFault.loss(hosts: ["a"], probability: 1.5).validate() }
        #expect(throws: NetFaultError.self) { try NetFault.bandwidth(hosts: ["a"], rate: "fast", direction: .out).validate() }
        #expect(throws: NetFaultError.self) { try NetFault.isolate(hosts: ["x"]).actions(id: "12345678", hosts: Self.hosts) }
        #expect(BandwidthRate.bytesPerSecond("4mbit") == 500_000 && BandwidthRate.bytesPerSecond("100kbit") == 12_500)
        #expect(BandwidthRate.bytesPerSecond("4") == nil && BandwidthRate.bytesPerSecond("-1mbit") == nil)
    }

    @Test func randomHalvesAreReproducibleFromTheSeed() throws {
        let hosts = ["h1", "h2", "h3", "h4", "h5"]
        let a = try NetFault.randomHalves(hosts, seed: 11), b = try NetFault.randomHalves(hosts.reversed(), seed: 11)
        #expect(a == b, "same seed and hosts, another order: the same halves")
        guard case .partition(let g) = a else { Issue.record("not a partition: \(a)"); return }
        #expect(g.count == 2 && g[0].count == 3 && g[1].count == 2 && Set(g[0] + g[1]) == Set(hosts))
        let others = try (1...20).map { try NetFault.randomHalves(hosts, seed: UInt64($0)) }
        #expect(Set(others.map(\.description)).count > 3, "the seed does not move the halves")
    }

    @Test func experimentsSpellNetworkFaultsWithStartAndStop() throws {
        let e = try Experiment.parse("""
            title: net
            duration: 10s
            faults:
              - {kind: partition, between: [[h1], [h2, h3]], start: 2s, stop: 6s}
              - {name: one-way, kind: partition, from: [h1], to: [h2], schedule: {initial_delay: 1s, duration: 500ms}}
              - {name: halves, kind: partition, targets: {include: ["h*"], random: true, limit: 2}, start: 1s, stop: 2s}
              - {kind: loss, targets: [h1], params: {probability: 0.5}, start: 250ms, stop: 1s}
              - {kind: bandwidth, targets: [h2], params: {rate: 1mbit, direction: out}, start: 1s, stop: 3s}
              - {kind: latency, targets: [h3], params: {delay: 100ms, jitter: 10ms}, start: 1s, stop: 3s}
            """)
        #expect(e.faults.map(\.kind) == [.partition, .partition, .partition, .loss, .bandwidth, .latency])
        let p = e.faults[0]
        #expect(p.schedule.initialDelay == .seconds(2) && p.schedule.duration == .seconds(4) && p.schedule.count == 1)
        #expect(p.params["between"] == .array([.array(["h1"]), .array(["h2", "h3"])]) && p.targets.include == ["h1", "h2", "h3"])
        #expect(e.faults[1].params["from"] == .array(["h1"]) && e.faults[1].params["to"] == .array(["h2"]))
        #expect(e.faults[2].params["pool"] == .array(["h*"]))
        #expect(e.faults[5].params["delay"] == .int(100) && e.faults[5].params["jitter"] == .int(10))
        // The plan: the partition from 2 s for 4 s, on the hosts named.
        let plan = try ExperimentRunner.plan(e, seed: 1) { _ in ["h1", "h2", "h3"] }
        #expect(plan.contains { $0.kind == .partition && $0.offset == .seconds(2) && $0.duration == .seconds(4) && $0.targets == ["h1", "h2", "h3"] })
        // What the actuator makes of them.
        let halves = try #require(plan.first { $0.name == "halves" })
        let fault = try NetFaultActuator.fault(for: halves, candidates: ["h1", "h2", "h3", "other"])
        guard case .partition(let g) = fault else { Issue.record("\(fault)"); return }
        #expect(g[0] == halves.targets && Set(g[0] + g[1]) == ["h1", "h2", "h3"], "the drawn half against the rest of h*, never 'other'")
    }

    @Test(arguments: [
        ("{kind: partition, between: [[h1], [h2]], start: 2, stop: 6s}", "faults[0].start", "duration"),
        ("{kind: partition, between: [[h1], [h2]], start: 6s, stop: 2s}", "faults[0].stop", "later than start"),
        ("{kind: partition, between: [[h1]], start: 1s, stop: 2s}", "faults[0].between", "two groups"),
        ("{kind: partition, between: [[h1], [h2]]}", "faults[0]", "duration > 0"),
        ("{kind: loss, targets: [h1], start: 1s, stop: 2s}", "faults[0]", "params.probability"),
        ("{kind: loss, targets: [h1], params: {probability: 2}, start: 1s, stop: 2s}", "faults[0].params.probability", "must be a number in 0.0...1.0 (got \"2\")"),
        ("{kind: bandwidth, targets: [h1], params: {rate: fast}, start: 1s, stop: 2s}", "faults[0].params.rate", "rate"),
        ("{kind: latency, targets: [h1], params: {delay: 100}, start: 1s, stop: 2s}", "faults[0].params.delay", "duration"),
        ("{kind: partition, between: [[h1], [h2]], targets: [h1], start: 1s, stop: 2s}", "faults[0].targets", "leave targets out"),
        ("{kind: kill, targets: [h1], between: [[h1], [h2]]}", "faults[0].between", "network faults"),
        ("{kind: partition, from: [h1], start: 1s, stop: 2s}", "faults[0].from", "both from and to"),
    ])
    func badNetworkFaultsNameLineAndField(fault: String, field: String, words: String) {
        let yaml = "title: net\nduration: 10s\nfaults:\n  - \(fault)\n"
        #expect {
            try Experiment.parse(yaml, file: "n.yaml")
        } throws: { e in
            guard let e = e as? ExperimentError else { return false }
            return e.line == 4 && e.field == field && e.message.contains(words) && e.description.hasPrefix("n.yaml:4:")
        }
    }
}
