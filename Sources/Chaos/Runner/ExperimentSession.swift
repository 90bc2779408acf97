import Foundation
import Governor
import Interposer
import ScheduleZeroWire

/// One `szchaos run`: reads the experiment, chooses the actuators (the deployment's processes and control
/// channels, the proxies, network faults), drives the deployment (started here when the experiment says so,
/// stopped afterwards), runs the `ExperimentRunner`, writes the HTML report beside its outputs, and tells the
/// exit status. What is to be printed comes as `Event`s, in order; the command line only prints them.
public struct ExperimentSession: Sendable {
    /// The experiment file.
    public var experimentFile: String
    /// Overrides the file's seed.
    public var seed: UInt64?
    /// Overrides the file's `output.directory`.
    public var outputDirectory: String?
    /// The deployments root (nil: `DeploymentPaths.defaultRoot`).
    public var root: String?
    /// The deployment file (nil: Fixtures/deployments/<deployment>.yaml).
    public var deploymentFile: String?
    /// Plan the faults (`Event.planned`) and run nothing.
    public var dryRun: Bool

    public init(experimentFile: String, seed: UInt64? = nil, outputDirectory: String? = nil, root: String? = nil,
                deploymentFile: String? = nil, dryRun: Bool = false) {
        self.experimentFile = experimentFile
        self.seed = seed
        self.outputDirectory = outputDirectory
        self.root = root
        self.deploymentFile = deploymentFile
        self.dryRun = dryRun
    }

    /// What the command prints, in the order it happens.
    public enum Event: Sendable {
        /// The run's seed (the given one, the file's, or one drawn now), before anything starts: for stdout, at once.
        case seed(UInt64)
        /// A fault of the dry run's plan, in time order: for stdout.
        case planned(ScheduledFault)
        /// For stderr: network faults of an earlier run swept or left at the end undone, an interruption, a
        /// report that could not be written.
        case notice(String)
        /// The runner's summary (ends with a newline): for stdout.
        case summary(String)
        /// The HTML report written: its path, for stdout.
        case htmlReport(String)
    }

    /// SIGINT/SIGTERM: `wait` blocks until one comes and returns it; it is called on a thread of its own once
    /// the proxies run. The session then undoes what the run started (resumes paused processes, heals network
    /// faults, stops the proxies and, waiting at most 20 s, a deployment started here) and calls `exit(1)`.
    public struct Interruption: Sendable {
        public var wait: @Sendable () -> Int32
        public var exit: @Sendable (Int32) -> Never
        public init(wait: @escaping @Sendable () -> Int32, exit: @escaping @Sendable (Int32) -> Never) {
            self.wait = wait
            self.exit = exit
        }
    }

    /// Runs the session; returns the exit status: 0 when every check held (or after a dry run), 1 when one failed.
    public func run(interruption: Interruption? = nil,
                    events: @escaping @Sendable (Event) -> Void) async throws(ExperimentSessionError) -> Int32 {
        let exp: Experiment
        do { exp = try Experiment.load(file: experimentFile) } catch { throw ExperimentSessionError("\(error)") }
        let seed = self.seed ?? exp.seed ?? SeededGenerator.randomSeed()
        events(.seed(seed))

        // The deployment: driver, process and control actuators.
        var driver: GovernorDeploymentDriver?
        var processActuator: ProcessFaultActuator?
        var actuators: [any FaultActuator] = []
        var handlerNames: [String] = []
        if let d = exp.deployment {
            let file = deploymentFile
            let drv = GovernorDeploymentDriver(root: root ?? DeploymentPaths.defaultRoot, variables: GovernorDeploymentDriver.defaultVariables(),
                                               deploymentFile: { file ?? "Fixtures/deployments/\($0).yaml" })
            let paths: DeploymentPaths
            do {
                paths = try drv.paths(d.name)
                handlerNames = try drv.handlers(d.name)
            } catch { throw ExperimentSessionError("deployment \(d.name): \(error)") }
            let candidates: @Sendable () async throws -> [String] = { try drv.handlers(d.name) }
            let pa = ProcessFaultActuator(paths: paths, candidates: candidates)
            actuators = [pa, ControlFaultActuator(paths: paths, candidates: candidates)]
            driver = drv
            processActuator = pa
        }
        // Network faults between hosts (network namespaces): recorded before they are applied, undone at their
        // stop, on SIGINT/SIGTERM, or by the next `szchaos net` after a kill -9.
        let netActuator: NetFaultActuator? = exp.faults.contains(where: \.kind.isNetFault) ? NetFaultActuator() : nil
        if let netActuator {
            actuators.append(netActuator)
            for r in await netActuator.sweepStaleAsync() { events(.notice("\(r)")) }
        }
        if dryRun {
            let names = exp.proxies.map(\.name)
            do {
                let hosts = netActuator == nil ? [] : try NetHosts.names()
                let plan = try ExperimentRunner.plan(exp, seed: seed) { f in f.kind == .proxy ? names : f.kind.isNetFault ? hosts : handlerNames }
                for f in plan { events(.planned(f)) }
            } catch { throw ExperimentSessionError("\(error)") }
            return 0
        }
        let fleet: ProxyFleet
        do { fleet = try ProxyFleet(exp.proxies, seed: seed) } catch { throw ExperimentSessionError("\(error)") }
        defer { fleet.stop() }

        // Interrupted: resume what is paused, stop a deployment started here, then exit 1.
        if let interruption {
            let interruptDriver = driver, interruptActuator = processActuator
            let waiter = Thread {
                let sig = interruption.wait()
                events(.notice("interrupted by \(SignalName.name(sig)): resuming paused processes, stopping what this run started"))
                interruptActuator?.resumeAll()
                netActuator?.healAll()
                fleet.stop()
                let done = DispatchSemaphore(value: 0)
                Task.detached {
                    await interruptDriver?.stopAll()
                    done.signal()
                }
                _ = done.wait(timeout: .now() + 20)
                interruption.exit(1)
            }
            waiter.start()
        }

        let env = RunnerEnvironment(deployment: driver, actuators: [fleet.actuator] + actuators, endpoints: fleet.endpoints,
                                    progress: ProgressReporter())
        let runner = ExperimentRunner(experiment: exp, environment: env, seed: seed, outputDirectory: outputDirectory)
        runner.command = ExperimentRunner.reproduceCommand(file: experimentFile, seed: seed, output: outputDirectory, root: root,
                                                           deploymentFile: deploymentFile)
        let report: ExperimentReport
        do {
            report = try await runner.run()
        } catch {
            processActuator?.resumeAll()
            if let netActuator { _ = await netActuator.healAllAsync() }
            await driver?.stopAll()
            throw ExperimentSessionError("\(error)")
        }
        if let netActuator {
            // Faults whose stop never came (the run ended first) are undone here.
            let left = await netActuator.healAllAsync()
            for r in left { events(.notice("\(r)")) }
        }
        events(.summary(report.summary))
        do {
            let path = try HTMLReport.write(directory: runner.outputDirectory)
            events(.htmlReport(path))
        } catch {
            events(.notice("no HTML report: \(error)"))
        }
        return report.passed ? 0 : 1
    }
}

/// Why an experiment session could not run (its text follows `szchaos run: `).
public struct ExperimentSessionError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
