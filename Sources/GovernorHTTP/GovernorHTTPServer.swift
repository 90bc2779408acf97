// The governor's HTTP face, on 127.0.0.1 when `szgovernor up --http-port N` asks for it (0: a free port):
//   GET /healthz  -> JSON {deployment, healthy, services: {name: bool}}; 200 when every process is
//                    running, 503 otherwise
//   GET /metrics  -> Prometheus text exposition: per process up / restarts / status, restart and ready
//                    latency summaries, governor totals
// FlyingFox serves HTTP (its epoll wait runs on a Dispatch queue of its own, not on the cooperative pool);
// swift-prometheus writes the exposition format from one registry kept for the server's life: each scrape
// sets its gauges from a snapshot of `metrics()` (gauges are made for a process the first time it is seen
// and dropped when it is gone), so a scrape allocates no gauges and no label sets, only its output.
import Foundation
import FlyingFox
import Governor
import Prometheus
import Synchronization

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

    /// The Prometheus text of a metrics snapshot (a fresh exposition: tests and one-off callers).
    public static func prometheusText(_ m: GovernorMetrics) -> String { PrometheusExposition().text(m) }

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

/// The registry behind /metrics and the gauges of each process in it, kept between scrapes.
public final class PrometheusExposition: Sendable {
    private struct ProcessGauges {
        var role: String
        var up: Gauge
        var restarts: Gauge
        var status: [(ProcessStatus, Gauge)]
        var all: [Gauge] { [up, restarts] + status.map(\.1) }
    }

    private struct State {
        var deployment: String?
        var totals: [Gauge] = []
        var processes: [String: ProcessGauges] = [:]
    }

    private let registry = PrometheusCollectorRegistry()
    private let state = Mutex(State())

    public init() {}

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)]) -> Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// Sets every gauge from `m` and writes the exposition text.
    public func text(_ m: GovernorMetrics) -> String {
        let d = ("deployment", m.deployment)
        let text = state.withLock { s -> String in
            if s.deployment != m.deployment {
                for g in s.totals + s.processes.values.flatMap(\.all) { registry.unregisterGauge(g) }
                s = State(deployment: m.deployment)
                s.totals = [
                    gauge("szgovernor_running", "1 while the governor runs the deployment", [d]),
                    gauge("szgovernor_services", "Managed processes", [d]),
                    gauge("szgovernor_healthy_services", "Processes in status running", [d]),
                    gauge("szgovernor_restarts_total", "Restarts made by policy, all processes", [d]),
                ]
            }
            for (g, v) in zip(s.totals, [m.running ? 1 : 0, m.totalServices, m.healthyServices, m.totalRestarts]) {
                g.set(Double(v))
            }
            for (name, gauges) in s.processes where m.services[name]?.role.rawValue != gauges.role {
                for g in gauges.all { registry.unregisterGauge(g) }
                s.processes[name] = nil
            }
            for (name, info) in m.services {
                let gauges = s.processes[name] ?? {
                    let labels = [d, ("process", name), ("role", info.role.rawValue)]
                    let made = ProcessGauges(
                        role: info.role.rawValue,
                        up: gauge("szgovernor_process_up", "1 when the process is running (ready)", labels),
                        restarts: gauge("szgovernor_process_restarts", "Restarts made by policy", labels),
                        status: ProcessStatus.allCases.map { status in
                            (status, gauge("szgovernor_process_status", "1 for the process's current status",
                                           labels + [("status", status.rawValue)]))
                        })
                    s.processes[name] = made
                    return made
                }()
                gauges.up.set(info.status == .running ? 1.0 : 0.0)
                gauges.restarts.set(Double(info.restartCount))
                for (status, g) in gauges.status { g.set(info.status == status ? 1.0 : 0.0) }
            }
            return registry.emitToString()
        }
        return text
            + GovernorHTTPServer.summary("szgovernor_restart_latency_ms", "Exit of a child -> spawn of its replacement, ms", m.restartLatencyMs, d)
            + GovernorHTTPServer.summary("szgovernor_ready_latency_ms", "Exit of a child -> replacement ready, ms", m.readyLatencyMs, d)
    }
}
