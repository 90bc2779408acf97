import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor

/// How `szgovernor export` turns each replica's expanded values back into one template (docs/ARCHITECTURE.md,
/// "Exporting to systemd and Kubernetes"), and the loader's `interposers: false`.
@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_ExportPatterns {
    let tokens = InstanceTokens(table: [(value: "4245", segments: [.variable("P")]), (value: "h-1", segments: [.text("h-"), .index])],
                                whole: [(value: "1", segments: [.index])])

    @Test func perReplicaValuesAreFoundOnlyWhereTheyStandOnTheirOwn() {
        #expect(tokens.tokenize("h-1") == [.text("h-"), .index])
        #expect(tokens.tokenize("h-12") == [.text("h-12")], "h-1 is not inside h-12")
        #expect(tokens.tokenize("xh-1") == [.text("xh-1")])
        #expect(tokens.tokenize("x14245") == [.text("x14245")], "4245 is not inside 14245")
        #expect(tokens.tokenize("tcp://127.0.0.1:4245") == [.text("tcp://127.0.0.1:"), .variable("P")], "the 1s of the address stay")
        #expect(tokens.tokenize("ipc:///run/h-1.sock") == [.text("ipc:///run/h-"), .index, .text(".sock")])
        #expect(tokens.tokenize("1") == [.index], "INDEX only as a whole value")
        #expect(tokens.tokenize("w-1") == [.text("w-1")])
    }

    static let twelve = """
        deployment: t
        handlers:
          - id: h
            replicas: 12
            endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
            command: ["/bin/sh", "-c", "exec sleep 1000", "${NAME}", "${ENDPOINT}", "${INDEX}"]
        """

    @Test func twelveReplicasShareOneTemplateWithNoDropIn() throws {
        let d = try DeploymentFile.parse(yaml: Self.twelve, file: "t.yaml", defaultName: "t", deploymentsRoot: "/srv/d")
        #expect(d.handlers.map(\.replicaIndex) == Array(1...12).map { Optional($0) } && d.handlers.allSatisfy { $0.specID == "h" })
        let export = try SystemdExport.export(d, deploymentDirectory: "/srv/d/t", parentEnvironment: [:])
        #expect(export.files.map(\.path) == ["t-h@.service", "t.target"], "h-1 and h-12 both come from h-%i: no drop-in")
        let unit = export.files[0].contents
        #expect(unit.contains("ExecStart=/bin/sh -c \"exec sleep 1000\" h-%i ipc:///srv/d/t/run/h-%i.sock %i\n"), "\(unit)")
        #expect(export.files[1].contents.contains("Wants=" + (1...12).map { "t-h@\($0).service" }.joined(separator: " ") + "\n"))
    }

    static let interposed = """
        deployment: t
        defaults: {interpose: true}
        server:
          command: ["/bin/sh", "-c", "exec sleep 1000", "${PORT}", "${ENDPOINT}"]
          endpoint: "tcp://127.0.0.1:4400"
        handlers:
          - id: h
            replicas: 2
            port_base: 4410
            endpoint: "tcp://127.0.0.1:${PORT}"
            command: ["/bin/sh", "-c", "exec sleep 1000", "${PORT}", "${ENDPOINT}", "${PUBLIC_PORT}"]
        """

    @Test func interposersLeftOutBindThePublicEndpoint() throws {
        let d = try DeploymentFile.parse(yaml: Self.interposed, file: "t.yaml", defaultName: "t", deploymentsRoot: "/srv/d",
                                         interposers: false)
        #expect(d.interposersLeftOut == ["server", "h-1", "h-2"])
        #expect(d.processes.allSatisfy { $0.interposer == nil })
        #expect(d.server?.arguments.suffix(2) == ["4400", "tcp://127.0.0.1:4400"])
        #expect(d.handlers[1].arguments.suffix(3) == ["4411", "tcp://127.0.0.1:4411", "4411"])
    }
}
