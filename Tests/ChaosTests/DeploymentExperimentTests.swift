import Chaos
import Foundation
import Governor
import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Experiments on a real deployment: the runner starts the ci deployment under an in-process governor
/// (the Governor library, not the CLI), applies process and control-channel faults, and its checks pass or
/// fail as they should.
@Suite(.tags(.integration, .zmq, .governor), .leakChecked)
struct integration_zmq_governor_DeploymentExperiments {
    static func experiment(duration: String, faults: String, recovery: String = "20s") throws -> Experiment {
        try Experiment.parse("""
            title: on ci
            seed: 99
            duration: \(duration)
            deployment: {name: ci, start_if_not_running: true, stop_after: true}
            steady_state: {probe: ping, targets: ["h-*"], within: 2s, recovery_timeout: \(recovery), interval: 50ms}
            load:
              clients: 3
              targets: [h-1, h-2, h-3]
              rate: 20
              methods: [{method: increment_counter, params: {counter_name: t}}, heartbeat]
              client: {timeout: 300ms, attempts: 6}
            faults:
            \(faults)
            checks: {steady_state_restored: true, max_lost_requests: 0, max_duplicates: 0, max_time_to_recovery: 20s}
            """, file: "ci-experiment.yaml")
    }

    func run(_ e: Experiment, rig: CIRig) async throws -> ExperimentReport {
        let driver = rig.driver()
        let paths = rig.paths
        let candidates: @Sendable () async throws -> [String] = { try driver.handlers("ci") }
        let env = RunnerEnvironment(deployment: driver, actuators: [
            ProcessFaultActuator(paths: paths, candidates: candidates), ControlFaultActuator(paths: paths, candidates: candidates),
        ])
        do {
            let r = try await ExperimentRunner(experiment: e, environment: env, outputDirectory: rig.dir.path + "/out").run()
            await driver.stopAll()
            return r
        } catch {
            await driver.stopAll()
            throw error
        }
    }

    @Test(.tags(.slow)) func slow_killDropAndEFSMOnTheCIDeploymentPassEveryCheck() async throws {
        try await withCIRig(start: false) { rig in
            let e = try Self.experiment(duration: "4s", faults: """
                  - {name: kill, kind: kill-random, targets: {include: ["h-*"], exclude: [h-2]}, schedule: {initial_delay: 500ms, count: 1}}
                  - {name: drop, kind: drop-replies, targets: [h-2], schedule: {initial_delay: 1500ms, count: 1, duration: 500ms}, params: {count: 2}}
                  - {name: efsm, kind: force-efsm, targets: [h-2], schedule: {initial_delay: 2500ms, count: 1, duration: 500ms}}
                """)
            let r = try await run(e, rig: rig)
            #expect(r.passed, "\(r.summary)")
            #expect(r.faults.count == 3 && r.faults.allSatisfy { $0.error == nil && $0.timeToRecovery != nil })
            #expect(r.load.ok > 0 && r.load.lost == 0 && r.load.retried > 0, "\(r.load)")
            // The deployment was started by the runner and stopped afterwards; its journal says so.
            let text = try String(contentsOfFile: rig.dir.path + "/out/journal.jsonl", encoding: .utf8)
            let kinds = text.split(separator: "\n").compactMap { (try? JSON.parse(String($0)))?["event"]?.stringValue }
            #expect(kinds.contains("deployment_started") && kinds.contains("deployment_stopped"))
            #expect(!GovernorDeploymentDriver.isRunning(rig.paths))
            #expect(rig.tracker.alive.isEmpty, "every process the governor started is gone")
            #expect(FileManager.default.fileExists(atPath: rig.dir.path + "/out/junit.xml"))
            // The governor's events of the run's window beside the journal, and the HTML report draws them.
            let events = try String(contentsOfFile: rig.dir.path + "/out/events.jsonl", encoding: .utf8)
            #expect(events.contains("\"exited\"") && events.contains("\"spawned\""), "\(events)")
            let html = try String(contentsOfFile: try HTMLReport.write(directory: rig.dir.path + "/out"), encoding: .utf8)
            #expect(html.contains("data-event=\"exited\""))
            #expect(occurrences("class=\"fault-window\"", in: html) == 3)
            #expect(occurrences("class=\"recovery\"", in: html) == 3)
            #expect(html.contains("data-passed=\"true\">PASSED"))
        }
    }

    @Test(.tags(.slow)) func slow_withoutAutoRestartTheSteadyStateCheckFails() async throws {
        try await withCIRig(autoRestart: false, start: false) { rig in
            let e = try Self.experiment(duration: "1500ms", faults: """
                  - {name: kill, kind: kill, targets: [h-1], schedule: {initial_delay: 300ms, count: 1}}
                """, recovery: "1s")
            let r = try await run(e, rig: rig)
            #expect(r.exitCode == 1)
            let restored = try #require(r.checks.first { $0.name == "steady_state_restored" })
            #expect(!restored.passed && restored.message.contains("h-1"), "\(restored.message)")
            #expect(r.checks.first { $0.name == "time_to_recovery: kill#0" }?.passed == false)
            #expect(r.checks.first { $0.name == "steady_state_before" }?.passed == true)
        }
    }

    @Test func aDeploymentThatIsNotRunningIsStartedOnlyWhenAllowed() async throws {
        try await withCIRig(start: false) { rig in
            var e = try Self.experiment(duration: "100ms", faults: """
                  - {name: kill, kind: kill, targets: [h-1], schedule: {initial_delay: 50ms, count: 1}}
                """)
            e.deployment?.startIfNotRunning = false
            await #expect {
                _ = try await run(e, rig: rig)
            } throws: { err in
                guard case .deploymentNotRunning("ci")? = err as? RunnerError else { return false }
                return true
            }
            #expect(!GovernorDeploymentDriver.isRunning(rig.paths))
            // Running already (a governor in this process holds the lock): the runner uses it and leaves it running.
            try await rig.start()
            #expect(GovernorDeploymentDriver.isRunning(rig.paths))
            let driver = rig.driver()
            #expect(try await driver.isRunning("ci"))
            #expect(try await driver.targets("ci") == ["server", "h-1", "h-2", "h-3"])
            #expect(try await driver.endpoint(of: "h-2", in: "ci") == rig.dataEndpoint("h-2"))
        }
    }
    @Test(.tags(.slow)) func slow_szchaosRunOnCIResumesAndStopsEverythingWhenInterrupted() async throws {
        try await withCIRig(start: false) { rig in
            let exp = try rig.dir.write("""
                title: interrupted
                seed: 5
                duration: 30s
                deployment: ci
                steady_state: {targets: ["h-*"], within: 200ms}
                load: {clients: 1, targets: [h-2], rate: 20, methods: [ping], client: {timeout: 300ms, attempts: 5}}
                faults:
                  - {name: freeze, kind: pause, targets: [h-1], schedule: {initial_delay: 300ms, count: 1, duration: 25s}}
                """, to: "interrupted.yaml").path
            let p = try TestProcess(CIRig.szchaos, ["run", exp, "--root", rig.root, "--file", rig.deploymentFile, "--output", rig.dir.path + "/out"])
            var started: [pid_t] = []
            do {
                var frozen: pid_t?
                try await waitUntil("h-1 paused by the experiment", timeout: .seconds(20)) {
                    frozen = rig.pid("h-1")
                    return frozen.map(isPaused) ?? false
                }
                started = ["server", "h-1", "h-2", "h-3"].compactMap { rig.pid($0) }
                #expect(started.count == 4)
                p.signal(SIGTERM)
                #expect(try await p.waitExit(timeout: .seconds(20)) == .exited(1))
                // Resumed, then stopped with the deployment this run started: nothing is left behind.
                try await waitUntil("every process of the deployment gone", timeout: .seconds(10)) {
                    started.allSatisfy { ProcessIdentity.of(pid: $0) == nil }
                }
                #expect(!GovernorDeploymentDriver.isRunning(rig.paths))
                try await waitUntil("the interruption reported", timeout: .seconds(5)) { p.stderrText.contains("interrupted by SIGTERM") }
                // Not a terminal: plain progress lines.
                #expect(p.stderrText.contains("progress: ["), "\(p.stderrText)")
                #expect(p.lines.first == "seed: 5")
            } catch {
                p.stop()
                for pid in started { kill(pid, SIGCONT); kill(pid, SIGKILL) }
                throw error
            }
        }
    }
}
