import Foundation
import Governor
import ScheduleZeroWire
import Testing
import ScheduleZeroTesting

/// `szgovernor down` and `status` name the processes that ignored SIGTERM and were killed at their stop timeout.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_StopEscalations {
    static func yaml(_ h: CLIHarness) -> String {
        """
        deployment: esc
        server:
          command: ["\(h.szmock)", "server", "--bind", "${ENDPOINT}"]
          endpoint: "ipc://${RUN_DIR}/server.sock"
          readiness: {ping: "${ENDPOINT}", timeout: 30s}
        handlers:
          - id: stubborn
            endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
            command: ["\(h.szmock)", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}", "--ignore-sigterm"]
            readiness: {ping: "${ENDPOINT}", timeout: 30s}
            stop_timeout: 500ms
          - id: stubborn2
            endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
            command: ["\(h.szmock)", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}", "--ignore-sigterm"]
            readiness: {ping: "${ENDPOINT}", timeout: 30s}
            stop_timeout: 500ms
          - id: calm
            endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
            command: ["\(h.szmock)", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}"]
            readiness: {ping: "${ENDPOINT}", timeout: 30s}
            stop_timeout: 500ms
        """
    }

    @Test func downAndStatusNameWhatIgnoredSIGTERMAndNothingElse() async throws {
        let h = CLIHarness()
        defer { _ = h.cleanup() }
        let file = try h.writeDeployment("esc", Self.yaml(h))
        try await h.up("esc", file: file)
        // Before any stop: nothing to say.
        let before = try await h.run(["status", "--deployment", "esc", "--json"])
        let record = try #require(try JSON.parse(before.stdout.split(separator: "\n").last.map(String.init) ?? "").objectValue, "\(before)")
        #expect(record["killed_at_stop"] == [], "\(before)")

        let removed = try await h.run(["remove", "stubborn2", "--deployment", "esc"])
        #expect(removed.ok, "\(removed)")
        let status = try await h.run(["status", "--deployment", "esc"])
        #expect(status.stdout.contains("stubborn2 ignored SIGTERM and was killed after 500ms (pid "), "\(status)")
        #expect(!status.stdout.contains("calm ignored") && !status.stdout.contains("stubborn ignored"), "\(status)")
        let json = try await h.run(["status", "--deployment", "esc", "--json"])
        let killed = try #require(try JSON.parse(json.stdout.split(separator: "\n").last.map(String.init) ?? "").objectValue?["killed_at_stop"]?.arrayValue)
        #expect(killed.map { $0["name"] } == ["stubborn2"] && killed.first?["after"] == "500ms" && killed.first?["pid"]?.intValue != nil)

        let down = try await h.run(["down", "--deployment", "esc"])
        #expect(down.ok, "\(down)")
        let lines = down.stdout.split(separator: "\n").map(String.init)
        #expect(lines.filter { $0.contains("ignored SIGTERM") }.count == 1, "\(down)")
        #expect(lines.contains { $0.hasPrefix("szgovernor: stubborn ignored SIGTERM and was killed after 500ms (pid ") }, "\(down)")
    }
}
