// `szgovernor up --detach`: the governor started in the background and waited for, and the wait for a
// governor's exit after `down`. The command line only parses and prints (issue 12).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ScheduleZeroWire

public enum GovernorLauncher {
    /// A governor running in the background with every process of its deployment running.
    public struct Detached: Sendable {
        /// The governor: a session of its own, its output in `log`.
        public let governor: ChildProcess
        /// `<root>/<deployment>/logs/governor.log`.
        public let log: String
        /// The governor's `status` reply that found every process running (`http_port`, `process_tree`, `processes`).
        public let status: Reply
        /// The processes of `status`.
        public let rows: [StatusRow]
    }

    /// Why a detached start failed; the text is what `szgovernor` prints.
    public struct LaunchError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Re-executes the running program (szgovernor) as `up` in a session of its own with output to
    /// governor.log, then waits until it answers and every process is running (and, with `httpPort`, HTTP
    /// serves), or it exits: then its log tail is the error. `readyTimeout` is the option's text as given
    /// (checked by `DurationText.option`; 2m when it does not read), named in the not-ready error.
    public static func upDetached(_ locator: DeploymentLocator, httpPort: Int?, readyTimeout: String) throws(LaunchError) -> Detached {
        do {
            _ = try DeploymentFile.load(path: locator.file, variables: BuildVariables.variables(), deploymentsRoot: locator.root)
        } catch {
            throw LaunchError("\(error)")
        }
        // The folder and its subfolders checked (no symbolic link) and made owner-only before the log opens.
        do { try DeploymentFolder.prepare(locator.directory.path) } catch { throw LaunchError("\(error)") }
        let log = locator.path("logs/governor.log")
        var args = ["up", "--deployment", locator.deploymentName, "--root", locator.root, "--file", locator.file]
        if let p = httpPort { args += ["--http-port", "\(p)"] }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let child: ChildProcess
        do {
            child = try Spawner.spawn(SpawnRequest(executable: exe, arguments: args,
                                                   environment: Foundation.ProcessInfo.processInfo.environment,
                                                   logPath: log, killGroupOnExit: false))
        } catch {
            throw LaunchError("cannot start the governor: \(error)")
        }
        let deadline = ContinuousClock.now + (DurationText.value(readyTimeout) ?? .seconds(120))
        while ContinuousClock.now < deadline {
            if let exit = child.exitStatus {
                let tail = RotatedLog.tail(of: log, lines: 15).joined(separator: "\n  ")
                throw LaunchError("the governor exited (\(exit)) before the deployment was ready; \(log):\n  \(tail)")
            }
            if let reply = ControlClient.call(locator, "status", timeout: .milliseconds(500)), reply.success {
                let rows = (reply["processes"]?.arrayValue ?? []).compactMap { StatusRow(json: $0) }
                // Up means every process running and, when asked for, HTTP serving (it starts right after).
                let httpReady = httpPort == nil || reply["http_port"]?.intValue != nil
                if !rows.isEmpty, rows.allSatisfy({ $0.status == "running" }), httpReady {
                    return Detached(governor: child, log: log, status: reply, rows: rows)
                }
            }
            usleep(20_000)
        }
        throw LaunchError("the deployment was not ready within \(readyTimeout); the governor (pid \(child.pid)) keeps trying: see \(log), `szgovernor status`, `szgovernor down`")
    }

    /// Waits until process `pid` has exited (its pidfd becomes readable: no polling), at most `timeout`.
    public static func waitUntilGone(_ pid: pid_t, timeout: Duration) {
        let fd = SystemCalls.pidfdOpen(pid)
        guard fd >= 0 else { return }  // already gone
        defer { close(fd) }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = CInt(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        while poll(&p, 1, ms) == -1 && errno == EINTR {}
    }
}
