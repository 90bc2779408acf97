import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
import GovernorHTTP

/// /metrics as Prometheus users expect it (issue 12): restarts are counters (`_total`), times are seconds,
/// summaries have `_sum` and `_count` and never show NaN, and equal snapshots give equal text, series in a
/// fixed order (families as declared, processes by name). Before, restarts were gauges, latencies were in
/// `_ms`, an empty summary showed NaN without `_sum`, and the order changed from one process to the next.
@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_PrometheusExposition {
    func snapshot(_ processes: [(String, ProcessRole, ProcessStatus, Int)], restartMs: [Double] = [1, 2, 4], readyMs: [Double] = []) -> GovernorMetrics {
        let infos = processes.map { name, role, status, restarts in
            ManagedProcessInfo(name: name, role: role, pid: 10, status: status, restartCount: restarts,
                               lastError: nil, startTime: nil, lastExit: nil, endpoint: nil)
        }
        return GovernorMetrics(deployment: "web", running: true, totalServices: infos.count,
                               healthyServices: infos.filter { $0.status == .running }.count,
                               totalRestarts: infos.reduce(0) { $0 + $1.restartCount },
                               services: Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) }),
                               restartLatencyMs: LatencySummary(samples: restartMs), readyLatencyMs: LatencySummary(samples: readyMs))
    }

    /// The TYPE of each family, in the order written.
    func types(_ text: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.dropFirst(7)) }
    }

    @Test func restartsAreCountersTimesAreSecondsAndSummariesHaveSumAndCountWithoutNaN() {
        let text = PrometheusExposition().text(snapshot([("h-1", .handler, .running, 0), ("h-2", .handler, .running, 3)]))
        #expect(types(text) == [
            "szgovernor_running gauge", "szgovernor_services gauge", "szgovernor_healthy_services gauge",
            "szgovernor_restarts_total counter", "szgovernor_process_up gauge", "szgovernor_process_restarts_total counter",
            "szgovernor_process_status gauge", "szgovernor_restart_latency_seconds summary", "szgovernor_ready_latency_seconds summary",
        ])
        #expect(text.contains("szgovernor_restarts_total{deployment=\"web\"} 3\n"))
        #expect(text.contains("szgovernor_process_restarts_total{deployment=\"web\",process=\"h-2\",role=\"handler\"} 3\n"))
        #expect(text.contains("szgovernor_restart_latency_seconds{deployment=\"web\",quantile=\"0.5\"} 0.002\n"))
        #expect(text.contains("szgovernor_restart_latency_seconds{deployment=\"web\",quantile=\"1\"} 0.004\n"))
        #expect(text.contains("szgovernor_restart_latency_seconds_sum{deployment=\"web\"} 0.007\n"))
        #expect(text.contains("szgovernor_restart_latency_seconds_count{deployment=\"web\"} 3\n"))
        // No sample: no quantile, a zero sum and count, and nowhere a NaN or a unit other than seconds.
        #expect(!text.contains("szgovernor_ready_latency_seconds{"))
        #expect(text.contains("szgovernor_ready_latency_seconds_sum{deployment=\"web\"} 0.0\n"))
        #expect(text.contains("szgovernor_ready_latency_seconds_count{deployment=\"web\"} 0\n"))
        #expect(!text.contains("NaN") && !text.contains("_ms"))
    }

    @Test func equalSnapshotsGiveEqualTextWithProcessesInNameOrder() {
        let processes: [(String, ProcessRole, ProcessStatus, Int)] = [("h-3", .handler, .running, 1), ("s", .server, .running, 0),
                                                                      ("h-1", .handler, .crashed, 2), ("h-2", .handler, .running, 0)]
        let text = PrometheusExposition().text(snapshot(processes))
        // A dictionary of the same processes built in another order, written by another exposition.
        #expect(PrometheusExposition().text(snapshot(processes.reversed())) == text)
        let up = text.split(separator: "\n").filter { $0.hasPrefix("szgovernor_process_up{") }
        #expect(up.map { $0.split(separator: ",")[1] } == ["process=\"h-1\"", "process=\"h-2\"", "process=\"h-3\"", "process=\"s\""])
        let statuses = text.split(separator: "\n").filter { $0.hasPrefix("szgovernor_process_status{") && $0.contains("\"h-1\"") }
        #expect(statuses.count == ProcessStatus.allCases.count)
        #expect(statuses.filter { $0.hasSuffix(" 1") } == ["szgovernor_process_status{deployment=\"web\",process=\"h-1\",role=\"handler\",status=\"crashed\"} 1"])
        #expect(text.contains("szgovernor_process_up{deployment=\"web\",process=\"h-1\",role=\"handler\"} 0\n"))
    }

    @Test func labelValuesAreEscaped() {
        var m = snapshot([("h-1", .handler, .running, 0)])
        m.deployment = "a\"b\\c"
        #expect(PrometheusExposition().text(m).contains("szgovernor_running{deployment=\"a\\\"b\\\\c\"} 1\n"))
    }
}
