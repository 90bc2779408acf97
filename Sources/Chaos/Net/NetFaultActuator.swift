import Foundation
import Governor
import ScheduleZeroWire

/// Applies an experiment's network faults (`partition`, `loss`, `bandwidth`, `latency`) to hosts (network
/// namespaces), through `NetFaults`: each recorded in the `NetFaultStore` before it is applied, so a run that
/// is killed leaves records the next `szchaos net` command heals.
public final class NetFaultActuator: FaultActuator, @unchecked Sendable {
    public let name = "net"
    public let kinds: Set<FaultKind> = [.partition, .loss, .bandwidth, .latency]
    public let store: NetFaultStore
    private let lock = NSLock()
    private var applied: [Int: NetFaultRecord] = [:]
    /// Held for the whole of an apply and of `healAll`: an interrupt that heals while a fault is being applied
    /// on another thread waits for it, so no step is added after the heal (seen: a SIGINT during the apply
    /// left the steps applied after it). `closed` refuses faults after `healAll`.
    private let applyLock = NSLock()
    private var closed = false

    public init(store: NetFaultStore = NetFaultStore()) { self.store = store }

    public func candidates(for kind: FaultKind) async throws -> [String] {
        try await onOwnThread("net-hosts") { Result { try NetHosts.names() } }.get()
    }

    /// The fault an experiment entry means, for its chosen targets among `candidates`.
    public static func fault(for f: ScheduledFault, candidates: [String]) throws(NetFaultError) -> NetFault {
        func names(_ v: JSONValue?) -> [String] { v?.arrayValue?.compactMap(\.stringValue) ?? [] }
        switch f.kind {
        case .partition:
            if let b = f.params["between"]?.arrayValue { return .partition(groups: b.map { names($0) }) }
            if f.params["from"] != nil { return .oneWay(from: names(f.params["from"]), to: names(f.params["to"])) }
            if f.params["mode"]?.stringValue == "isolate" { return .isolate(hosts: f.targets) }
            let include = names(f.params["pool"]), exclude = names(f.params["pool_exclude"])
            let others = candidates.filter { c in
                !f.targets.contains(c) && include.contains { TargetSelector.matches(c, $0) } && !exclude.contains { TargetSelector.matches(c, $0) }
            }
            guard !others.isEmpty else {
                throw .invalid("partition \(f.name): the targets \(f.targets.joined(separator: ", ")) are every host matching \(include.joined(separator: ", ")): nothing on the other side (set targets.limit, or use between)")
            }
            return .partition(groups: [f.targets, others.sorted()])
        case .loss:
            return .loss(hosts: f.targets, probability: f.params["probability"]?.doubleValue ?? 0)
        case .bandwidth:
            return .bandwidth(hosts: f.targets, rate: f.params["rate"]?.stringValue ?? "",
                              direction: BandwidthDirection(rawValue: f.params["direction"]?.stringValue ?? "both") ?? .both)
        case .latency:
            return .latency(hosts: f.targets, delay: .milliseconds(f.params["delay"]?.intValue ?? 0),
                            jitter: .milliseconds(f.params["jitter"]?.intValue ?? 0))
        default:
            throw .invalid("\(f.kind.rawValue) is not a network fault")
        }
    }

    public func start(_ f: ScheduledFault) async throws -> String {
        let store = self.store
        let until = Date().timeIntervalSince1970 + f.duration.secondsValue
        let record = try await onOwnThread("net-fault") { () -> Result<NetFaultRecord, Error> in
            self.applyLock.withLock {
                Result {
                    if self.closed { throw NetFaultError.state("not applied: the run is being stopped") }
                    let fault = try Self.fault(for: f, candidates: (try? NetHosts.names()) ?? [])
                    let record = try NetFaults.apply(fault, store: store, until: until)
                    self.lock.withLock { self.applied[f.index] = record }
                    return record
                }
            }
        }.get()
        return "applied \(record.id): \(record.fault)"
    }

    public func stop(_ f: ScheduledFault) async throws -> String? {
        guard let record = lock.withLock({ applied.removeValue(forKey: f.index) }) else { return nil }
        let store = self.store
        let heal = await onOwnThread("net-heal") { store.heal(record, reason: "stopped") }
        guard heal.problems.isEmpty else { throw NetFaultError.command("undoing \(record.id) left behind: \(heal.problems.joined(separator: "; "))") }
        return "undone \(record.id): every rule and qdisc removed"
    }

    /// Undoes every fault this process has in force (an interrupted run): those this actuator applied, and any
    /// record the store holds in this process's name (a fault interrupted between its record and its steps).
    /// Blocking: any thread but the pool's.
    @discardableResult
    public func healAll() -> [NetHealReport] {
        applyLock.withLock { () -> [NetHealReport] in
            closed = true
            return healAllLocked()
        }
    }

    private func healAllLocked() -> [NetHealReport] {
        var records = lock.withLock { () -> [NetFaultRecord] in
            let r = Array(applied.values)
            applied.removeAll()
            return r
        }
        if let me = ProcessIdentity.of(pid: getpid()) {
            for r in store.records().records where r.owner.pid == me.pid && r.owner.startTime == me.startTime && !records.contains(where: { $0.id == r.id }) {
                records.append(r)
            }
        }
        return records.map { store.heal($0, reason: "stopped") }
    }

    /// `store.sweepStale()` on a thread of its own, for async callers.
    public func sweepStaleAsync() async -> [NetHealReport] {
        let store = self.store
        return await onOwnThread("net-sweep") { store.sweepStale() }
    }

    /// `healAll` on a thread of its own, for async callers.
    public func healAllAsync() async -> [NetHealReport] {
        await onOwnThread("net-heal-all") { self.healAll() }
    }
}
