import Chaos
import Foundation
import Governor
import Testing
import ScheduleZeroTesting
import ScheduleZeroWire

/// Issue 11, finding 7, for experiment files: the same values are refused the same way, located.
@Suite(.tags(.regression, .unit), .leakChecked)
struct regression_unit_ExperimentFileLimits {
    func error(_ yaml: String, file: String = "e.yaml") -> ExperimentError? {
        do { _ = try Experiment.parse(yaml, file: file); return nil } catch { return error }
    }

    /// A bare number was seconds here and milliseconds in deployment files; refused in both now.
    @Test func aBareNumberIsRefusedInAnExperimentFile() throws {
        let bare = try #require(error("title: x\nduration: 2\nsteady_state: {endpoints: {a: \"tcp://127.0.0.1:9\"}}\n"))
        #expect(bare.description == "e.yaml:2:11: duration: must be a duration with a unit: 250ms, 2s, 1m or 1h: a number without a unit is refused (got \"2\"; write 2ms or 2s)", "\(bare)")
    }

    @Test func hugeAndZeroDurationsAreLocatedErrors() throws {
        let huge = try #require(error("title: x\nduration: 999999999999999999999m\nsteady_state: {endpoints: {a: \"tcp://127.0.0.1:9\"}}\n"))
        #expect(huge.description == "e.yaml:2:11: duration: must be at most 7 days (604800s) (got \"999999999999999999999m\")", "\(huge)")
        let within = try #require(error("title: x\nduration: 1s\nsteady_state: {endpoints: {a: \"tcp://127.0.0.1:9\"}, within: 0ms}\n"))
        #expect(within.field == "steady_state.within" && within.line == 3 && within.message.contains("longer than 0"), "\(within)")
        #expect(error("title: x\nduration: 1s\nsteady_state: {endpoints: {a: \"tcp://127.0.0.1:9\"}, interval: 0s}\n")?.field == "steady_state.interval")
        #expect(DurationText.value("999999999999999999999m") == nil, "szchaos pause --for refuses it instead of trapping")
    }

    @Test func endpointsThatCanNeverWorkAreRefused() throws {
        let port = try #require(error("title: x\nduration: 1s\nsteady_state: {endpoints: {a: \"tcp://127.0.0.1:65536\"}}\n"))
        #expect(port.field == "steady_state.endpoints.a" && port.line == 3 && port.message.contains("outside 1...65535"), "\(port)")
        let long = "ipc:///tmp/" + String(repeating: "x", count: 120)
        let ipc = try #require(error("title: x\nduration: 1s\nproxies:\n  - {name: p, listen: \"\(long)\", upstream: \"tcp://127.0.0.1:9\"}\n"))
        #expect(ipc.field == "proxies[0].listen" && ipc.message.contains("at most 107"), "\(ipc)")
    }

    @Test func duplicateKeyAndBadBytesAreLocated() throws {
        let dup = try #require(error("title: x\nduration: 1s\ntitle: y\n"))
        #expect(dup.description == "e.yaml:3:1: title: given twice in one mapping (at line 1 and line 3)", "\(dup)")
        let dir = TemporaryDirectory(prefix: "szlimx")
        let path = dir.file("x.yaml")
        FileManager.default.createFile(atPath: path, contents: Data(Array("title: x\nduration: 1s\n".utf8) + [0xC3, 0x28]))
        do {
            _ = try Experiment.load(file: path)
            Issue.record("accepted")
        } catch {
            #expect(error.line == 3 && error.column == 1 && error.message.contains("at offset 22"), "\(error)")
        }
    }

    /// Issue 12 (one shared core): deployment files and experiment files are read by one `YAMLField`, so
    /// one mistake is reported alike in both: file:line:column, field and words. Experiment files said
    /// "unknown field (known here: ...)", "expected a mapping with keys ..." and "expected a whole number".
    @Test func aMistakeReadsAsInADeploymentFile() throws {
        func deploymentError(_ yaml: String) -> DeploymentFileError? {
            do {
                _ = try DeploymentFile.parse(yaml: yaml, file: "d.yaml", defaultName: "d", deploymentsRoot: "/nonexistent")
                return nil
            } catch { return error }
        }
        // A typo in a key.
        let typo = try #require(error("titel: x\n"))
        let typoD = try #require(deploymentError("titel: x\n"))
        #expect(typo.description.hasPrefix("e.yaml:1:1: titel: unknown field (allowed: title, description, seed, "), "\(typo)")
        #expect(typoD.description.hasPrefix("d.yaml:1:1: titel: unknown field (allowed: deployment, "), "\(typoD)")
        // A list where a mapping belongs.
        let list = try #require(error("title: x\nduration: 1s\nchecks: [a]\n"))
        let listD = try #require(deploymentError("deployment: d\nmax_processes: 9\ndefaults: [a]\n"))
        #expect(list.description == "e.yaml:3:9: checks: must be a mapping (key: value), got a list", "\(list)")
        #expect(listD.description == "d.yaml:3:11: defaults: must be a mapping (key: value), got a list", "\(listD)")
        // A count below its minimum.
        let count = try #require(error("title: x\nduration: 1s\ndeployment: d\nchecks: {max_errors: -1}\n"))
        let countD = try #require(deploymentError("defaults: {restart: {max_restarts: -1}}\n"))
        #expect(count.description == "e.yaml:4:22: checks.max_errors: must be an integer >= 0 (got \"-1\")", "\(count)")
        #expect(countD.description == "d.yaml:1:36: defaults.restart.max_restarts: must be an integer >= 0 (got \"-1\")", "\(countD)")
        // The example of docs/CHAOS.md ("Every error names file, line, column and field"), word for word.
        let text = try String(contentsOfFile: Fixtures.path("bad/experiments/bad-duration.yaml"), encoding: .utf8)
        let example = try #require(error(text, file: "bad-duration.yaml"))
        #expect(example.description == "bad-duration.yaml:11:45: faults[0].schedule.interval: must be a duration with a unit: 250ms, 2s, 1m or 1h (got \"fast\")", "\(example)")
    }
}
