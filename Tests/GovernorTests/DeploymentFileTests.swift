import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
import ScheduleZeroWire

@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_DeploymentFile {
    let vars = ["SZMOCK": "/opt/build/szmock"]

    func load(_ url: URL) throws(DeploymentFileError) -> Deployment {
        try DeploymentFile.load(path: url.path, variables: vars, deploymentsRoot: "/srv/deployments")
    }

    @Test func demoExpandsReplicasAndResolvesVariables() throws {
        let d = try load(FixturePaths.deployment("demo"))
        #expect(d.name == "demo")
        #expect(d.server?.executable == "/opt/build/szmock")
        #expect(d.server?.arguments.prefix(3) == ["server", "--bind", "tcp://127.0.0.1:4242"])
        #expect(d.server?.arguments.filter { $0 == "--job" }.count == 3, "the demo server dispatches jobs")
        #expect(d.server?.readiness == .custom(kind: "ping", settings: ["ping": "tcp://127.0.0.1:4242", "within": "50ms"],
                                               timeout: .seconds(10)))
        #expect(d.handlers.map(\.id) == ["h-1", "h-2", "h-3"])
        let h2 = d.handlers[1]
        #expect(h2.endpoint == "tcp://127.0.0.1:4246")
        #expect(h2.arguments == ["handler", "--id", "h-2", "--bind", "tcp://127.0.0.1:4246",
                                 "--server", "tcp://127.0.0.1:4242", "--ready-file", "/srv/deployments/demo/run/h-2.ready",
                                 "--control", "ipc:///srv/deployments/demo/run/h-2.control"])
        #expect(h2.readiness == .custom(kind: "ping", settings: [:], timeout: .seconds(10)))
        #expect(h2.restart.mode == .always)
        #expect(h2.restart.maxRestarts == 5, "fields not overridden come from defaults")
        #expect(h2.stopTimeout == .seconds(3))
        #expect(d.server?.stopTimeout == .seconds(5))
        #expect(d.server?.restart.mode == .onFailure)
        #expect(d.server?.restart.backoff == BackoffPolicy(initial: .milliseconds(100), multiplier: 2, cap: .seconds(30),
                                                           jitter: 0.2, immediateRestarts: 1))
        #expect(d.environment == ["SZ_LOG_LEVEL": "info"])
        #expect(d.baseDirectory == FixturePaths.root.appendingPathComponent("deployments").path)
    }

    @Test func ciUsesIpcEndpointsInsideTheDeploymentFolder() throws {
        let d = try load(FixturePaths.deployment("ci"))
        #expect(d.name == "ci")
        #expect(d.server?.endpoint == "ipc:///srv/deployments/ci/run/server.sock")
        #expect(d.handlers.map(\.endpoint) == (1...3).map { "ipc:///srv/deployments/ci/run/h-\($0).sock" })
        #expect(d.handlers.allSatisfy { $0.environment == ["SZ_HANDLER_ROLE": "worker"] })
        #expect(d.handlers[0].restart.window == .seconds(30))
    }

    @Test(arguments: [
        ("syntax.yaml", "syntax.yaml:5:3: YAML syntax: did not find expected ',' or ']'"),
        ("unknown-field.yaml", "unknown-field.yaml:4:5: handlers[0].replica: unknown field (allowed: id, replicas, port_base, command, endpoint, environment, restart, stop_timeout, readiness, settings, interpose, log, working_dir, liveness)"),
        ("zero-replicas.yaml", "zero-replicas.yaml:5:15: handlers[0].replicas: must be an integer >= 1 (got \"0\")"),
        ("bad-policy.yaml", "bad-policy.yaml:4:13: defaults.restart.policy: must be one of always, on-failure, never (got \"sometimes\")"),
        ("missing-command.yaml", "missing-command.yaml:7:5: handlers[1]: needs a command (a list: [executable, args...])"),
        ("bad-duration.yaml", "bad-duration.yaml:5:19: handlers[0].stop_timeout: must be a duration with a unit: 250ms, 2s, 1m or 1h (got \"soon\")"),
        ("bad-name.yaml", "bad-name.yaml:1:13: deployment: deployment name \"../etc\" contains \"/\" (it must be a single folder name)"),
        ("duplicate-id.yaml", "duplicate-id.yaml:6:9: handlers[1].id: process \"h-2\" is defined twice"),
        ("not-a-mapping.yaml", "not-a-mapping.yaml:1:1: must be a mapping (key: value), got a list"),
    ])
    func badFilesNameFileLineAndField(file: String, expected: String) {
        let error = #expect(throws: DeploymentFileError.self) { try load(FixturePaths.bad(file)) }
        #expect(error?.description == expected)
    }

    @Test func unknownVariablesAreNamedWithTheKnownOnes() {
        let error = #expect(throws: DeploymentFileError.self) { try load(FixturePaths.bad("unknown-variable.yaml")) }
        #expect(error?.line == 4)
        #expect(error?.field == "handlers[0].command[5]")
        #expect(error?.message.hasPrefix("unknown variable ${BIND} (known: DEPLOYMENT, DEPLOYMENT_DIR,") == true)
        #expect(error?.message.contains("SZMOCK") == true)
    }

    @Test func aMissingVariableSupplyIsAnError() {
        let error = #expect(throws: DeploymentFileError.self) {
            try DeploymentFile.load(path: FixturePaths.deployment("ci").path, variables: [:], deploymentsRoot: "/d")
        }
        #expect(error?.field == "server.command[0]")
        #expect(error?.message.hasPrefix("unknown variable ${SZMOCK}") == true)
    }

    @Test func aMissingFileIsNamed() {
        let error = #expect(throws: DeploymentFileError.self) {
            try DeploymentFile.load(path: "/nonexistent/x.yaml", deploymentsRoot: "/d")
        }
        #expect(error?.description == "/nonexistent/x.yaml: cannot read the file")
    }

    @Test func durationsAcceptUnitsAndRefuseBareNumbers() {
        #expect(DurationText.value("250ms") == .milliseconds(250))
        #expect(DurationText.value("1.5s") == .milliseconds(1500))
        #expect(DurationText.value("2m") == .seconds(120))
        #expect(DurationText.value("40") == nil, "a bare number is refused")
        #expect(DurationText.value("-1s") == nil)
        #expect(DurationText.value("fast") == nil)
    }

    @Test func theNameDefaultsToTheFileName() throws {
        let d = try DeploymentFile.parse(yaml: "handlers: []\n", file: "night.yaml", defaultName: "night", deploymentsRoot: "/d")
        #expect(d.name == "night")
        #expect(d.handlers.isEmpty)
    }

    @Test func readinessKindsPassSettingsThrough() throws {
        let yaml = """
        handlers:
          - id: z
            command: [/bin/true]
            endpoint: tcp://127.0.0.1:7000
            readiness: {kind: zmq-ping, timeout: 2s, endpoint: "${ENDPOINT}"}
        """
        let d = try DeploymentFile.parse(yaml: yaml, file: "z.yaml", defaultName: "z", deploymentsRoot: "/d")
        #expect(d.handlers[0].readiness == .custom(kind: "zmq-ping", settings: ["endpoint": "tcp://127.0.0.1:7000"],
                                                  timeout: .seconds(2)))
    }
}

@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_Names {
    @Test(arguments: ["demo", "ci", "night-2", "a_b.c", "X9"])
    func goodDeploymentNamesPass(name: String) throws {
        try Names.validateDeployment(name)
    }

    @Test(arguments: [
        ("", "deployment name is empty"),
        ("a/b", "deployment name \"a/b\" contains \"/\" (it must be a single folder name)"),
        ("..", "deployment name \"..\" contains \"..\""),
        ("a..b", "deployment name \"a..b\" contains \"..\""),
        (".hidden", "deployment name \".hidden\" starts with \".\""),
        ("sp ace", "deployment name \"sp ace\" contains \" \" (allowed: letters, digits, \"-\", \"_\", \".\")"),
        ("dé", "deployment name \"dé\" contains \"é\" (allowed: letters, digits, \"-\", \"_\", \".\")"),
        (String(repeating: "a", count: 65), "deployment name \"\(String(repeating: "a", count: 40))…\" is longer than 64 characters"),
    ])
    func badDeploymentNamesAreRefusedWithTheReason(name: String, reason: String) {
        let error = #expect(throws: NameError.self) { try Names.validateDeployment(name) }
        #expect(error?.description == reason)
    }

    @Test func globsMatchLikeFnmatch() {
        let names = ["server", "h-1", "h-2", "h-10", "g-1"]
        #expect(names.filter { Names.matches($0, glob: "h-*") } == ["h-1", "h-2", "h-10"])
        #expect(names.filter { Names.matches($0, glob: "h-?") } == ["h-1", "h-2"])
        #expect(names.filter { Names.matches($0, glob: "[gs]*") } == ["server", "g-1"])
        #expect(names.filter { Names.matches($0, glob: "*") }.count == 5)
    }

    @Test func governorErrorsListWhatExists() {
        #expect(GovernorError.unknownProcess(deployment: "ci", name: "h9", known: ["h1", "h2"]).description
                == "deployment \"ci\" has no process \"h9\" (known: h1, h2)")
    }
}
