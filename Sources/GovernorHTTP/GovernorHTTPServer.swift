// The governor's HTTP face, on 127.0.0.1 when `szgovernor up --http-port N` asks for it (0: a free port):
//   GET /healthz  -> JSON {deployment, healthy, services: {name: bool}}; 200 when every process is
//                    running, 503 otherwise
//   GET /metrics  -> Prometheus text exposition: per process up / restarts / status, restart and ready
//                    latency summaries, governor totals
// FlyingFox serves HTTP (its epoll wait runs on a Dispatch queue of its own, not on the cooperative pool);
// swift-prometheus writes the exposition format from a registry rebuilt for each scrape, so the figures
// are a snapshot of `metrics()` with no state kept twice.
import Foundation
import FlyingFox
import Governor
import Prometheus

public final class GovernorHTTPServer: Sendable {
    private let server: HTTPServer
    private let task: Task<Void, Never>
    public let port: UInt16

    /// Starts listening; returns once the port is bound.
    public init(governor: ProcessGovernor, port: UInt16) async throws {
        let server = HTTPServer(address: try .inet(ip4: "127.0.0.1", port: port), timeout: 10)
        await server.appendRoute("GET /healthz") { _ in
            let health = await governor.healthCheck()
            let healthy = !health.isEmpty && health.values.allSatisfy { $0 }
            let body = GovernorHTTPServer.healthJSON(deployment: governor.deploymentName, health: health, healthy: healthy)
            return HTTPResponse(statusCode: healthy ? .ok : .serviceUnavailable,
                                headers: [.contentType: "application/json"], body: Data(body.utf8))
        }
        await server.appendRoute("GET /metrics") { _ in
            let text = GovernorHTTPServer.prometheusText(await governor.metrics())
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
    public static func prometheusText(_ m: GovernorMetrics) -> String {
        let registry = PrometheusCollectorRegistry()
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
                .set(value)
        }
        let d = ("deployment", m.deployment)
        gauge("szgovernor_running", "1 while the governor runs the deployment", [d], m.running ? 1 : 0)
        gauge("szgovernor_services", "Managed processes", [d], Double(m.totalServices))
        gauge("szgovernor_healthy_services", "Processes in status running", [d], Double(m.healthyServices))
        gauge("szgovernor_restarts_total", "Restarts made by policy, all processes", [d], Double(m.totalRestarts))
        for (name, info) in m.services.sorted(by: { $0.key < $1.key }) {
            let labels = [d, ("process", name), ("role", info.role.rawValue)]
            gauge("szgovernor_process_up", "1 when the process is running (ready)", labels, info.status == .running ? 1 : 0)
            gauge("szgovernor_process_restarts", "Restarts made by policy", labels, Double(info.restartCount))
            for status in ProcessStatus.allCases {
                gauge("szgovernor_process_status", "1 for the process's current status", labels + [("status", status.rawValue)],
                      info.status == status ? 1 : 0)
            }
        }
        var text = registry.emitToString()
        text += summary("szgovernor_restart_latency_ms", "Exit of a child -> spawn of its replacement, ms", m.restartLatencyMs, d)
        text += summary("szgovernor_ready_latency_ms", "Exit of a child -> replacement ready, ms", m.readyLatencyMs, d)
        return text
    }

    /// A Prometheus summary (quantiles 0.5, 0.95, 1 and count) written in the exposition format:
    /// swift-prometheus 2.x has no summary type, only histograms.
    static func summary(_ name: String, _ help: String, _ s: LatencySummary, _ d: (String, String)) -> String {
        var out = "# HELP \(name) \(help)\n# TYPE \(name) summary\n"
        for (q, v) in [("0.5", s.median), ("0.95", s.p95), ("1", s.max)] {
            out += "\(name){\(d.0)=\"\(d.1)\",quantile=\"\(q)\"} \(v.map { "\($0)" } ?? "NaN")\n"
        }
        out += "\(name)_count{\(d.0)=\"\(d.1)\"} \(s.count)\n"
        return out
    }
}
