// The processes of a deployment that faults may hit: read from its PID files (`<root>/<d>/pids/<name>.pid`)
// and verified before anything is done to them. A process is a target only when
//   1. its PID file verifies `.alive` (the PID is alive and its start time and executable match the file), and
//   2. it carries the governor's marker (`SZGOVERNOR_DIR` in its environment = this deployment's folder),
// so a stale file, a reused PID or a forged file naming an unrelated process is reported and skipped.
// `governor` is never a target; `server` only when asked for.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Governor
import ScheduleZeroWire

/// Where a deployment's files are: `<root>/<name>/{pids,run,logs}`.
public struct DeploymentPaths: Sendable, Equatable {
    public var root: String
    public var name: String

    public init(root: String, name: String) throws(NameError) {
        try Names.validateDeployment(name)
        self.root = root
        self.name = name
    }

    /// The default root: `$SZ_DEPLOYMENTS_ROOT`, else found upwards from the current folder as `szgovernor`
    /// finds it (`DeploymentLocator.discoverRoot`).
    public static var defaultRoot: String {
        DeploymentLocator.discoverRoot(option: nil, environment: ProcessInfo.processInfo.environment,
                                       currentDirectory: FileManager.default.currentDirectoryPath).root
    }

    public var directory: String { (root as NSString).appendingPathComponent(name) }
    public var pidsDirectory: String { (directory as NSString).appendingPathComponent("pids") }
    public var runDirectory: String { (directory as NSString).appendingPathComponent("run") }
    public func pidFile(_ process: String) -> String { (pidsDirectory as NSString).appendingPathComponent("\(process).pid") }
    /// The mock handler's control endpoint the deployment files give it: `ipc://<root>/<d>/run/<name>.control`.
    public func controlEndpoint(_ process: String) -> String {
        "ipc://" + absolute((runDirectory as NSString).appendingPathComponent("\(process).control"))
    }

    /// The control endpoint of the interposer in front of a process (`interpose:`): `ipc://<root>/<d>/run/<name>.link`.
    public func linkControlEndpoint(_ process: String) -> String {
        "ipc://" + absolute((runDirectory as NSString).appendingPathComponent("\(process).link"))
    }

    /// Where a message fault for `process` goes: its interposer when it has one (every handler, any code),
    /// else the mock handler's control channel; a crash (a process fault) always to the mock handler. All of
    /// them for `fault.clear`. A failure says how to enable interposition.
    public func faultEndpoints(_ process: String, method: String, params: [String: JSONValue]) -> Result<[String], FaultRouteError> {
        func exists(_ endpoint: String) -> Bool {
            var st = stat()
            return lstat(String(endpoint.dropFirst(6)), &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
        }
        let link = linkControlEndpoint(process), mock = controlEndpoint(process)
        let processFault = params.keys.contains { $0.hasPrefix("crash") || $0 == "ignore_sigterm" }
        var found: [String] = []
        if method == "fault.clear" {
            found = [link, mock].filter(exists)
        } else if processFault {
            found = exists(mock) ? [mock] : []
        } else {
            found = exists(link) ? [link] : exists(mock) ? [mock] : []
        }
        if !found.isEmpty { return .success(found) }
        if processFault {
            return .failure(FaultRouteError(message: "\(process) has no szmock control channel (\(mock)): a crash on command needs szmock; "
                + "use `szchaos kill \(process)` or `szchaos signal \(process) --signal SIGABRT` for any other process"))
        }
        return .failure(FaultRouteError(message: "\(process) has no interposer (\(link)) and no szmock control channel (\(mock)): "
            + "message faults reach any handler through its interposer: add `interpose: true` to \(process) (or under `defaults`) "
            + "in the deployment file and start the deployment again (docs/CHAOS.md, \"Interposed links\")"))
    }

    /// The process names that have a PID file (sorted), `governor` left out.
    public func pidFileNames() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: pidsDirectory)) ?? []
        return files.filter { $0.hasSuffix(".pid") }.map { String($0.dropLast(4)) }
            .filter { $0 != "governor" && (try? Names.validateProcess($0)) != nil }.sorted()
    }
}

func absolute(_ path: String) -> String {
    if path.hasPrefix("/") { return (path as NSString).standardizingPath }
    return ((FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path) as NSString).standardizingPath
}

/// Why a message fault has nowhere to go.
public struct FaultRouteError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// A process that passed verification: safe to signal.
public struct VerifiedTarget: Sendable, Equatable {
    public var name: String
    public var identity: ProcessIdentity
    public var pidFile: String
    /// The process's cgroup when it is this deployment's governor group for it (`szgovernor/<id>/<name>`):
    /// a pause freezes it, the whole tree with it.
    public var cgroup: ProcessCgroup?

    public init(name: String, identity: ProcessIdentity, pidFile: String, cgroup: ProcessCgroup? = nil) {
        self.name = name
        self.identity = identity
        self.pidFile = pidFile
        self.cgroup = cgroup
    }
}

/// A process that did not: why it is left alone.
public struct SkippedTarget: Error, Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var pidFile: String
    public var reason: String
    public var description: String { "\(name): \(reason)" }
}

/// Why no target could be chosen.
public enum TargetError: Error, Equatable, Sendable, CustomStringConvertible {
    case noTargetNamed
    case noMatch(include: [String], exclude: [String], known: [String], serverExcluded: Bool)
    case noneVerified(skipped: [SkippedTarget])

    public var description: String {
        switch self {
        case .noTargetNamed:
            return "no target named: name processes or globs (a fault never hits every process by default)"
        case let .noMatch(inc, exc, known, serverExcluded):
            var s = "no target matches \(inc.joined(separator: " "))"
            if !exc.isEmpty { s += " (excluding \(exc.joined(separator: " ")))" }
            s += "; known: \(known.isEmpty ? "none (no PID files: is the deployment running?)" : known.joined(separator: ", "))"
            if serverExcluded { s += "; the server is excluded unless --include-server" }
            return s
        case let .noneVerified(skipped):
            return "no verified target: " + skipped.map(\.description).joined(separator: "; ")
        }
    }
}

/// What to hit: names or globs, exclusions, the server or not, how many, at random (seeded) or in name order.
public struct TargetQuery: Sendable, Equatable {
    public var include: [String]
    public var exclude: [String]
    public var includeServer: Bool
    public var limit: Int?
    public var random: Bool

    public init(include: [String], exclude: [String] = [], includeServer: Bool = false, limit: Int? = nil, random: Bool = false) {
        self.include = include
        self.exclude = exclude
        self.includeServer = includeServer
        self.limit = limit
        self.random = random
    }
}

/// The result of a selection: the chosen verified targets and what was skipped on the way (with reasons).
public struct TargetSelection: Sendable, Equatable {
    public var chosen: [VerifiedTarget]
    public var skipped: [SkippedTarget]
    /// Every name the patterns matched, verified or not.
    public var matched: [String]
}

public enum DeploymentTargets {
    /// Verifies one process of the deployment: its PID file must verify `.alive`, and the process must carry
    /// the governor's marker for this deployment's folder.
    public static func verify(_ name: String, in paths: DeploymentPaths) -> Result<VerifiedTarget, SkippedTarget> {
        let file = paths.pidFile(name)
        func skip(_ reason: String) -> Result<VerifiedTarget, SkippedTarget> { .failure(SkippedTarget(name: name, pidFile: file, reason: reason)) }
        let verdict = PidFile.verify(file)
        switch verdict {
        case .alive(let identity):
            let marker = processEnvironmentValue(pid: identity.pid, name: Reconciler.markerVariable)
            guard let marker else {
                return skip("pid \(identity.pid) was not started by a governor (no \(Reconciler.markerVariable) in its environment): refusing to signal it")
            }
            guard absolute(marker) == absolute(paths.directory) || realPath(marker) == realPath(paths.directory) else {
                return skip("pid \(identity.pid) belongs to another deployment (\(Reconciler.markerVariable)=\(marker)): refusing to signal it")
            }
            let cgroup = ProcessTree.governorGroup(of: identity.pid, deploymentName: paths.name, folder: marker)
            return .success(VerifiedTarget(name: name, identity: identity, pidFile: file, cgroup: cgroup))
        case .dead(let pid):
            return skip("stale PID file: pid \(pid) is not running")
        case .mismatch:
            return skip("PID file does not match the live process (PID reused or file forged): \(verdict); refusing to signal it")
        case .noIdentity(let pid, let alive):
            return skip("PID file has no identity to verify (pid \(pid), \(alive ? "alive" : "dead")): refusing to signal it")
        case .unreadable(let reason):
            return skip("PID file \(reason)")
        }
    }

    /// Chooses targets: patterns against the names that have PID files, exclusions, the server rule, then
    /// verification (in name order), then `limit` of the verified ones (seeded draw when `random`).
    /// Throws when nothing is named, nothing matches, or nothing matching verifies.
    public static func select(_ query: TargetQuery, in paths: DeploymentPaths, seed: UInt64) throws(TargetError) -> TargetSelection {
        guard !query.include.isEmpty, !query.include.contains(where: \.isEmpty) else { throw .noTargetNamed }
        let known = paths.pidFileNames()
        let allowed = known.filter { query.includeServer || $0 != "server" }
        let matched = allowed.filter { n in
            query.include.contains { Names.matches(n, glob: $0) } && !query.exclude.contains { Names.matches(n, glob: $0) }
        }
        guard !matched.isEmpty else {
            let serverHit = !query.includeServer && known.contains("server") && query.include.contains { Names.matches("server", glob: $0) }
            throw .noMatch(include: query.include, exclude: query.exclude, known: known, serverExcluded: serverHit)
        }
        var verified: [VerifiedTarget] = []
        var skipped: [SkippedTarget] = []
        for n in matched {
            switch verify(n, in: paths) {
            case .success(let t): verified.append(t)
            case .failure(let s): skipped.append(s)
            }
        }
        guard !verified.isEmpty else { throw .noneVerified(skipped: skipped) }
        let byName = Dictionary(uniqueKeysWithValues: verified.map { ($0.name, $0) })
        var rng = SeededGenerator(seed: seed)
        let picker = TargetSelector(include: verified.map(\.name), limit: query.limit, random: query.random)
        let names = (try? picker.choose(from: verified.map(\.name), using: &rng)) ?? []
        return TargetSelection(chosen: names.compactMap { byName[$0] }, skipped: skipped, matched: matched)
    }
}

func realPath(_ p: String) -> String? {
    guard let r = realpath(p, nil) else { return nil }
    defer { free(r) }
    return String(cString: r)
}
