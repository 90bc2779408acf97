// Readiness: a process is `running` only when its probe passes; a probe that has not passed by its
// deadline is a failed start. The governor races every probe against the child's exit, so a probe need
// not watch for death itself.
//
// The ZeroMQ `ping` probe (PingProbe.swift) is registered by default under `ping` and `zmq-ping`;
// deployment files select it with `readiness: ping` or `readiness: {ping: ENDPOINT, within: 50ms}`.
import ScheduleZeroWire
import Foundation

/// What a deployment asks for.
public enum ReadinessSpec: Sendable, Hashable {
    /// Running as soon as it is spawned.
    case none
    /// Running when the file at `path` exists (the child writes it once it serves).
    case readyFile(path: String, timeout: Duration)
    /// A probe registered under `kind` (phase 2: "zmq-ping"), with its settings.
    case custom(kind: String, settings: [String: String], timeout: Duration)

    public var timeout: Duration? {
        switch self {
        case .none: return nil
        case .readyFile(_, let t), .custom(_, _, let t): return t
        }
    }
}

/// What a probe gets to know about the process.
public struct ReadinessTarget: Sendable {
    public var name: String
    public var pid: Int32
    public var endpoint: String?
    public var config: HandlerConfig
}

public protocol ReadinessProbe: Sendable {
    /// Called before the child is spawned (e.g. to remove a stale ready file).
    func prepare(for config: HandlerConfig) throws
    /// Returns when ready; throws `ReadinessError.timedOut` at `deadline`, CancellationError when cancelled.
    func waitUntilReady(_ target: ReadinessTarget, deadline: ContinuousClock.Instant) async throws
}

extension ReadinessProbe {
    public func prepare(for config: HandlerConfig) throws {}
}

/// When a probe that polls may give up: only once the deadline has passed AND its last attempt started
/// within one cycle (an attempt's timeout plus the pause) before it, so that the verdict rests on a look at
/// the process taken at the deadline. After a stall of the prober (a loaded machine: 16 s once) the last
/// result can be seconds older than the deadline, from before the process had even bound its socket, and a
/// healthy service was declared "not ready" on it. One more attempt after the deadline always satisfies this.
public enum ReadinessDeadline {
    public static func mayGiveUp(now: ContinuousClock.Instant, deadline: ContinuousClock.Instant,
                                 lastAttemptStart: ContinuousClock.Instant?, cycle: Duration) -> Bool {
        guard now >= deadline, let start = lastAttemptStart else { return false }
        return start >= deadline - cycle
    }
}

public enum ReadinessError: Error, Equatable, CustomStringConvertible {
    case timedOut(name: String, waitingFor: String, after: Duration)
    case exited(name: String, status: ExitStatus)
    case unknownKind(String, known: [String])

    public var description: String {
        switch self {
        case .timedOut(let name, let what, let after):
            return "\(name) was not ready after \(DurationText.format(after)) (waiting for \(what))"
        case .exited(let name, let status): return "\(name) exited before it was ready (\(status))"
        case .unknownKind(let kind, let known):
            return "readiness kind \"\(kind)\" has no probe registered (known: \(known.joined(separator: ", ")))"
        }
    }
}

/// `.none`: ready once spawned.
public struct NoReadinessProbe: ReadinessProbe {
    public init() {}
    public func waitUntilReady(_ target: ReadinessTarget, deadline: ContinuousClock.Instant) async throws {}
}

/// Ready when a file exists. Polls every `interval` (a few ms; a stat is cheap) until the deadline.
public struct ReadyFileProbe: ReadinessProbe {
    public let path: String
    public let interval: Duration

    public init(path: String, interval: Duration = .milliseconds(2)) {
        self.path = path
        self.interval = interval
    }

    /// Removes a ready file left by an earlier run, so it cannot pass the new probe.
    /// The path lies inside the deployment folder (checked at load); its folder must not be a symbolic
    /// link (unlink(2) then removes the file or link itself, never a target elsewhere).
    public func prepare(for config: HandlerConfig) throws {
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: Int(DeploymentFolder.directoryMode)])
        var st = stat()
        guard lstat(folder, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw GovernorError.unsafePath(path: folder, reason: "the ready file's folder is not a directory (a symbolic link?)")
        }
        unlink(path)
    }

    public func waitUntilReady(_ target: ReadinessTarget, deadline: ContinuousClock.Instant) async throws {
        let started = ContinuousClock.now
        while !FileManager.default.fileExists(atPath: path) {
            if ContinuousClock.now >= deadline {
                throw ReadinessError.timedOut(name: target.name, waitingFor: "ready file \(path)",
                                              after: ContinuousClock.now - started)
            }
            try await EventLoop.shared.sleep(for: interval)
        }
    }
}

/// Maps a `ReadinessSpec` to a probe. Register extra kinds (phase 2: the ZeroMQ ping) with `register`.
public struct ReadinessProbes: Sendable {
    public typealias Factory = @Sendable (_ settings: [String: String], _ config: HandlerConfig) throws -> any ReadinessProbe
    private var factories: [String: Factory] = [:]

    /// The built-in kinds: none, ready-file, the ZeroMQ `ping` (also `zmq-ping`) and `http` (HTTPProbe.swift).
    public init() {
        for kind in PingProbe.kinds { factories[kind] = { settings, _ in try PingProbe(settings: settings) } }
        factories[HTTPReadinessProbe.kind] = { settings, _ in try HTTPReadinessProbe(settings: settings) }
    }

    public mutating func register(kind: String, _ factory: @escaping Factory) { factories[kind] = factory }

    public var kinds: [String] { ["none", "ready-file"] + factories.keys.sorted() }

    public func probe(for config: HandlerConfig) throws -> any ReadinessProbe {
        switch config.readiness {
        case .none: return NoReadinessProbe()
        case .readyFile(let path, _): return ReadyFileProbe(path: path)
        case .custom(let kind, let settings, _):
            guard let factory = factories[kind] else { throw ReadinessError.unknownKind(kind, known: kinds) }
            return try factory(settings, config)
        }
    }
}
