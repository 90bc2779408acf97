// The governor's HTTP face, on 127.0.0.1 when `szgovernor up --http-port N` asks for it (0: a free port):
//   GET /healthz  -> JSON {deployment, healthy, services: {name: bool}}; 200 when every process is
//                    running, 503 otherwise
//   GET /metrics  -> Prometheus text exposition: per process up / restarts / status, restart and ready
//                    latency summaries, governor totals
// FlyingFox serves HTTP (its epoll wait runs on a Dispatch queue of its own, not on the cooperative pool);
// `PrometheusExposition` writes the text format from a snapshot of `metrics()`, in a fixed order, into one
// buffer (docs/ARCHITECTURE.md says why not swift-prometheus).
import Foundation
import FlyingFox
import Governor

public final class GovernorHTTPServer: Sendable {
    private let server: HTTPServer
    private let task: Task<Void, Never>
    public let port: UInt16

    /// Starts listening; returns once the port is bound.
    public init(governor: ProcessGovernor, port: UInt16) async throws {
        let server = HTTPServer(address: try .inet(ip4: "127.0.0.1", port: port), timeout: 10)
        let exposition = PrometheusExposition()
        await server.appendRoute("GET /healthz") { _ in
            let health = await governor.healthCheck()
            let healthy = !health.isEmpty && health.values.allSatisfy { $0 }
            let body = GovernorHTTPServer.healthJSON(deployment: governor.deploymentName, health: health, healthy: healthy)
            return HTTPResponse(statusCode: healthy ? .ok : .serviceUnavailable,
                                headers: [.contentType: "application/json"], body: Data(body.utf8))
        }
        await server.appendRoute("GET /metrics") { _ in
            let text = exposition.text(await governor.metrics())
            return HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                                body: Data(text.utf8))
        }
        let task = Task<Void, Never> { _ = try? await server.run() }
        do {
            try await server.waitUntilListening(timeout: 5)
        } catch {
            task.cancel()
            throw error
        }
        guard case .ip4(_, let bound)? = await server.listeningAddress else {
            task.cancel()
            throw HTTPServerError.notListening
        }
        self.server = server
        self.task = task
        self.port = bound
    }

    public func stop() async {
        await server.stop(timeout: 1)
        task.cancel()
        _ = await task.value
    }

    enum HTTPServerError: Error { case notListening }

    static func healthJSON(deployment: String, health: [String: Bool], healthy: Bool) -> String {
        let services = health.keys.sorted().map { "\"\($0)\":\(health[$0]! ? "true" : "false")" }.joined(separator: ",")
        return "{\"deployment\":\"\(deployment)\",\"healthy\":\(healthy),\"services\":{\(services)}}"
    }

    /// The Prometheus text of a metrics snapshot.
    public static func prometheusText(_ m: GovernorMetrics) -> String { PrometheusExposition().text(m) }
}

/// The Prometheus text exposition (format 0.0.4) of a metrics snapshot: families in a fixed order, each with
/// its HELP and TYPE, series sorted by process name and statuses in their declared order, so equal snapshots
/// give equal text. Names follow Prometheus' conventions: counters end in `_total`, times are in seconds,
/// summaries have `_sum` and `_count` and their quantiles only when there is a sample (never NaN).
public struct PrometheusExposition: Sendable {
    public init() {}

    public func text(_ m: GovernorMetrics) -> String {
        var out = ""
        let names = m.services.keys.sorted()
        out.reserveCapacity(1024 + names.count * 1200)
        let deployment = "deployment=\"\(Self.escaped(m.deployment))\""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: String, _ value: String) {
            out += name; out += "{"; out += labels; out += "} "; out += value; out += "\n"
        }
        family("szgovernor_running", "gauge", "1 while the governor runs the deployment")
        sample("szgovernor_running", deployment, m.running ? "1" : "0")
        family("szgovernor_services", "gauge", "Managed processes")
        sample("szgovernor_services", deployment, "\(m.totalServices)")
        family("szgovernor_healthy_services", "gauge", "Processes in status running")
        sample("szgovernor_healthy_services", deployment, "\(m.healthyServices)")
        family("szgovernor_restarts_total", "counter", "Restarts made by policy, all processes")
        sample("szgovernor_restarts_total", deployment, "\(m.totalRestarts)")

        // Per process: the label set written piece by piece into the output (no label strings kept).
        func processSample(_ metric: String, _ name: String, _ info: ManagedProcessInfo, status: ProcessStatus? = nil, _ value: String) {
            out += metric; out += "{"; out += deployment
            out += ",process=\""; out += Self.escaped(name); out += "\",role=\""; out += info.role.rawValue; out += "\""
            if let status { out += ",status=\""; out += status.rawValue; out += "\"" }
            out += "} "; out += value; out += "\n"
        }
        family("szgovernor_process_up", "gauge", "1 when the process is running (ready)")
        for name in names {
            let info = m.services[name]!
            processSample("szgovernor_process_up", name, info, info.status == .running ? "1" : "0")
        }
        family("szgovernor_process_restarts_total", "counter", "Restarts made by policy")
        for name in names {
            let info = m.services[name]!
            processSample("szgovernor_process_restarts_total", name, info, String(info.restartCount))
        }
        family("szgovernor_process_status", "gauge", "1 for the process's current status")
        for name in names {
            let info = m.services[name]!
            for status in ProcessStatus.allCases {
                processSample("szgovernor_process_status", name, info, status: status, info.status == status ? "1" : "0")
            }
        }
        summary(&out, "szgovernor_restart_latency_seconds", "Exit of a child -> spawn of its replacement", m.restartLatencyMs, deployment)
        summary(&out, "szgovernor_ready_latency_seconds", "Exit of a child -> replacement ready", m.readyLatencyMs, deployment)
        return out
    }

    /// A summary from millisecond samples, in seconds: quantiles 0.5, 0.95 and 1 when there is a sample,
    /// then `_sum` and `_count`.
    private func summary(_ out: inout String, _ name: String, _ help: String, _ s: LatencySummary, _ labels: String) {
        out += "# HELP \(name) \(help), seconds\n# TYPE \(name) summary\n"
        if s.count > 0 {
            for (q, v) in [("0.5", s.median), ("0.95", s.p95), ("1", s.max)] {
                if let v { out += "\(name){\(labels),quantile=\"\(q)\"} \(Self.seconds(v))\n" }
            }
        }
        out += "\(name)_sum{\(labels)} \(Self.seconds(s.sum))\n"
        out += "\(name)_count{\(labels)} \(s.count)\n"
    }

    static func seconds(_ ms: Double) -> String {
        ms.isFinite ? "\(ms / 1000)" : "0"
    }

    /// A label value as the format wants it: backslash, double quote and line feed escaped.
    static func escaped(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
