import ArgumentParser
import Chaos
import Foundation
import Governor
import ScheduleZeroWire

/// `szchaos net ...`: network faults between hosts (network namespaces, e.g. `scripts/testbed.sh up N`).
struct Net: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Network faults between hosts (network namespaces): partition, loss, bandwidth, latency; list and heal.",
        discussion: """
        A fault is recorded in \(NetFaultStore.defaultDirectory)/<id>.json ($SZCHAOS_NET_STATE overrides the folder)
        before it is applied, lives as long as this szchaos process, and is undone at the end of --duration, on
        SIGINT/SIGTERM, or, after a kill -9, by the next `szchaos net` command (any of them heals the faults
        whose owner is gone) or `scripts/testbed.sh down`. See docs/CHAOS.md, "Network faults".
        """,
        subcommands: [NetPartition.self, NetLoss.self, NetBandwidth.self, NetLatency.self, NetList.self, NetHeal.self]
    )
}

/// A positive duration option of szchaos (`250ms`, `2s`, `1m`; a bare number is refused, as everywhere).
func unitDuration(_ text: String, option: String, positive: Bool = true) throws -> Duration {
    try DurationText.option(text, option, positive: positive).mapError { ValidationError($0.description) }.get()
}

/// Options of every command that applies a fault.
struct NetFaultOptions: ParsableArguments {
    @Option(help: "How long the fault stays (250ms, 2s, 1m; a unit is required). Default: until SIGINT or SIGTERM.")
    var duration: String?
    @Flag(help: "Print what would be done (the rules and qdiscs) and do nothing.") var dryRun = false

    func validate() throws { if let duration { _ = try unitDuration(duration, option: "--duration") } }

    /// Heals stale records, applies `fault`, waits, undoes it. SIGINT/SIGTERM are blocked (Main) from the start.
    func run(_ name: String, _ fault: NetFault) throws {
        let store = NetFaultStore()
        for r in store.sweepStale() { print(r) }
        let d = try duration.map { try unitDuration($0, option: "--duration") }
        if dryRun {
            do {
                try fault.validate()
                var hosts: [String: NetHost] = [:]
                for n in Set(fault.hosts) { hosts[n] = try NetHosts.host(n) }
                print("would apply: \(fault)")
                for a in try fault.actions(id: "<id>", hosts: hosts) { print("  \(a)") }
            } catch { throw Failure("szchaos net \(name): \(error)") }
            return
        }
        var sigs = sigset_t()
        sigemptyset(&sigs)
        sigaddset(&sigs, SIGINT)
        sigaddset(&sigs, SIGTERM)
        let record: NetFaultRecord
        do {
            record = try NetFaults.apply(fault, store: store, until: d.map { Date().timeIntervalSince1970 + $0.secondsValue })
        } catch { throw Failure("szchaos net \(name): \(error)") }
        print("applied \(record.id): \(record.fault)" + (d.map { " for \($0.millisText)" } ?? " until SIGINT or SIGTERM"))
        print("record: \(store.directory)/\(record.id).json")
        fflush(nil)
        let clock = ContinuousClock()
        let t0 = clock.now
        let sig: Int32? = d.map { Signals.wait(sigs, timeout: $0) } ?? Signals.wait(sigs)
        let heal = store.heal(record, reason: "stopped")
        let why = sig.map { "on \(SignalName.name($0)) after \((clock.now - t0).millisText)" } ?? "after \(d?.millisText ?? "")"
        print("undone \(record.id) \(why): " + (heal.problems.isEmpty ? "every rule and qdisc removed" : "left behind: " + heal.problems.joined(separator: "; ")))
        fflush(nil)
        if !heal.problems.isEmpty { throw ExitCode(1) }
        // Interrupted before the end of --duration: stopped early, as `pause` says.
        if sig != nil && d != nil {
            FileHandle.standardError.write(Data("szchaos net \(name): interrupted by \(SignalName.name(sig!)): the fault was undone early\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// Host lists: `a,b` or repeated options; globs are matched against the namespaces there are.
func hostList(_ words: [String], option: String) throws -> [String] {
    let parts = words.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
    guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else { throw ValidationError("\(option): name at least one host (a network namespace)") }
    guard parts.contains(where: { $0.contains("*") || $0.contains("?") || $0.contains("[") }) else { return parts }
    let known: [String]
    do { known = try NetHosts.names() } catch { throw Failure("szchaos net: \(error)") }
    var out: [String] = []
    for p in parts {
        let hit = known.filter { TargetSelector.matches($0, p) }
        guard !hit.isEmpty else { throw Failure("szchaos net: \(option) \(p) matches no network namespace (known: \(known.isEmpty ? "none" : known.joined(separator: ", ")))") }
        out += hit.filter { !out.contains($0) }
    }
    return out
}

struct NetPartition: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partition",
        abstract: "Cut hosts off from each other: between groups, one way, one host from all, or random halves.",
        discussion: """
        --between G1 --between G2 [...]   symmetric: no packet between hosts of different groups (G: a,b,c or globs)
        --from A --to B                   one way: A cannot reach B (connections A opens to B are dropped, at both
                                          ends, also those already open); connections B opens to A work both ways
        --isolate H                       every packet in or out of H (but loopback) dropped
        --random-halves HOSTS --seed S    HOSTS shuffled with the seed and cut in two halves, partitioned
        """
    )
    @Option(help: "A group of hosts (a,b or globs); two or more make a symmetric partition.") var between: [String] = []
    @Option(help: "One way: the hosts that cannot reach --to.") var from: [String] = []
    @Option(help: "One way: the hosts --from cannot reach.") var to: [String] = []
    @Option(help: "Isolate these hosts from every other.") var isolate: [String] = []
    @Option(name: .customLong("random-halves"), help: "Partition these hosts into two random halves (--seed).") var randomHalves: [String] = []
    @Option(help: "Seed of the random halves (default: drawn; always printed).") var seed: String?
    @OptionGroup var options: NetFaultOptions

    func validate() throws {
        let modes = [!between.isEmpty, !from.isEmpty || !to.isEmpty, !isolate.isEmpty, !randomHalves.isEmpty].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give exactly one of --between (twice or more), --from with --to, --isolate, --random-halves") }
        if !between.isEmpty && between.count < 2 { throw ValidationError("--between takes two groups or more (--between a --between b,c)") }
        if (!from.isEmpty || !to.isEmpty) && (from.isEmpty || to.isEmpty) { throw ValidationError("a one-way partition needs both --from and --to") }
        if let seed { _ = try parseSeed(seed) }
    }

    func run() throws {
        let fault: NetFault
        if !between.isEmpty {
            fault = .partition(groups: try between.map { try hostList([$0], option: "--between") })
        } else if !from.isEmpty {
            fault = .oneWay(from: try hostList(from, option: "--from"), to: try hostList(to, option: "--to"))
        } else if !isolate.isEmpty {
            fault = .isolate(hosts: try hostList(isolate, option: "--isolate"))
        } else {
            let s = try seed.map(parseSeed) ?? SeededGenerator.randomSeed()
            print("seed: \(s)")
            do { fault = try NetFault.randomHalves(try hostList(randomHalves, option: "--random-halves"), seed: s) } catch {
                throw Failure("szchaos net partition: \(error)")
            }
        }
        try options.run("partition", fault)
    }
}

struct NetLoss: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loss",
        abstract: "Drop each packet in or out of the hosts (but loopback) with a probability (iptables statistic).")
    @Argument(help: "Hosts (network namespaces, globs).") var hosts: [String] = []
    @Option(help: "The probability of dropping each packet, 0 to 1.") var probability: Double
    @OptionGroup var options: NetFaultOptions

    func validate() throws {
        if hosts.isEmpty { throw ValidationError("name at least one host (a network namespace)") }
        guard (0...1).contains(probability) else { throw ValidationError("--probability takes a probability from 0 to 1, not \(probability)") }
    }

    func run() throws { try options.run("loss", .loss(hosts: try hostList(hosts, option: "hosts"), probability: probability)) }
}

struct NetBandwidth: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bandwidth",
        abstract: "Limit a host's bandwidth with a token bucket (tc tbf) on its interface.")
    @Argument(help: "Hosts (network namespaces, globs).") var hosts: [String] = []
    @Option(help: "The rate, in tc's units: 500kbit, 1mbit, 10mbit, 1gbit.") var rate: String
    @Option(help: "out: what the host sends; in: what it receives (on the veth's other end); both (default).")
    var direction: String = "both"
    @OptionGroup var options: NetFaultOptions

    func validate() throws {
        if hosts.isEmpty { throw ValidationError("name at least one host (a network namespace)") }
        guard BandwidthRate.bytesPerSecond(rate) != nil else { throw ValidationError("--rate takes a number with bit, kbit, mbit or gbit (per second), e.g. 1mbit, not '\(rate)'") }
        guard BandwidthDirection(rawValue: direction) != nil else { throw ValidationError("--direction takes out, in or both, not '\(direction)'") }
    }

    func run() throws {
        try options.run("bandwidth", .bandwidth(hosts: try hostList(hosts, option: "hosts"), rate: rate, direction: BandwidthDirection(rawValue: direction)!))
    }
}

struct NetLatency: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "Delay what a host sends (tc netem), where the kernel has netem; otherwise says so and exits 1.",
        discussion: NetEm.missingMessage + ".")
    @Argument(help: "Hosts (network namespaces, globs).") var hosts: [String] = []
    @Option(help: "The delay (250ms, 1s; a unit is required).") var delay: String
    @Option(help: "+- this much (a unit is required).") var jitter: String?
    @OptionGroup var options: NetFaultOptions

    func validate() throws {
        if hosts.isEmpty { throw ValidationError("name at least one host (a network namespace)") }
        _ = try unitDuration(delay, option: "--delay")
        if let jitter { _ = try unitDuration(jitter, option: "--jitter") }
    }

    func run() throws {
        // Said plainly, before anything is recorded or touched.
        guard NetEm.available() else { throw Failure("szchaos net latency: " + NetEm.missingMessage) }
        try options.run("latency", .latency(hosts: try hostList(hosts, option: "hosts"), delay: try unitDuration(delay, option: "--delay"),
                                            jitter: try jitter.map { try unitDuration($0, option: "--jitter") } ?? .zero))
    }
}

struct NetList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Heal the faults whose owner is gone, then list the network faults in force.")
    @Flag(help: "Print one JSON record.") var json = false

    func run() throws {
        let store = NetFaultStore()
        let healed = store.sweepStale()
        let (records, unreadable) = store.records()
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            let faults = records.compactMap { try? JSON.parse(Array(enc.encode($0))) }
            let out: JSONValue = .object([
                "directory": .string(store.directory),
                "healed": .array(healed.map { .object(["id": .string($0.id), "fault": .string($0.fault), "owner_pid": .int(Int64($0.ownerPid)),
                                                        "problems": .array($0.problems.map { .string($0) })]) }),
                "faults": .array(faults), "unreadable": .array(unreadable.map { .string($0) }),
            ])
            print(JSON.string(out))
        } else {
            for h in healed { print(h) }
            if records.isEmpty { print("no network fault in force (\(store.directory))") }
            for r in records {
                let until = r.until.map { String(format: "%.1fs left", max(0, $0 - Date().timeIntervalSince1970)) } ?? "until stopped"
                print("\(r.id)  owner pid \(r.owner.pid)  \(until)  \(r.fault)")
            }
            for u in unreadable { print("unreadable record (left alone): \(u)") }
        }
        fflush(nil)
        if healed.contains(where: { !$0.problems.isEmpty }) { throw ExitCode(1) }
    }
}

struct NetHeal: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heal",
        abstract: "Undo network faults: those whose owner is gone (always), the ids named, or --all.")
    @Argument(help: "Ids of faults to undo (from `szchaos net list`).") var ids: [String] = []
    @Flag(help: "Undo every fault in force, also those whose szchaos is still running.") var all = false

    func run() throws {
        let store = NetFaultStore()
        var reports = store.sweepStale()
        let records = store.records().records
        var missing: [String] = []
        for id in ids where !records.contains(where: { $0.id == id }) && !reports.contains(where: { $0.id == id }) { missing.append(id) }
        for r in records where all || ids.contains(r.id) { reports.append(store.heal(r, reason: "asked")) }
        for r in reports { print(r) }
        if reports.isEmpty { print("nothing to heal (\(store.directory))") }
        let left = store.records().records
        if !left.isEmpty && !all { print("\(left.count) fault(s) in force with a live owner: heal ID or --all") }
        fflush(nil)
        if !missing.isEmpty { throw Failure("szchaos net heal: no fault \(missing.joined(separator: ", ")) (szchaos net list)") }
        if reports.contains(where: { !$0.problems.isEmpty }) { throw ExitCode(1) }
    }
}
