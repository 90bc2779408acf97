import Foundation
import ScheduleZeroWire

/// Network faults between hosts (network namespaces): partitions, packet loss, bandwidth limits, latency.
///
/// Each fault becomes a list of `NetAction`s: iptables chains of its own (`SZCHAOS-<id>-IN` / `-OUT`, jumped
/// to from INPUT / OUTPUT of each host's namespace) and root qdiscs with a handle of its own on the hosts'
/// interfaces. The actions are written to a state record (`NetFaultStore`) before any is applied, so undo
/// is exact: it deletes those chains and qdiscs and nothing else.
public enum NetFault: Sendable, Equatable, CustomStringConvertible {
    /// Symmetric: no packet between a host of one group and a host of another, either way.
    case partition(groups: [[String]])
    /// One way: `from` cannot reach `to`. Packets travelling in the ORIGINAL direction of a connection that a
    /// `from` host opened (conntrack) are dropped at both ends; a connection a `to` host opens to a `from` host
    /// works both ways (its replies are part of the `to` host's connection). A plain drop of every packet
    /// from -> to would block TCP both ways, as every handshake needs both directions.
    case oneWay(from: [String], to: [String])
    /// Every packet in or out of the host's interfaces but loopback dropped.
    case isolate(hosts: [String])
    /// Each packet in or out of the host (but loopback) dropped with this probability (iptables statistic).
    case loss(hosts: [String], probability: Double)
    /// A token bucket (`tc tbf`) at `rate` on the host's interface: `out` shapes what it sends, `in` what it
    /// receives (on the veth's other end, in the initial namespace), `both` both.
    case bandwidth(hosts: [String], rate: String, direction: BandwidthDirection)
    /// `tc netem delay` on the host's interface (only where the kernel has netem: `NetEm.available`).
    case latency(hosts: [String], delay: Duration, jitter: Duration)

    /// Every host the fault touches.
    public var hosts: [String] {
        switch self {
        case .partition(let g): g.flatMap { $0 }
        case .oneWay(let f, let t): f + t
        case .isolate(let h), .loss(let h, _), .bandwidth(let h, _, _), .latency(let h, _, _): h
        }
    }

    public var kind: String {
        switch self {
        case .partition: "partition"
        case .oneWay: "partition-one-way"
        case .isolate: "isolate"
        case .loss: "loss"
        case .bandwidth: "bandwidth"
        case .latency: "latency"
        }
    }

    public var description: String {
        switch self {
        case .partition(let g): "partition " + g.map { "[\($0.joined(separator: ","))]" }.joined(separator: " | ")
        case .oneWay(let f, let t): "one-way partition [\(f.joined(separator: ","))] -> [\(t.joined(separator: ","))] blocked"
        case .isolate(let h): "isolate \(h.joined(separator: ","))"
        case .loss(let h, let p): "packet loss \(p) on \(h.joined(separator: ","))"
        case .bandwidth(let h, let r, let d): "bandwidth \(r) (\(d.rawValue)) on \(h.joined(separator: ","))"
        case .latency(let h, let d, let j): "latency \(d.millisText)" + (j > .zero ? " +- \(j.millisText)" : "") + " on \(h.joined(separator: ","))"
        }
    }

    /// Random halves: `hosts` shuffled with `seed` and cut in two (the first half one larger when odd).
    public static func randomHalves(_ hosts: [String], seed: UInt64) throws(NetFaultError) -> NetFault {
        let unique = Array(Set(hosts)).sorted()
        guard unique.count >= 2 else { throw .invalid("random halves need at least two hosts, got \(unique.count)") }
        var rng = SeededGenerator(seed: seed)
        var p = unique
        for i in stride(from: p.count - 1, to: 0, by: -1) { p.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let cut = (p.count + 1) / 2
        return .partition(groups: [Array(p[..<cut]).sorted(), Array(p[cut...]).sorted()])
    }

    /// Checks the shape (groups not empty, no host twice, probabilities and rates well formed).
    public func validate() throws(NetFaultError) {
        switch self {
        case .partition(let g):
            guard g.count >= 2, g.allSatisfy({ !$0.isEmpty }) else { throw .invalid("a partition needs at least two groups of hosts") }
        case .oneWay(let f, let t):
            guard !f.isEmpty, !t.isEmpty else { throw .invalid("a one-way partition needs hosts on both sides (from and to)") }
        case .isolate(let h), .latency(let h, _, _):
            guard !h.isEmpty else { throw .invalid("name at least one host") }
        case .loss(let h, let p):
            guard !h.isEmpty else { throw .invalid("name at least one host") }
            guard (0...1).contains(p) else { throw .invalid("a loss probability is from 0 to 1, not \(p)") }
        case .bandwidth(let h, let r, _):
            guard !h.isEmpty else { throw .invalid("name at least one host") }
            guard BandwidthRate.bytesPerSecond(r) != nil else {
                throw .invalid("a rate is a number with bit, kbit, mbit or gbit (tc's units, per second), e.g. 1mbit, not \"\(r)\"")
            }
        }
        let all = hosts
        if Set(all).count != all.count { throw .invalid("a host is named twice: \(all.joined(separator: ", "))") }
        if let bad = all.first(where: { $0.isEmpty || $0.contains("/") || $0.hasPrefix(".") }) {
            throw .invalid("not a network namespace name: \"\(bad)\"")
        }
    }

    /// What applying the fault does, host by host. `id` names its chains and qdisc handles.
    public func actions(id: String, hosts: [String: NetHost]) throws(NetFaultError) -> [NetAction] {
        try validate()
        func host(_ n: String) throws(NetFaultError) -> NetHost {
            guard let h = hosts[n] else { throw .unknownHost(n, known: hosts.keys.sorted()) }
            return h
        }
        func addresses(_ names: [String]) throws(NetFaultError) -> [String] {
            var out: [String] = []
            for n in names {
                let h = try host(n)
                guard !h.addresses.isEmpty else { throw .invalid("host \(n) has no IPv4 address (ip -n \(n) addr)") }
                out += h.addresses
            }
            return out
        }
        let chainIn = "SZCHAOS-\(id)-IN", chainOut = "SZCHAOS-\(id)-OUT"
        var out: [NetAction] = []
        switch self {
        case .partition(let groups):
            for (i, g) in groups.enumerated() {
                let others = try addresses(groups.enumerated().filter { $0.offset != i }.flatMap(\.element))
                for n in g {
                    _ = try host(n)
                    out.append(.chain(namespace: n, hook: "INPUT", chain: chainIn, rules: others.map { ["-s", $0, "-j", "DROP"] }))
                    out.append(.chain(namespace: n, hook: "OUTPUT", chain: chainOut, rules: others.map { ["-d", $0, "-j", "DROP"] }))
                }
            }
        case .oneWay(let from, let to):
            let fromAddrs = try addresses(from), toAddrs = try addresses(to)
            let original = ["-m", "conntrack", "--ctdir", "ORIGINAL", "-j", "DROP"]
            for n in from {
                out.append(.chain(namespace: n, hook: "OUTPUT", chain: chainOut, rules: toAddrs.map { ["-d", $0] + original }))
            }
            for n in to {
                out.append(.chain(namespace: n, hook: "INPUT", chain: chainIn, rules: fromAddrs.map { ["-s", $0] + original }))
            }
        case .isolate(let names):
            for n in names {
                _ = try host(n)
                out.append(.chain(namespace: n, hook: "INPUT", chain: chainIn, rules: [["!", "-i", "lo", "-j", "DROP"]]))
                out.append(.chain(namespace: n, hook: "OUTPUT", chain: chainOut, rules: [["!", "-o", "lo", "-j", "DROP"]]))
            }
        case .loss(let names, let p):
            let stat = ["-m", "statistic", "--mode", "random", "--probability", String(format: "%.6f", p), "-j", "DROP"]
            for n in names {
                _ = try host(n)
                out.append(.chain(namespace: n, hook: "INPUT", chain: chainIn, rules: [["!", "-i", "lo"] + stat]))
                out.append(.chain(namespace: n, hook: "OUTPUT", chain: chainOut, rules: [["!", "-o", "lo"] + stat]))
            }
        case .bandwidth(let names, let rate, let direction):
            let bytes = BandwidthRate.bytesPerSecond(rate) ?? 0
            // A bucket of 1/10 s of traffic (at least two full frames) and a queue of at most 1 s of it.
            let burst = max(3200, Int(bytes / 10))
            let spec = ["tbf", "rate", rate, "burst", "\(burst)", "latency", "1s"]
            for n in names {
                let h = try host(n)
                guard let dev = h.interface else { throw .invalid("host \(n) has no interface with an IPv4 address") }
                if direction != .in { out.append(.qdisc(namespace: n, device: dev, handle: NetAction.handle(id), spec: spec)) }
                if direction != .out {
                    guard let peer = h.peer else {
                        throw .invalid("host \(n): the other end of \(dev) is not a veth in this namespace, so incoming traffic cannot be shaped (use --direction out)")
                    }
                    out.append(.qdisc(namespace: nil, device: peer, handle: NetAction.handle(id), spec: spec))
                }
            }
        case .latency(let names, let delay, let jitter):
            var spec = ["netem", "delay", "\(delay.wholeMilliseconds)ms"]
            if jitter > .zero { spec.append("\(jitter.wholeMilliseconds)ms") }
            for n in names {
                let h = try host(n)
                guard let dev = h.interface else { throw .invalid("host \(n) has no interface with an IPv4 address") }
                out.append(.qdisc(namespace: n, device: dev, handle: NetAction.handle(id), spec: spec))
            }
        }
        return out
    }
}

public enum BandwidthDirection: String, Sendable, Codable, CaseIterable {
    case out, `in`, both
}

/// tc's rate units (per second): `bit`, `kbit`, `mbit`, `gbit` (and `bps`, `kbps`, `mbps`: bytes).
public enum BandwidthRate {
    public static func bytesPerSecond(_ text: String) -> Double? {
        let units: [(String, Double)] = [("kbps", 1000), ("mbps", 1e6), ("bps", 1), ("kbit", 125), ("mbit", 125_000),
                                          ("gbit", 125_000_000), ("bit", 0.125)]
        let t = text.lowercased()
        for (u, f) in units where t.hasSuffix(u) {
            let digits = t.dropLast(u.count)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isNumber || $0 == "." }), let v = Double(digits), v > 0 else { return nil }
            let b = v * f
            return b >= 1 && b <= 1.25e10 ? b : nil
        }
        return nil
    }
}

/// One undoable step of a network fault, as recorded in its state file.
public enum NetAction: Sendable, Equatable, Codable, CustomStringConvertible {
    /// An iptables chain of the fault in `namespace`, holding `rules` (arguments after `-A CHAIN`), jumped to
    /// from the first position of `hook` (INPUT or OUTPUT).
    case chain(namespace: String, hook: String, chain: String, rules: [[String]])
    /// A root qdisc with `handle` on `device`, in `namespace` (nil: the initial one).
    case qdisc(namespace: String?, device: String, handle: String, spec: [String])

    /// A qdisc handle (major number, hex) derived from the fault's id.
    static func handle(_ id: String) -> String {
        let major = (UInt16(id.prefix(4), radix: 16) ?? 0x5a7c) | 0x1000
        return String(major, radix: 16) + ":"
    }

    public var description: String {
        switch self {
        case let .chain(ns, hook, chain, rules):
            "\(ns): iptables \(hook) -> \(chain) (\(rules.count) rule\(rules.count == 1 ? "" : "s"): \(rules.map { $0.joined(separator: " ") }.joined(separator: "; ")))"
        case let .qdisc(ns, dev, handle, spec):
            "\(ns ?? "(initial namespace)"): tc qdisc \(handle) root on \(dev): \(spec.joined(separator: " "))"
        }
    }

    /// The namespace it lives in (nil: the initial namespace).
    public var namespace: String? {
        switch self {
        case .chain(let ns, _, _, _): ns
        case .qdisc(let ns, _, _, _): ns
        }
    }

    func iptables(_ ns: String, _ args: [String]) -> [String] { HostCommand.inNamespace(ns, ["iptables", "-w", "5"] + args) }
    func tc(_ ns: String?, _ args: [String]) -> [String] { ["tc"] + (ns.map { ["-n", $0] } ?? []) + args }

    /// Applies the step. The chain is complete before the jump to it is inserted, so a half-made chain never acts.
    public func apply() throws(NetFaultError) {
        do {
            switch self {
            case let .chain(ns, hook, chain, rules):
                try HostCommand.check(iptables(ns, ["-N", chain]))
                for r in rules { try HostCommand.check(iptables(ns, ["-A", chain] + r)) }
                try HostCommand.check(iptables(ns, ["-I", hook, "1", "-j", chain]))
            case let .qdisc(ns, dev, handle, spec):
                let r = try HostCommand.run(tc(ns, ["qdisc", "add", "dev", dev, "root", "handle", handle] + spec))
                if !r.ok {
                    if spec.first == "netem", r.message.contains("qdisc kind is unknown") { throw NetFaultError.netemMissing(r.message) }
                    throw NetFaultError.command("`\(tc(ns, ["qdisc", "add", "dev", dev, "root", "handle", handle] + spec).joined(separator: " "))` exited \(r.status): \(r.message)"
                                                + (r.message.contains("Exclusivity") || r.message.contains("File exists") ? " (another root qdisc is on \(dev): one shaping fault per interface)" : ""))
                }
            }
        } catch let e as NetFaultError {
            throw e
        } catch {
            throw .command("\(error)")
        }
    }

    /// Undoes the step as far as it was applied; what is already gone (the namespace, the device, the chain) is
    /// not an error. Returns problems that remain (a rule that could not be deleted).
    public func undo() -> [String] {
        var problems: [String] = []
        func gone(_ r: HostCommand.Result) -> Bool {
            let m = r.message
            return m.contains("Cannot open network namespace") || m.contains("No such file") || m.contains("does not exist")
                || m.contains("No chain/target/match") || m.contains("Cannot find device") || m.contains("doesn't exist")
                || m.contains("Bad rule") || m.contains("not found")
        }
        switch self {
        case let .chain(ns, hook, chain, _):
            guard NetHosts.exists(ns) else { return [] }
            // The jump may have been inserted more than once only by hand; remove every copy.
            for _ in 0..<16 {
                guard let r = try? HostCommand.run(iptables(ns, ["-D", hook, "-j", chain])), r.ok else { break }
            }
            for step in [["-F", chain], ["-X", chain]] {
                guard let r = try? HostCommand.run(iptables(ns, step)) else { problems.append("\(ns): iptables not found"); continue }
                if !r.ok && !gone(r) { problems.append("\(ns): iptables \(step.joined(separator: " ")): \(r.message)") }
            }
        case let .qdisc(ns, dev, handle, spec):
            if let ns, !NetHosts.exists(ns) { return [] }
            guard let show = try? HostCommand.run(tc(ns, ["qdisc", "show", "dev", dev, "root"])) else { return ["tc not found"] }
            guard show.ok else { return gone(show) ? [] : ["\(ns ?? "-"): tc qdisc show dev \(dev): \(show.message)"] }
            // Only our qdisc: its kind and handle.
            guard show.output.contains("qdisc \(spec.first ?? "") \(handle) root") else { return [] }
            if let r = try? HostCommand.run(tc(ns, ["qdisc", "del", "dev", dev, "root", "handle", handle])), !r.ok, !gone(r) {
                problems.append("\(ns ?? "-"): tc qdisc del dev \(dev) root: \(r.message)")
            }
        }
        return problems
    }
}

/// Why a network fault could not be planned or applied.
public enum NetFaultError: Error, Sendable, CustomStringConvertible, Equatable {
    case unknownHost(String, known: [String])
    case invalid(String)
    case command(String)
    /// `tc netem` is not in this kernel.
    case netemMissing(String)
    case state(String)

    public var description: String {
        switch self {
        case let .unknownHost(h, k):
            "no host (network namespace) \(h) (known: \(k.isEmpty ? "none: make some with scripts/testbed.sh up N" : k.joined(separator: ", ")))"
        case .invalid(let s), .command(let s), .state(let s): s
        case .netemMissing(let m): NetEm.missingMessage + " (tc said: \(m))"
        }
    }
}

/// Whether the kernel has `tc netem` (latency, jitter). Probed in a namespace of its own, made and removed
/// for the probe, so no interface of a host is touched.
public enum NetEm {
    public static let missingMessage = """
        latency needs tc netem, which this kernel does not have (sch_netem). Add the latency on the ZeroMQ \
        links instead, with the interposer: `szchaos delay NAME --by 300ms [--jitter 50ms]` on a handler with \
        `interpose: true`, a `delay` fault in an experiment, or `szchaos proxy --delay 300ms` in front of an endpoint
        """

    public static func available() -> Bool {
        let ns = "szchaos-netem-probe-\(getpid())"
        guard (try? HostCommand.run(["ip", "netns", "add", ns]))?.ok == true else { return false }
        defer { _ = try? HostCommand.run(["ip", "netns", "delete", ns]) }
        _ = try? HostCommand.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return (try? HostCommand.run(["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]))?.ok == true
    }
}
