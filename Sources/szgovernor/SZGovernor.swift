// `szgovernor`: parses the command line and wires the Governor library (docs/GOVERNOR.md).
// Exit codes: 0 done, 1 a failure (named on stderr), 2 a usage error.
import ArgumentParser
import Chaos
import Foundation
import Governor
import GovernorHTTP
import ScheduleZeroWire
#if canImport(Glibc)
import Glibc
#endif

@main
struct SZGovernor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "szgovernor",
        abstract: "Run a ScheduleZero deployment (a server and its handlers): start, watch, restart, stop.",
        discussion: "Exit codes: 0 done, 1 failure, 2 usage error. See docs/GOVERNOR.md.",
        version: HarnessVersion.current,
        subcommands: [Up.self, Down.self, Status.self, Restart.self, Add.self, Remove.self, Scale.self, Logs.self, Validate.self,
                      Export.self]
    )

    static func main() {
        // No default subcommand: `szgovernor` alone is a usage error, not a start of the demo deployment.
        if CommandLine.arguments.count == 1 {
            FileHandle.standardError.write(Data((helpMessage() + "\n").utf8))
            Glibc.exit(2)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as Failure {
            FileHandle.standardError.write(Data("szgovernor: \(failure.message)\n".utf8))
            Glibc.exit(1)
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// A failure: exit 1 with this message.
struct Failure: Error {
    let message: String
    init(_ message: String) { self.message = message }
    init(_ error: any Error) { message = "\(error)" }
}

/// `--deployment` (default `demo`), `--root`, `--file`: for the commands that start or only look.
struct DeploymentOptions: ParsableArguments {
    @Option(name: [.customShort("d"), .long], help: "Deployment name (a folder name: no '/', no '..').") var deployment = "demo"
    @Option(help: "Deployments root (default: $SZ_DEPLOYMENTS_ROOT, else the nearest deployments/ at or above this folder).")
    var root: String?
    @Option(help: "Deployment file (default: Fixtures/deployments/<deployment>.yaml here, in the project above, else in this build's package).")
    var file: String?

    /// Root and folder only.
    func folder() throws -> DeploymentLocator { try locate(deployment, root: root) }

    /// Root, folder and file.
    func full() throws -> DeploymentLocator {
        do { return try DeploymentLocator(deployment: deployment, root: root, file: file) } catch { throw Failure(error) }
    }
}

/// `--deployment` without a default, and `--root`: for the commands that stop or kill.
struct NamedDeploymentOptions: ParsableArguments {
    @Option(name: [.customShort("d"), .long], help: "Deployment name; required (a command that stops or kills acts only on a deployment it names).")
    var deployment: String
    @Option(help: "Deployments root (default: $SZ_DEPLOYMENTS_ROOT, else the nearest deployments/ at or above this folder).")
    var root: String?

    func folder() throws -> DeploymentLocator { try locate(deployment, root: root) }
}

func locate(_ deployment: String, root: String?) throws -> DeploymentLocator {
    do { return try DeploymentLocator(deployment: deployment, root: root) } catch { throw Failure(error) }
}

/// Runs async work from a synchronous command: the main thread waits, the work runs on the pool.
func runAsync<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    nonisolated(unsafe) var result: Result<T, any Error>?
    let done = DispatchSemaphore(value: 0)
    Task {
        do { result = .success(try await body()) } catch { result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try result!.get()
}

func printErr(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

/// Calls the running governor and fails clearly when none runs or it answers an error.
func requireControl(_ locator: DeploymentLocator, _ method: String, _ params: [String: JSONValue] = [:],
                    timeout: Duration = .seconds(60)) throws -> Reply {
    guard ControlClient.call(locator, "ping", timeout: .milliseconds(1500)) != nil else {
        throw Failure("no governor is running deployment \"\(locator.deploymentName)\" under \(locator.root) (root: \(locator.rootOrigin); start it with `szgovernor up --deployment \(locator.deploymentName)`)")
    }
    guard let reply = ControlClient.call(locator, method, params: params, timeout: timeout) else {
        throw Failure("the governor of deployment \"\(locator.deploymentName)\" did not answer \(method)")
    }
    guard reply.success else { throw Failure(reply.error ?? "\(method) failed") }
    return reply
}

/// The fallback is a weaker guarantee: say so on stderr.
func warnIfProcessGroupOnly(_ tree: JSONValue?) {
    guard tree?.objectValue?["mode"]?.stringValue == "process-group" else { return }
    let reason = tree?.objectValue?["reason"]?.stringValue ?? "?"
    FileHandle.standardError.write(Data("szgovernor: warning: no cgroup for the process trees (\(reason)); stopping by process group only, a descendant that calls setsid escapes it\n".utf8))
}

// MARK: up

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the deployment and govern it (foreground; --detach to run in the background).")
    @OptionGroup var options: DeploymentOptions
    @Flag(help: "Run in the background (own session, output to <root>/<d>/logs/governor.log); return once every process is ready.")
    var detach = false
    @Option(help: "Serve GET /healthz and GET /metrics on 127.0.0.1:PORT (0: a free port, printed).") var httpPort: Int?
    @Option(help: "With --detach: how long to wait for every process to be ready (90s, 2m; default 2m).") var readyTimeout = "2m"

    func validate() throws {
        if let p = httpPort, !(0...65535).contains(p) { throw ValidationError("--http-port must be 0...65535") }
        _ = try DurationText.option(readyTimeout, "--ready-timeout").mapError { ValidationError($0.description) }.get()
    }

    func run() throws {
        // Before anything can start a thread (libzmq's I/O threads included), so every thread inherits the
        // mask and a SIGTERM can only be taken by the signal thread. Children get an empty mask.
        if !detach { GovernorSignals.block() }
        let locator = try options.full()
        if let holder = GovernorOffline.liveGovernor(locator), ControlClient.call(locator, "ping") != nil {
            throw Failure("deployment \"\(locator.deploymentName)\" is already governed by governor pid \(holder.pid) (`szgovernor down --deployment \(locator.deploymentName)` stops it)")
        }
        if detach { return try runDetached(locator) }
        let service: GovernorService
        do { service = try GovernorService(locator: locator) } catch { throw Failure(error) }
        // The forced stop kills, then says so; held under a lock the main thread takes before its last line,
        // or the stop it causes could end the process before the line is written (seen once in a CI run).
        let forcing = NSLock()
        GovernorSignals.watch(onFirst: { sig in
            print("szgovernor: \(signalName(sig)): stopping handlers, then the server (again to force)")
            fflush(nil)
            Task { await service.shutdown() }
        }, onForce: { sig in
            forcing.lock()
            defer { forcing.unlock() }
            let killed = service.forceKill()
            print("szgovernor: \(signalName(sig)) again: SIGKILL to every process group now (\(killed.joined(separator: ", ")))")
            fflush(nil)
        })
        let httpPort = self.httpPort
        defer { try? runAsync { await service.controlServer }?.join() }
        try runAsync {
            do { try await service.start() } catch { throw Failure(error) }
            var http: GovernorHTTPServer?
            if let port = httpPort {
                do {
                    http = try await GovernorHTTPServer(governor: service.governor, port: UInt16(port))
                    await service.setHTTPPort(Int(http!.port))
                } catch {
                    await service.shutdown()
                    throw Failure("cannot serve HTTP on 127.0.0.1:\(port): \(error)")
                }
            }
            let status = await service.statusJSON()
            let rows = (status.objectValue?["processes"]?.arrayValue ?? []).compactMap { StatusRow(json: $0) }
            print("szgovernor: deployment \"\(locator.deploymentName)\" is up (governor pid \(getpid()), control \(locator.controlEndpoint))")
            if let http { print("szgovernor: http://127.0.0.1:\(http.port)/healthz and /metrics") }
            warnIfProcessGroupOnly(status.objectValue?["process_tree"])
            print(StatusReport.processTreeLine(status.objectValue?["process_tree"]))
            print(StatusRow.table(rows))
            fflush(nil)
            await service.waitUntilStopped()
            await http?.stop()
            forcing.withLock {}  // a forced stop in progress has said what it killed
            print("szgovernor: deployment \"\(locator.deploymentName)\" stopped")
            fflush(nil)
        }
    }

    /// `up` in the background (GovernorLauncher.upDetached), returning once every process is running.
    func runDetached(_ locator: DeploymentLocator) throws {
        let up: GovernorLauncher.Detached
        do { up = try GovernorLauncher.upDetached(locator, httpPort: httpPort, readyTimeout: readyTimeout) } catch { throw Failure(error) }
        print("szgovernor: deployment \"\(locator.deploymentName)\" is up in the background (governor pid \(up.governor.pid), log \(up.log))")
        if let port = up.status["http_port"]?.intValue { print("szgovernor: http://127.0.0.1:\(port)/healthz and /metrics") }
        warnIfProcessGroupOnly(up.status["process_tree"])
        print(StatusReport.processTreeLine(up.status["process_tree"]))
        print(StatusRow.table(up.rows))
    }
}

// MARK: down

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop the deployment: through its governor, or from the PID files when none runs (orphans included).")
    @OptionGroup var options: NamedDeploymentOptions

    func run() throws {
        let locator = try options.folder()
        let began = Date()
        // Processes that ignored SIGTERM and had to be killed at their stop timeout, said after the stop.
        defer {
            for e in LifecycleLog.escalations(LifecycleLog.read(locator.path("events.jsonl")), since: began) { print("szgovernor: \(e.line)") }
        }
        if let pong = ControlClient.call(locator, "ping", timeout: .milliseconds(1500)) {
            let governorPid = pong["governor_pid"]?.intValue.map { pid_t($0) }
            guard let reply = ControlClient.call(locator, "down", timeout: .seconds(300)), reply.success else {
                throw Failure("the governor of deployment \"\(locator.deploymentName)\" did not confirm the stop")
            }
            if let pid = governorPid { GovernorLauncher.waitUntilGone(pid, timeout: .seconds(30)) }
            print("szgovernor: deployment \"\(locator.deploymentName)\" stopped by its governor (pid \(governorPid.map(String.init) ?? "?"))")
            return
        }
        let report: GovernorOffline.DownReport
        do { report = try runAsync { try await GovernorOffline.down(locator) } } catch { throw Failure(error) }
        var text = "szgovernor: no governor was answering for deployment \"\(locator.deploymentName)\" under \(locator.root) (root: \(locator.rootOrigin))"
        if let g = report.unresponsiveGovernor { text += "; stopped its unresponsive governor pid \(g)" }
        text += report.stopped.isEmpty ? "; no orphan was running" : "; stopped orphans: \(report.stopped.joined(separator: ", "))"
        if !report.cgroupKilled.isEmpty {
            text += "; killed what was left in the cgroups of " + report.cgroupKilled.joined(separator: ", ")
        }
        if !report.removed.isEmpty {
            text += "; removed stale PID files: " + report.removed.keys.sorted().joined(separator: ", ")
        }
        print(text)
    }
}

// MARK: status

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show every process of the deployment.",
        discussion: "Exit status: 0 when the governor answers and every process is running; 3 when it is not running or a process is not running (as systemctl and supervisorctl). --json prints one schema either way.")
    @OptionGroup var options: DeploymentOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let locator = try options.folder()
        let report = StatusReport.gather(locator) { ControlClient.call(locator, $0) }
        print(json ? JSON.string(report.json) : report.text)
        if !report.healthy { throw ExitCode(report.exitCode) }
    }
}

// MARK: restart, add, remove, scale

struct Restart: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restart the processes named by NAME or a glob (h-*).")
    @OptionGroup var options: NamedDeploymentOptions
    @Argument(help: "A process name or a glob such as 'h-*'.") var pattern: String

    func run() throws {
        let reply = try requireControl(try options.folder(), "restart", ["pattern": .string(pattern)])
        let names = (reply["restarted"]?.arrayValue ?? []).compactMap(\.stringValue)
        print("szgovernor: restarted \(names.joined(separator: ", "))")
    }
}

struct Add: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add a handler to the running deployment.",
        discussion: "Without a command: a szmock handler on ipc://<run>/<ID>.sock registered with the server. Variables: ${SZMOCK}, ${NAME}, ${ENDPOINT}, ${SERVER_ENDPOINT}, ${RUN_DIR}, ${LOG_DIR}, ${READY_FILE}.")
    @OptionGroup var options: DeploymentOptions
    @Argument(help: "Handler id.") var id: String
    @Option(help: "Endpoint the handler serves (default ipc://${RUN_DIR}/${NAME}.sock).") var endpoint: String?
    @Option(help: "Readiness: ping | none | ready-file.") var readiness = "ping"
    @Option(help: "Restart policy: always | on-failure | never.") var restart: String?
    @Option(help: "SIGTERM -> SIGKILL timeout, e.g. 2s.") var stopTimeout: String?
    @Option(name: .customLong("env"), help: "KEY=VALUE for the handler's environment (repeatable).") var env: [String] = []
    @Argument(parsing: .postTerminator, help: "-- EXECUTABLE ARGS...") var command: [String] = []

    func validate() throws {
        guard ["ping", "none", "ready-file"].contains(readiness) else { throw ValidationError("--readiness must be ping, none or ready-file") }
        if let r = restart, !["always", "on-failure", "never"].contains(r) { throw ValidationError("--restart must be always, on-failure or never") }
        for e in env where !e.contains("=") { throw ValidationError("--env takes KEY=VALUE, got \"\(e)\"") }
    }

    func run() throws {
        var params: [String: JSONValue] = ["id": .string(id), "readiness": .string(readiness)]
        if let endpoint { params["endpoint"] = .string(endpoint) }
        if let restart { params["restart"] = .string(restart) }
        if let stopTimeout { params["stop_timeout"] = .string(stopTimeout) }
        if !command.isEmpty { params["command"] = .array(command.map { .string($0) }) }
        if !env.isEmpty {
            var e: [String: JSONValue] = [:]
            for kv in env {
                let parts = kv.split(separator: "=", maxSplits: 1)
                e[String(parts[0])] = .string(parts.count > 1 ? String(parts[1]) : "")
            }
            params["environment"] = .object(e)
        }
        let reply = try requireControl(try options.folder(), "add", params)
        let row = reply["added"].flatMap { StatusRow(json: $0) }
        print("szgovernor: added \(id) (\(row?.status ?? "?"), pid \(row?.pid.map(String.init) ?? "-"))")
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a handler and remove it from the running deployment.")
    @OptionGroup var options: NamedDeploymentOptions
    @Argument(help: "Handler name.") var name: String

    func run() throws {
        _ = try requireControl(try options.folder(), "remove", ["name": .string(name)])
        print("szgovernor: removed \(name)")
    }
}

struct Scale: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set the number of replicas of a handler spec (h -> h-1..h-N).")
    @OptionGroup var options: NamedDeploymentOptions
    @Argument(help: "Handler spec id from the deployment file (e.g. h).") var name: String
    @Argument(help: "Replicas.") var replicas: Int

    func validate() throws { guard replicas >= 0 else { throw ValidationError("replicas must be >= 0") } }

    func run() throws {
        let reply = try requireControl(try options.folder(), "scale", ["name": .string(name), "replicas": .int(Int64(replicas))])
        let added = (reply["added"]?.arrayValue ?? []).compactMap(\.stringValue)
        let removed = (reply["removed"]?.arrayValue ?? []).compactMap(\.stringValue)
        print("szgovernor: \(name) scaled to \(replicas)" + (added.isEmpty ? "" : "; started \(added.joined(separator: ", "))")
              + (removed.isEmpty ? "" : "; stopped \(removed.joined(separator: ", "))"))
    }
}

// MARK: logs

struct Logs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the last lines of a process's log (or `governor`); -f follows it as `tail -F` does.")
    @OptionGroup var options: DeploymentOptions
    @Argument(help: "Process name, or governor.") var name: String
    @Option(name: [.customShort("n"), .long], help: "How many lines.") var lines = 20
    @Flag(name: [.customShort("f"), .long], help: "Keep printing lines as they are written, across rotations, until interrupted.")
    var follow = false

    func validate() throws { guard lines > 0 else { throw ValidationError("--lines must be > 0") } }

    func run() throws {
        let locator = try options.folder()
        if name != "governor" { do { try Names.validateProcess(name) } catch { throw Failure(error) } }
        let path = locator.path("logs/\(name).log")
        guard !RotatedLog.files(of: path).isEmpty else {
            let known = ((try? FileManager.default.contentsOfDirectory(atPath: locator.path("logs"))) ?? [])
                .filter { $0.hasSuffix(".log") }.map { String($0.dropLast(4)) }.sorted()
            throw Failure("deployment \"\(locator.deploymentName)\" has no log for \"\(name)\" under \(locator.path("logs")) (known: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        var st = stat()
        let size = stat(path, &st) == 0 ? Int(st.st_size) : 0
        for line in RotatedLog.tail(of: path, lines: lines) { print(line) }
        guard follow else { return }
        fflush(nil)
        RotatedLog.follow(path, from: size, check: .seconds(3600)) { line in
            print(line)
            fflush(nil)
        }
    }
}

// MARK: validate

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check deployment and experiment files without starting anything.",
        discussion: "Each file is read as `up` or `szchaos run` would read it; the first error of each is printed with its file:line:column and field. Exit 0 when every file is valid, 1 otherwise.")
    @Argument(help: "Deployment or experiment files (the kind is told by the top-level keys).") var files: [String]
    @Option(help: "Read every file as this kind: deployment | experiment.") var kind: String?
    @Option(help: "Deployments root for ${DEPLOYMENT_DIR} and path limits (default as for up).") var root: String?

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one file") }
        if let kind, ValidatedFileKind(rawValue: kind) == nil { throw ValidationError("--kind must be deployment or experiment, not '\(kind)'") }
    }

    func run() throws {
        let deploymentsRoot = DeploymentLocator.discoverRoot(option: root, environment: Foundation.ProcessInfo.processInfo.environment,
                                                             currentDirectory: FileManager.default.currentDirectoryPath).root
        var failed = 0
        for file in files {
            do {
                print(try FileValidation.validate(file, kind: kind.flatMap(ValidatedFileKind.init), deploymentsRoot: deploymentsRoot))
            } catch {
                printErr("szgovernor: \(error)")
                failed += 1
            }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
