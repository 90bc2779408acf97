import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
import GovernorHTTP

/// /metrics keeps one registry between scrapes: each scrape must still show exactly the snapshot it was
/// given (values set, processes that are gone dropped), line for line what a fresh registry writes.
@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_PrometheusExposition {
    func snapshot(_ processes: [(String, ProcessRole, ProcessStatus, Int)]) -> GovernorMetrics {
        let infos = processes.map { name, role, status, restarts in
            ManagedProcessInfo(name: name, role: role, pid: 10, status: status, restartCount: restarts,
                               lastError: nil, startTime: nil, lastExit: nil, endpoint: nil)
        }
        return GovernorMetrics(deployment: "web", running: true, totalServices: infos.count,
                               healthyServices: infos.filter { $0.status == .running }.count,
                               totalRestarts: infos.reduce(0) { $0 + $1.restartCount },
                               services: Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) }),
                               restartLatencyMs: LatencySummary(samples: [1, 2]), readyLatencyMs: LatencySummary(samples: []))
    }

    func lines(_ text: String) -> [Substring] { text.split(separator: "\n").sorted() }

    @Test func aKeptRegistryWritesEachSnapshotAsAFreshOneWould() {
        let exposition = PrometheusExposition()
        let first = snapshot([("h-1", .handler, .running, 0), ("h-2", .handler, .running, 3), ("s", .server, .running, 0)])
        let text1 = exposition.text(first)
        #expect(lines(text1) == lines(GovernorHTTPServer.prometheusText(first)))
        #expect(text1.contains("szgovernor_process_restarts{deployment=\"web\",process=\"h-2\",role=\"handler\"} 3.0"))

        // h-2 removed, h-1 crashed and restarted, s changed role: values follow, h-2's series are gone.
        let second = snapshot([("h-1", .handler, .crashed, 1), ("s", .handler, .running, 0)])
        let text2 = exposition.text(second)
        #expect(lines(text2) == lines(GovernorHTTPServer.prometheusText(second)))
        #expect(!text2.contains("process=\"h-2\""))
        #expect(!text2.contains("role=\"server\""))
        #expect(text2.contains("szgovernor_process_status{deployment=\"web\",process=\"h-1\",role=\"handler\",status=\"crashed\"} 1.0"))
        #expect(text2.contains("szgovernor_process_up{deployment=\"web\",process=\"h-1\",role=\"handler\"} 0.0"))
        #expect(text2.contains("szgovernor_services{deployment=\"web\"} 2.0"))
    }
}
