// What `szgovernor status` reports, whether a governor answers or not: one JSON schema either way, the text
// form, and the verdict behind the exit status (0 every process running, 3 not running or not all healthy,
// as `systemctl status` and `supervisorctl status` do).
import Foundation
import ScheduleZeroWire

public struct StatusReport: Sendable {
    /// The JSON document (`status --json`); the same keys whether the governor answered or not. `success` is
    /// `healthy`, as every tool's `--json` says `success` exactly when it exits 0.
    public var json: JSONValue
    /// The text form: a header line, the process-tree line, the table, the stop escalations.
    public var text: String
    /// The governor answered and every process is `running`.
    public var healthy: Bool

    /// The exit status of `status`: 0 healthy, 3 otherwise.
    public var exitCode: Int32 { healthy ? 0 : 3 }

    /// The keys every process object carries (null where unknown), live or read from PID files.
    public static let processKeys = ["name", "role", "status", "pid", "restart_count", "endpoint", "last_error",
                                     "exit_code", "exit_signal", "start_time", "note"]
    /// The keys of the document.
    public static let documentKeys = ["deployment", "governor_running", "governor_pid", "success", "note", "file",
                                      "control", "http_port", "process_tree", "processes", "killed_at_stop"]

    /// Asks the governor of `locator` (`ask` sends one control request), or reads the PID files when none answers.
    public static func gather(_ locator: DeploymentLocator, ask: (String) -> Reply?) -> StatusReport {
        if let reply = ask("status"), reply.success {
            // Processes of this governor's run that ignored SIGTERM and were killed at their stop timeout.
            let killed = LifecycleLog.escalations(LifecycleLog.read(locator.path("events.jsonl")), currentRun: true)
            return live(locator, reply: reply, killed: killed)
        }
        return offline(locator)
    }

    static func live(_ locator: DeploymentLocator, reply: Reply, killed: [StopEscalation]) -> StatusReport {
        let processes = (reply["processes"]?.arrayValue ?? []).map(normalised)
        let healthy = !processes.isEmpty && processes.allSatisfy { $0.objectValue?["status"]?.stringValue == "running" }
        let doc = document(locator, running: true, pid: reply["governor_pid"], healthy: healthy, note: nil,
                           file: reply["file"], httpPort: reply["http_port"], tree: reply["process_tree"],
                           processes: processes, killed: killed.map(\.json))
        let rows = processes.compactMap { StatusRow(json: $0) }
        var lines = ["deployment \"\(locator.deploymentName)\": governor pid \(reply["governor_pid"]?.intValue.map(String.init) ?? "?")",
                     processTreeLine(reply["process_tree"]), StatusRow.table(rows)]
        lines += killed.map(\.line)
        return StatusReport(json: doc, text: lines.joined(separator: "\n"), healthy: healthy)
    }

    static func offline(_ locator: DeploymentLocator) -> StatusReport {
        let rows = GovernorOffline.statusRows(locator)
        let holder = GovernorOffline.liveGovernor(locator)
        var note = "no governor is running deployment \"\(locator.deploymentName)\" under \(locator.root) (root: \(locator.rootOrigin))"
            + (rows.isEmpty ? "" : "; from PID files")
        if let holder {
            note = "governor pid \(holder.pid) holds deployment \"\(locator.deploymentName)\" but does not answer yet (starting?)"
                + (rows.isEmpty ? "" : "; from PID files")
        }
        if holder == nil, let group = ProcessTree.existingDeploymentGroup(name: locator.deploymentName, folder: locator.directory.path) {
            note += "; cgroup \(group) is left by an earlier governor (`szgovernor down` kills what is in it and removes it)"
        }
        let processes: [JSONValue] = rows.map { r in
            normalised(.object(["name": .string(r.name), "role": .string(r.role), "status": .string(r.status),
                                "pid": r.pid.map { .int(Int64($0)) } ?? .null, "note": r.note.map { .string($0) } ?? .null]))
        }
        let doc = document(locator, running: false, pid: holder.map { .int(Int64($0.pid)) }, healthy: false, note: note,
                           file: nil, httpPort: nil, tree: nil, processes: processes, killed: [])
        return StatusReport(json: doc, text: rows.isEmpty ? note : note + "\n" + StatusRow.table(rows), healthy: false)
    }

    static func document(_ locator: DeploymentLocator, running: Bool, pid: JSONValue?, healthy: Bool, note: String?,
                         file: JSONValue?, httpPort: JSONValue?, tree: JSONValue?, processes: [JSONValue],
                         killed: [JSONValue]) -> JSONValue {
        .object([
            "deployment": .string(locator.deploymentName), "governor_running": .bool(running), "governor_pid": pid ?? .null,
            "success": .bool(healthy), "note": note.map { .string($0) } ?? .null, "file": file ?? .null,
            "control": .string(locator.controlEndpoint), "http_port": httpPort ?? .null, "process_tree": tree ?? .null,
            "processes": .array(processes), "killed_at_stop": .array(killed),
        ])
    }

    /// A process object with every key of `processKeys` (null where unknown), and what else it carries (`link`, ...).
    static func normalised(_ p: JSONValue) -> JSONValue {
        var o = p.objectValue ?? [:]
        for k in processKeys where o[k] == nil { o[k] = .null }
        return .object(o)
    }

    /// `process trees: cgroup PATH` or `process trees: process group only (WHY)` from a status reply.
    public static func processTreeLine(_ tree: JSONValue?) -> String {
        let o = tree?.objectValue ?? [:]
        switch o["mode"]?.stringValue {
        case "cgroup"?: return "process trees: cgroup \(o["cgroup"]?.stringValue ?? "?")"
        case "process-group"?:
            return "process trees: process group only, a descendant that calls setsid escapes it (\(o["reason"]?.stringValue ?? "?"))"
        default: return "process trees: not decided (the governor has not started its processes)"
        }
    }
}
