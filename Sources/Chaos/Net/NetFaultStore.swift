#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Governor

/// A network fault in force, as its state file records it: who applied it (the owner's identity: PID, start
/// time, executable) and every step, so that anyone can undo it exactly once the owner is gone.
public struct NetFaultRecord: Codable, Sendable, Equatable {
    public struct Owner: Codable, Sendable, Equatable {
        public var pid: Int32
        public var startTime: UInt64
        public var executable: String?
        public init(pid: Int32, startTime: UInt64, executable: String?) {
            self.pid = pid
            self.startTime = startTime
            self.executable = executable
        }
    }
    public var version = 1
    public var id: String
    public var kind: String
    /// `partition [szh1] | [szh2,szh3]`.
    public var fault: String
    public var owner: Owner
    /// Seconds since 1970.
    public var created: Double
    /// When the owner means to undo it (seconds since 1970); nil: when it is stopped.
    public var until: Double?
    /// Every host (namespace) the fault touches, whether its steps live in the namespace or on the veth's other
    /// end (so `testbed.sh down` can drop the records of the namespaces it removes).
    public var namespaces: [String]
    public var actions: [NetAction]

    public init(id: String, kind: String, fault: String, owner: Owner, created: Double, until: Double?, namespaces: [String],
                actions: [NetAction]) {
        self.id = id
        self.kind = kind
        self.fault = fault
        self.owner = owner
        self.created = created
        self.until = until
        self.namespaces = namespaces
        self.actions = actions
    }

    /// Whether the owner is still the process that applied the fault (PID, start time and executable).
    public var ownerAlive: Bool {
        guard let now = ProcessIdentity.of(pid: owner.pid) else { return false }
        return now.matches(ProcessIdentity(pid: owner.pid, startTime: owner.startTime, executable: owner.executable))
    }
}

/// What healing one record did.
public struct NetHealReport: Sendable, Equatable, CustomStringConvertible {
    public var id: String
    public var fault: String
    public var ownerPid: Int32
    /// Why it was healed: `stale` (its owner is dead), `asked` (heal), `stopped` (its owner's normal end).
    public var reason: String
    /// What could not be undone (empty: all of it).
    public var problems: [String]

    public var description: String {
        "healed \(id) (\(fault); owner pid \(ownerPid)\(reason == "stale" ? ", which is gone" : "")): "
            + (problems.isEmpty ? "every rule and qdisc removed" : "left behind: " + problems.joined(separator: "; "))
    }
}

/// The folder of network fault records: one `<id>.json` per fault in force, owner-only (0600) in a folder
/// only its owner may enter (0700), by default `/run/szchaos/net` (`$SZCHAOS_NET_STATE` overrides it: tests).
/// A record is written before any step of its fault is applied, and removed once every step is undone.
public struct NetFaultStore: Sendable {
    public static let defaultDirectory = "/run/szchaos/net"
    public let directory: String

    public init(directory: String? = nil) {
        self.directory = directory ?? ProcessInfo.processInfo.environment["SZCHAOS_NET_STATE"].flatMap { $0.isEmpty ? nil : $0 }
            ?? Self.defaultDirectory
    }

    /// Makes the folder (0700) if needed and refuses one that is a symbolic link, not a folder, owned by
    /// another user or open to others.
    public func prepare() throws(NetFaultError) {
        // The parents (e.g. /run/szchaos) 0755, the folder itself 0700.
        let parts = directory.split(separator: "/")
        var path = directory.hasPrefix("/") ? "" : "."
        for (i, part) in parts.enumerated() {
            path += "/" + part
            if mkdir(path, i == parts.count - 1 ? 0o700 : 0o755) != 0 && errno != EEXIST {
                throw .state("cannot make \(path): \(String(cString: strerror(errno)))")
            }
        }
        var st = stat()
        guard lstat(directory, &st) == 0 else { throw .state("cannot read \(directory): \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw .state("\(directory) is not a folder (a symbolic link or a file): refused") }
        guard st.st_uid == geteuid() else { throw .state("\(directory) belongs to uid \(st.st_uid), not to this user (uid \(geteuid())): refused") }
        if st.st_mode & 0o077 != 0 { _ = chmod(directory, 0o700) }
    }

    func path(_ id: String) -> String { "\(directory)/\(id).json" }

    /// A fresh id: 8 hex digits (chains are `SZCHAOS-<id>-IN`, within iptables' 28 characters).
    public static func newID() -> String {
        String(format: "%08x", UInt32.random(in: 0x1000_0000...UInt32.max))
    }

    /// Writes a record: to a temporary file (0600, O_EXCL, O_NOFOLLOW), synced, then renamed into place.
    public func write(_ record: NetFaultRecord) throws(NetFaultError) {
        try prepare()
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard let data = try? enc.encode(record) else { throw .state("cannot encode the record of \(record.id)") }
        let tmp = "\(directory)/.\(record.id).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .state("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let ok = data.withUnsafeBytes { b in Glibc.write(fd, b.baseAddress, b.count) == b.count } && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path(record.id)) == 0 else {
            unlink(tmp)
            throw .state("cannot write \(path(record.id)): \(String(cString: strerror(errno)))")
        }
    }

    /// The records in the folder, in id order; files that do not read are returned as problems.
    public func records() -> (records: [NetFaultRecord], unreadable: [String]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return ([], []) }
        var out: [NetFaultRecord] = [], bad: [String] = []
        for n in names.sorted() where n.hasSuffix(".json") && !n.hasPrefix(".") {
            let p = "\(directory)/\(n)"
            var st = stat()
            guard lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid(),
                  let data = FileManager.default.contents(atPath: p),
                  let r = try? JSONDecoder().decode(NetFaultRecord.self, from: data), "\(r.id).json" == n
            else { bad.append(p); continue }
            out.append(r)
        }
        return (out, bad)
    }

    /// Undoes every step of a record, last first, then removes the record (kept, naming what is left, when a
    /// step could not be undone).
    @discardableResult
    public func heal(_ record: NetFaultRecord, reason: String) -> NetHealReport {
        var problems: [String] = []
        for a in record.actions.reversed() { problems += a.undo() }
        if problems.isEmpty { unlink(path(record.id)) }
        return NetHealReport(id: record.id, fault: record.fault, ownerPid: record.owner.pid, reason: reason, problems: problems)
    }

    /// Heals every record whose owner is gone (its PID dead, or now another process: the start time or the
    /// executable differ). Every `szchaos net` command calls this first.
    public func sweepStale() -> [NetHealReport] {
        records().records.filter { !$0.ownerAlive }.map { heal($0, reason: "stale") }
    }
}

/// Applies network faults on behalf of this process: recorded first, then applied; undone by `heal`.
public enum NetFaults {
    /// Plans, records and applies `fault`. On a failure part-way the steps already applied are undone and the
    /// record removed before the error is thrown.
    public static func apply(_ fault: NetFault, store: NetFaultStore = NetFaultStore(), until: Double? = nil) throws(NetFaultError) -> NetFaultRecord {
        try fault.validate()
        if case .latency = fault, !NetEm.available() { throw .netemMissing("probe: tc qdisc add ... netem failed in a scratch namespace") }
        var hosts: [String: NetHost] = [:]
        for n in Set(fault.hosts) { hosts[n] = try NetHosts.host(n) }
        let id = NetFaultStore.newID()
        let actions = try fault.actions(id: id, hosts: hosts)
        guard let me = ProcessIdentity.of(pid: getpid()) else { throw .state("cannot read this process's identity from /proc") }
        let record = NetFaultRecord(id: id, kind: fault.kind, fault: fault.description,
                                    owner: .init(pid: me.pid, startTime: me.startTime, executable: me.executable),
                                    created: Date().timeIntervalSince1970, until: until,
                                    namespaces: Array(Set(fault.hosts + actions.compactMap(\.namespace))).sorted(), actions: actions)
        try store.write(record)
        for (i, a) in actions.enumerated() {
            do { try a.apply() } catch {
                for done in actions[...i].reversed() { _ = done.undo() }
                unlink(store.path(id))
                throw error
            }
        }
        return record
    }
}
