import Interposer
import ScheduleZeroWire
import Foundation

/// The state of one managed process.
///
///     stopped --start--> starting --probe passes--> running --stop--> stopping --> stopped
///     starting --spawn/probe fails--> backoff | crashed | fatal      (by restart policy)
///     running --exits by itself--> backoff --delay--> starting        (policy restarts)
///                                 | crashed (not restarted) | stopped (clean exit, not restarted)
///                                 | fatal (too many restarts within the window)
///     backoff | crashed | fatal --stop--> stopped;  any --start--> starting
///     running --liveness fails--> unhealthy (being stopped) --> backoff | crashed | fatal   (as a crash)
/// A stop the governor asked for always ends in `stopped`, never `crashed`.
public enum ProcessStatus: String, Sendable, Hashable, Codable, CaseIterable {
    case stopped, starting, running, stopping, backoff, crashed, fatal
    /// Failed its liveness checks; being stopped, then handed to its restart policy. Not healthy.
    case unhealthy
}

/// The role of a process in a deployment: upstream stops handlers first, then the server.
public enum ProcessRole: String, Sendable, Hashable, Codable {
    case server, handler
}

/// A snapshot of one managed process (upstream's ProcessInfo; renamed to avoid Foundation.ProcessInfo).
public struct ManagedProcessInfo: Sendable, Hashable, Codable {
    public var name: String
    public var role: ProcessRole
    public var pid: Int32?
    public var status: ProcessStatus
    /// Restarts the governor made by policy (not operator restarts).
    public var restartCount: Int
    public var lastError: String?
    /// When the current (or last) child was spawned.
    public var startTime: Date?
    /// How the last child ended, if it did.
    public var lastExit: ExitStatus?
    public var endpoint: String?
    /// The interposed link in front of the process, if any.
    public var link: LinkInfo?
    /// Failed liveness checks in a row of the current child; nil when it has no liveness checks running.
    public var livenessFailures: Int?

    public var exitCode: Int32? { lastExit?.exitCode }
    public var exitSignal: Int32? { lastExit?.signal }

    public init(name: String, role: ProcessRole, pid: Int32?, status: ProcessStatus, restartCount: Int,
                lastError: String?, startTime: Date?, lastExit: ExitStatus?, endpoint: String?) {
        self.name = name
        self.role = role
        self.pid = pid
        self.status = status
        self.restartCount = restartCount
        self.lastError = lastError
        self.startTime = startTime
        self.lastExit = lastExit
        self.endpoint = endpoint
    }
}

/// An interposed link as `status` shows it.
public struct LinkInfo: Sendable, Hashable, Codable {
    public var publicEndpoint: String
    public var privateEndpoint: String
    public var control: String
    public var journal: String
    public var requests: Int
    public var delivered: Int
    public var lost: Int
    public var late: Int
    public var duplicateExecutions: Int
    /// The faults in force, as `fault.set` / `set` JSON text.
    public var faults: String

    public init(publicEndpoint: String, privateEndpoint: String, control: String, journal: String,
                counters: LinkCounters, faults: JSONValue) {
        self.publicEndpoint = publicEndpoint
        self.privateEndpoint = privateEndpoint
        self.control = control
        self.journal = journal
        requests = counters.requests
        delivered = counters.delivered
        lost = counters.lost
        late = counters.late
        duplicateExecutions = counters.duplicateExecutions
        self.faults = JSON.string(faults)
    }

    public var json: JSONValue {
        .object([
            "public": .string(publicEndpoint), "private": .string(privateEndpoint), "control": .string(control),
            "journal": .string(journal), "requests": .int(Int64(requests)), "delivered": .int(Int64(delivered)),
            "lost": .int(Int64(lost)), "late": .int(Int64(late)), "duplicate_executions": .int(Int64(duplicateExecutions)),
            "faults": (try? JSON.parse(faults)) ?? .null,
        ])
    }
}
