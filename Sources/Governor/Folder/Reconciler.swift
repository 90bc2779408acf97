// Reconciling PID files left by an earlier governor (one that was SIGKILLed, or upstream's).
//
// For each `<deploymentDir>/pids/<name>.pid` (but governor.pid):
//   - the recorded identity is alive, matches, AND the process carries this deployment's marker in its
//     environment (SZGOVERNOR_DIR, set on every child we spawn): an orphan of ours -> stopped with its group
//     (SIGTERM, SIGKILL after the timeout), file removed;
//   - anything else (dead, PID reused, forged, bare upstream file, alive but not ours) -> file removed,
//     NOTHING signalled.
// Then the deployment's cgroup (`szgovernor/<id of this folder>`, ProcessTree.swift), when an earlier
// governor left one: whatever is still in its process cgroups (a setsid grandchild of an orphan, say) is
// killed (`cgroup.kill`: only a governor of this folder puts processes there), and the groups are removed.
// The pidfd is opened before the identity is checked a second time, so the signal cannot reach a process
// that took the PID in between.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public struct ReconcileReport: Sendable, Hashable {
    /// Orphans of ours that were stopped.
    public var stopped: [String] = []
    /// Files removed without signalling anything, with the reason.
    public var removed: [String: String] = [:]
    /// Process cgroups of an earlier governor that still held processes (killed with cgroup.kill).
    public var cgroupKilled: [String] = []
}

public enum Reconciler {
    /// The environment variable that marks a child as belonging to a deployment folder.
    public static let markerVariable = "SZGOVERNOR_DIR"

    public static func reconcile(pidsDirectory: String, deploymentDirectory: String, stopTimeout: Duration,
                                 events: LifecycleLog, deploymentName: String? = nil) async -> ReconcileReport {
        var report = ReconcileReport()
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: pidsDirectory)) ?? [])
            .filter { $0.hasSuffix(".pid") && $0 != "governor.pid" }.sorted()
        for file in files {
            let path = (pidsDirectory as NSString).appendingPathComponent(file)
            let name = String(file.dropLast(4))
            let verdict = PidFile.verify(path)
            if case .alive(let identity) = verdict {
                let marker = processEnvironmentValue(pid: identity.pid, name: markerVariable)
                if marker == deploymentDirectory {
                    if await stopOrphan(identity, timeout: stopTimeout) {
                        report.stopped.append(name)
                        events.record(name, .orphanStopped, pid: identity.pid, detail: "orphan of an earlier governor")
                    } else {
                        let reason = "\(identity) could not be pinned down (it exited or changed while checked): not signalled"
                        report.removed[name] = reason
                        events.record(name, .staleRemoved, detail: reason)
                    }
                } else {
                    let seen = marker.map { "\(markerVariable)=\($0)" } ?? "no \(markerVariable)"
                    let reason = "\(identity) is alive but not a child of this deployment (\(seen)): not signalled"
                    report.removed[name] = reason
                    events.record(name, .staleRemoved, detail: reason)
                }
            } else {
                let reason = verdict.description
                report.removed[name] = reason
                events.record(name, .staleRemoved, detail: reason)
            }
            PidFile.remove(path)
        }
        if let deploymentName,
           let group = ProcessTree.existingDeploymentGroup(name: deploymentName, folder: deploymentDirectory) {
            let leftovers = await BlockingPool.shared.run {
                ProcessTree.removeDeploymentGroup(group, timeout: stopTimeout + .seconds(5))
            }
            for name in leftovers {
                report.cgroupKilled.append(name)
                events.record(name, .orphanStopped, detail: "killed what was left in cgroup \(group)/\(name)")
            }
        }
        return report
    }

    /// Stops a verified live process (and its group when it leads one): SIGTERM, SIGKILL after `timeout`.
    /// Returns false when it could not be pinned down (nothing was signalled).
    public static func stopOrphanProcess(_ identity: ProcessIdentity, timeout: Duration) async -> Bool {
        await stopOrphan(identity, timeout: timeout)
    }

    /// Stops a verified orphan and its group. Returns false if it could not be pinned down (then nothing
    /// was signalled).
    static func stopOrphan(_ identity: ProcessIdentity, timeout: Duration) async -> Bool {
        guard identity.pid > 1, identity.pid != getpid() else { return false }  // never init, never ourselves
        let pidfd = SystemCalls.pidfdOpen(identity.pid)
        guard pidfd >= 0 else { return false }
        defer { close(pidfd) }
        guard let again = ProcessIdentity.of(pid: identity.pid), again.matches(identity) else { return false }
        let leadsGroup = ProcStat.read(pid: identity.pid)?.processGroup == identity.pid
        func send(_ signal: CInt) {
            if leadsGroup { kill(-identity.pid, signal) } else { _ = SystemCalls.pidfdSendSignal(pidfd, signal) }
        }
        send(SIGTERM)
        // The pidfd becomes readable when the process exits: waited for on the event loop, no thread.
        let exited = await EventLoop.shared.waitReadable(pidfd, timeout: timeout)
        if !exited {
            send(SIGKILL)
            _ = await EventLoop.shared.waitReadable(pidfd, timeout: .seconds(30))
        }
        return true
    }
}
