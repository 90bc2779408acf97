// What `szgovernor down` and `status` do when no governor answers on the control endpoint: work from the
// PID files alone. Nothing is signalled unless its identity (PID + start time + executable) verifies AND it
// carries this deployment's marker in its environment.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public enum GovernorOffline {
    public struct DownReport: Sendable {
        /// Orphans stopped (their groups SIGTERM, SIGKILL after the timeout).
        public var stopped: [String] = []
        /// PID files removed without signalling anything, with the reason.
        public var removed: [String: String] = [:]
        /// Process cgroups that still held processes (killed with cgroup.kill, then removed).
        public var cgroupKilled: [String] = []
        /// A governor that held the lock without answering, stopped by signal.
        public var unresponsiveGovernor: Int32?
    }

    /// The governor recorded in `pids/governor.pid` when it is alive (verified identity) and really holds
    /// this deployment's lock, else nil.
    public static func liveGovernor(_ locator: DeploymentLocator) -> ProcessIdentity? {
        try? verifiedGovernor(locator)
    }

    /// The process `pids/governor.pid` names, when it may be signalled as this deployment's governor: its
    /// identity verifies (PID + start time + executable), it holds this deployment's `governor.lock` (the
    /// kernel's lock list, `DeploymentLock.isHeld`), and it is neither PID 1 nor this process. Otherwise
    /// throws `GovernorError.unverifiedGovernor` saying which check failed.
    public static func verifiedGovernor(_ locator: DeploymentLocator) throws(GovernorError) -> ProcessIdentity {
        let lockPath = locator.path("governor.lock")
        let record = try? PidFile.read(locator.governorPidFile)
        func refuse(_ reason: String) -> GovernorError {
            .unverifiedGovernor(deployment: locator.deploymentName, pid: record?.pid, lockPath: lockPath, reason: reason)
        }
        guard let record else { throw refuse("cannot be read") }
        if record.pid == 1 { throw refuse("is PID 1 (never signalled)") }
        if record.pid == getpid() { throw refuse("is this very process (never signalled)") }
        guard case .alive(let identity) = PidFile.verify(record) else {
            throw refuse("does not verify: \(PidFile.verify(record))")
        }
        guard DeploymentLock.isHeld(by: identity.pid, lockPath: lockPath) else {
            throw refuse("does not hold the deployment lock")
        }
        return identity
    }

    /// Stops everything the deployment's PID files name (orphans included), removes the files and the
    /// leftover socket and ready files in run/, under the deployment lock. A governor that holds the lock
    /// but did not answer is sent SIGTERM (then SIGKILL after `governorTimeout`) first.
    public static func down(_ locator: DeploymentLocator, stopTimeout: Duration = .seconds(5),
                            governorTimeout: Duration = .seconds(15)) async throws -> DownReport {
        var report = DownReport()
        let directory = locator.directory
        var st = stat()
        guard lstat(directory.path, &st) == 0 else { return report }
        var lock: DeploymentLock
        do {
            lock = try DeploymentLock.acquire(deployment: locator.deploymentName, directory: directory)
        } catch {
            guard case .deploymentLocked = error else { throw error }
            // Only the verified holder of this deployment's lock is ever signalled (never PID 1, never us).
            let holder = try verifiedGovernor(locator)
            report.unresponsiveGovernor = holder.pid
            _ = await Reconciler.stopOrphanProcess(holder, timeout: governorTimeout)
            lock = try DeploymentLock.acquire(deployment: locator.deploymentName, directory: directory)
        }
        defer { lock.release() }
        let events = LifecycleLog(path: locator.path("events.jsonl"))
        let r = await Reconciler.reconcile(pidsDirectory: locator.path("pids"), deploymentDirectory: directory.path,
                                           stopTimeout: stopTimeout, events: events,
                                           deploymentName: locator.deploymentName)
        report.stopped = r.stopped
        report.removed = r.removed
        report.cgroupKilled = r.cgroupKilled
        cleanRunDirectory(locator)
        events.record("governor", .governorStopped, pid: getpid(), detail: "down without a running governor")
        return report
    }

    /// Removes sockets, ready files and the control endpoint left in `run/` (a governor owns that folder).
    public static func cleanRunDirectory(_ locator: DeploymentLocator, keeping: Set<String> = []) {
        let run = locator.path("run")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? [] where !keeping.contains(name) {
            let path = (run as NSString).appendingPathComponent(name)
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFSOCK || name.hasSuffix(".ready") { unlink(path) }
        }
    }

    /// Status rows from PID files (no governor running).
    public static func statusRows(_ locator: DeploymentLocator) -> [StatusRow] {
        let pids = locator.path("pids")
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: pids)) ?? [])
            .filter { $0.hasSuffix(".pid") && $0 != "governor.pid" }.sorted()
        return files.map { file in
            let name = String(file.dropLast(4))
            let path = (pids as NSString).appendingPathComponent(file)
            let record = try? PidFile.read(path)
            switch PidFile.verify(path) {
            case .alive(let id):
                let ours = processEnvironmentValue(pid: id.pid, name: Reconciler.markerVariable) == locator.directory.path
                return StatusRow(name: name, role: name == "server" ? "server" : "handler",
                                 status: ours ? "orphan" : "foreign", pid: id.pid, restarts: nil, endpoint: nil,
                                 note: ours ? "alive without a governor: `szgovernor down` stops it, `up` adopts or stops it"
                                            : "the PID now names another process: not ours")
            case let verdict:
                return StatusRow(name: name, role: name == "server" ? "server" : "handler", status: "stale",
                                 pid: record?.pid, restarts: nil, endpoint: nil, note: verdict.description)
            }
        }
    }
}
