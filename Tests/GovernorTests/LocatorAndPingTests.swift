import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor

@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_LocatorAndReadiness {
    @Test func readinessPingFormsParse() throws {
        func readiness(_ text: String) throws -> ReadinessSpec? {
            let yaml = """
                deployment: t
                handlers:
                  - id: h
                    endpoint: "ipc:///x/h.sock"
                    command: ["/bin/true"]
                    readiness: \(text)
                """
            return try DeploymentFile.parse(yaml: yaml, file: "t.yaml", defaultName: "t", deploymentsRoot: "/d").handlers.first?.readiness
        }
        #expect(try readiness("ping") == .custom(kind: "ping", settings: [:], timeout: .seconds(10)))
        #expect(try readiness("{ping: \"${ENDPOINT}\", within: 20ms, timeout: 3s}")
                == .custom(kind: "ping", settings: ["ping": "ipc:///x/h.sock", "within": "20ms"], timeout: .seconds(3)))
        let bad = #expect(throws: DeploymentFileError.self) { try readiness("{ping: x, every: 1s}") }
        #expect(bad?.description.contains("readiness.every: unknown field (allowed with ping: ping, within, timeout)") == true)
        let probe = try ReadinessProbes().probe(for: HandlerConfig(id: "h", executable: "/bin/true",
                                                                   readiness: .custom(kind: "ping", settings: ["within": "20ms"], timeout: .seconds(1))))
        #expect((probe as? PingProbe)?.within == .milliseconds(20))
    }

    @Test func locatorResolvesRootFileAndControlEndpoint() throws {
        let here = FixturePaths.root.deletingLastPathComponent().path
        let l = try DeploymentLocator(deployment: "ci", root: nil, file: nil, environment: [:], currentDirectory: here,
                                      executableDirectory: "/nonexistent")
        #expect(l.root == here + "/deployments")
        #expect(l.file == FixturePaths.deployment("ci").path)
        #expect(l.controlEndpoint == "ipc://\(here)/deployments/ci/run/governor.control")
        let env = try DeploymentLocator(deployment: "ci", root: nil, environment: ["SZ_DEPLOYMENTS_ROOT": "/srv/d"], currentDirectory: "/")
        #expect(env.root == "/srv/d")
        let option = try DeploymentLocator(deployment: "ci", root: "rel", environment: ["SZ_DEPLOYMENTS_ROOT": "/srv/d"], currentDirectory: "/w")
        #expect(option.root == "/w/rel")
        // Not found from the current directory: the package root of the executable is searched next.
        let fromExe = try DeploymentLocator(deployment: "demo", root: nil, file: nil, environment: [:], currentDirectory: "/",
                                            executableDirectory: here + "/.build/x86_64-unknown-linux-gnu/debug")
        #expect(fromExe.file == FixturePaths.deployment("demo").path)
        #expect(throws: NameError.self) { try DeploymentLocator(deployment: "../etc", root: nil) }
        let missing = #expect(throws: LocatorError.self) {
            try DeploymentLocator(deployment: "nope", root: nil, file: nil, environment: [:], currentDirectory: "/", executableDirectory: "/")
        }
        #expect(missing?.description.contains("no deployment file for \"nope\"") == true)
    }

    @Test func szmockIsThisBuildsUnlessTheEnvironmentSaysOtherwise() throws {
        #expect(BuildVariables.variables(executableDirectory: "/b", environment: [:])["SZMOCK"] == "/b/szmock")
        #expect(BuildVariables.variables(executableDirectory: "/b", environment: ["SZMOCK": "/x/szmock"])["SZMOCK"] == "/x/szmock")
        #expect(try BuildVariables.expand("${A}-${B}", ["A": "1", "B": "2"]) == "1-2")
        #expect(throws: GovernorError.self) { try BuildVariables.expand("${C}", ["A": "1"]) }
    }

    /// `${...}` was expanded by two functions: deployment files knew `${env:NAME}`, `szgovernor add` did not.
    /// One expansion now, for both, with one wording.
    @Test func oneExpansionKnowsVariablesAndTheEnvironmentAndSaysWhatIsWrong() throws {
        let env = ["CHECKOUT": "/src"]
        #expect(BuildVariables.substitute("${env:CHECKOUT}/${NAME}.sock", ["NAME": "h-1"], environment: env) == .success("/src/h-1.sock"))
        #expect(BuildVariables.substitute("${env:NOPE}", [:], environment: env) == .failure(.unsetEnvironment(name: "NOPE")))
        #expect(BuildVariables.substitute("a ${NAME", ["NAME": "x"]) == .failure(.unterminated))
        #expect(BuildVariables.substitute("${X}", ["B": "1", "A": "2"]) == .failure(.unknown(name: "X", known: ["A", "B"])))
        #expect(BuildVariables.Problem.unknown(name: "X", known: ["A", "B"]).message(in: "${X}") == "unknown variable ${X} (known: A, B)")
        #expect(BuildVariables.Problem.unsetEnvironment(name: "NOPE").message(in: "") == "${env:NOPE}: the environment variable NOPE is not set")
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        #expect(try BuildVariables.expand("${env:PATH}", [:]) == path, "szgovernor add expands ${env:} too")
    }

    /// `${PACKAGE_DIR}`: the package root above the executable (foreign.yaml finds the peers there), and
    /// no such variable for an executable outside any package.
    @Test func packageDirIsThePackageRootAboveTheExecutable() async throws {
        try await withTemporaryDirectory { dir in
            _ = try dir.write("// swift-tools-version:6.0\n", to: "Package.swift")
            let bin = dir.file(".build/x86_64-unknown-linux-gnu/debug")
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            let root = URL(fileURLWithPath: dir.file(".")).standardized.path
            #expect(BuildVariables.variables(executableDirectory: bin, environment: [:])["PACKAGE_DIR"] == root)
        }
        #expect(BuildVariables.variables(executableDirectory: "/usr/bin", environment: [:])["PACKAGE_DIR"] == nil)
    }

    @Test func replicaOverridesScaleASpec() throws {
        let d = try DeploymentFile.load(path: FixturePaths.deployment("ci").path, variables: ["SZMOCK": "/b/szmock"],
                                        deploymentsRoot: "/d", replicas: ["h": 5])
        #expect(d.handlers.map(\.id) == ["h-1", "h-2", "h-3", "h-4", "h-5"])
        #expect(d.handlerSpecs == ["h": 5])
        let none = try DeploymentFile.load(path: FixturePaths.deployment("ci").path, variables: ["SZMOCK": "/b/szmock"],
                                           deploymentsRoot: "/d", replicas: ["h": 0])
        #expect(none.handlers.isEmpty)
    }

    @Test func tcpPortsAreCheckedWithinADeployment() throws {
        let a = HandlerConfig(id: "a", executable: "/bin/true", endpoint: "tcp://127.0.0.1:4999")
        let b = HandlerConfig(id: "b", executable: "/bin/true", endpoint: "tcp://127.0.0.1:4999")
        let error = #expect(throws: GovernorError.self) { try EndpointPreflight.check(Deployment(name: "t", handlers: [a, b])) }
        #expect(error?.description == "deployment \"t\": b and a both use tcp://127.0.0.1:4999")
        #expect(EndpointPreflight.tcpHostPort("tcp://127.0.0.1:*") == nil)
        #expect(EndpointPreflight.tcpHostPort("ipc:///x") == nil)
    }
}
