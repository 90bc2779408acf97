import ArgumentParser
import Foundation
import MockPeers
import ScheduleZeroWire
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif

@main
struct Szmock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "szmock",
        abstract: "Mock ScheduleZero peers with faults on command: a handler, a server, and a client.",
        discussion: "Usage errors exit with 2 (not ArgumentParser's 64). See docs/MOCK-PEERS.md.",
        version: HarnessVersion.current,
        subcommands: [HandlerCommand.self, ServerCommand.self, CallCommand.self]
    )

    /// Like ArgumentParser's `main`, but usage errors exit with 2, as the issue asks.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

func env(_ name: String) -> String? {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else { return nil }
    return v
}

func ms(_ v: Int) -> Duration { .milliseconds(Int64(v)) }

func checkEndpoint(_ e: String, _ what: String) throws {
    guard ["tcp://", "ipc://", "inproc://"].contains(where: { e.hasPrefix($0) }) else {
        throw ValidationError("\(what) must start with tcp://, ipc:// or inproc://, got \"\(e)\"")
    }
}

// MARK: handler

struct HandlerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handler",
        abstract: "Serve the ScheduleZero handler protocol, with faults settable by flags and the control channel."
    )

    @Option(help: "Handler id (default: $SCHEDULEZERO_TEST_HANDLER_ID or test-handler-001).")
    var id: String?
    @Option(help: "Data endpoint; port 0 or * takes a free port (default: tcp://$SCHEDULEZERO_HANDLER_HOST:$SCHEDULEZERO_HANDLER_PORT, else tcp://127.0.0.1:*).")
    var bind: String?
    @Option(help: "Server to register with (default: from $SCHEDULEZERO_SERVER_HOST/PORT when set, else none).")
    var server: String?
    @Option(help: "Control endpoint (REP on its own thread), e.g. ipc:///dep/run/h1.control.")
    var control: String?
    @Option(help: "Write the ready event's JSON here, atomically, once serving.")
    var readyFile: String?
    @Option(help: "Folder write_file writes into (no path escapes).")
    var sandbox: String?
    @Option(help: "Seed of every random fault (default: random, reported by status).")
    var seed: UInt64?
    @Flag(help: "Log one 'request' event per request (off: no I/O on the hot path).")
    var logRequests = false
    @Option(help: "Larger requests get an error reply.")
    var maxMessageBytes = 1 << 20

    // Faults
    @Option(help: "Fault: execute the next N requests but send no reply.") var dropNext: Int?
    @Option(help: "Fault: drop each reply with this probability (0...1, seeded).") var dropProbability: Double?
    @Option(help: "Fault: delay every reply by this many ms.") var delayMs: Int?
    @Option(help: "Fault: +- uniform jitter on the delay, ms.") var jitterMs: Int?
    @Option(help: "Fault: swallow the next N requests (no reply, data socket reset: the caller's REQ is stuck).") var swallowNext: Int?
    @Option(help: "Fault: answer garbage: bytes | wrong_shape.") var garbage: String?
    @Option(help: "Fault: crash on the request after N more requests.") var crashAfter: Int?
    @Option(help: "Exit code of a crash (default 3).") var crashExitCode: Int?
    @Option(help: "Crash by this signal instead of an exit code (SIGABRT).") var crashSignal: String?
    @Flag(help: "Fault: log and ignore SIGTERM.") var ignoreSigterm = false
    @Option(help: "Fault: bind the data socket (become ready) only after this many ms.") var slowStartMs = 0

    // Registration
    @Option(help: "Heartbeat ping interval, ms.") var heartbeatMs = 30_000
    @Option(help: "Timeout of each registration call, ms.") var registrationTimeoutMs = 10_000
    @Option(help: "Delay between failed registrations, ms.") var registrationRetryMs = 15_000
    @Option(help: "Give up registering after this many consecutive failures (default: $SCHEDULEZERO_MAX_RETRIES or 5).")
    var maxRegistrationFailures: Int?
    @Option(help: "How long a graceful stop waits for report_status offline, ms.") var offlineTimeoutMs = 2_000
    @Option(help: "Bound on the whole graceful stop, ms.") var stopTimeoutMs = 3_000

    func faultParams() -> [String: JSONValue] {
        var p: [String: JSONValue] = [:]
        if let v = dropNext { p["drop_next"] = .int(Int64(v)) }
        if let v = dropProbability { p["drop_probability"] = .double(v) }
        if let v = delayMs { p["delay_ms"] = .int(Int64(v)) }
        if let v = jitterMs { p["jitter_ms"] = .int(Int64(v)) }
        if let v = swallowNext { p["swallow_next"] = .int(Int64(v)) }
        if let v = garbage { p["garbage"] = .string(v) }
        if let v = crashAfter { p["crash_after"] = .int(Int64(v)) }
        if let v = crashExitCode { p["crash_exit_code"] = .int(Int64(v)) }
        if let v = crashSignal { p["crash_signal"] = .string(v) }
        if ignoreSigterm { p["ignore_sigterm"] = true }
        return p
    }

    func makeConfiguration() throws -> MockHandlerConfiguration {
        let host = env("SCHEDULEZERO_HANDLER_HOST")
        let port = env("SCHEDULEZERO_HANDLER_PORT")
        let bindEndpoint = bind ?? ((host != nil || port != nil) ? "tcp://\(host ?? "127.0.0.1"):\(port ?? "*")" : "tcp://127.0.0.1:*")
        try checkEndpoint(bindEndpoint, "--bind")
        var cfg = MockHandlerConfiguration(id: id ?? env("SCHEDULEZERO_TEST_HANDLER_ID") ?? "test-handler-001", bind: bindEndpoint)
        let sHost = env("SCHEDULEZERO_SERVER_HOST")
        let sPort = env("SCHEDULEZERO_SERVER_PORT")
        cfg.server = server ?? ((sHost != nil || sPort != nil) ? "tcp://\(sHost ?? "127.0.0.1"):\(sPort ?? "\(Wire.defaultServerPort)")" : nil)
        if let s = cfg.server { try checkEndpoint(s, "--server") }
        if let c = control { try checkEndpoint(c, "--control") }
        cfg.control = control
        cfg.readyFile = readyFile
        cfg.sandbox = sandbox
        cfg.seed = seed
        cfg.logRequests = logRequests
        guard maxMessageBytes > 0 else { throw ValidationError("--max-message-bytes must be > 0") }
        cfg.maxMessageBytes = maxMessageBytes
        guard slowStartMs >= 0 else { throw ValidationError("--slow-start-ms must be >= 0") }
        cfg.slowStart = ms(slowStartMs)
        do { try cfg.faults.apply(faultParams()) } catch { throw ValidationError(error.description) }
        var r = RegistrationSettings()
        r.heartbeatInterval = ms(heartbeatMs)
        r.timeout = ms(registrationTimeoutMs)
        r.retryDelay = ms(registrationRetryMs)
        r.offlineTimeout = ms(offlineTimeoutMs)
        r.maxFailures = maxRegistrationFailures ?? env("SCHEDULEZERO_MAX_RETRIES").flatMap(Int.init) ?? 5
        guard heartbeatMs > 0, registrationTimeoutMs > 0, registrationRetryMs >= 0, offlineTimeoutMs > 0, r.maxFailures > 0 else {
            throw ValidationError("registration timings must be > 0 and --max-registration-failures >= 1")
        }
        cfg.registration = r
        return cfg
    }

    func validate() throws { _ = try makeConfiguration() }

    func run() throws {
        ProcessSignals.install()  // before any thread exists, so every thread inherits the mask
        ProcessSignals.watchParent(environment: ProcessInfo.processInfo.environment)
        let cfg = try makeConfiguration()
        let log = EventLog([EventLog.fileDescriptor(STDOUT_FILENO)])
        let handler = MockHandler(configuration: cfg, log: log, onCrash: { ProcessSignals.crash($0) })
        do { try handler.start() } catch {
            log.emit("error", ["what": "start", "error": .string("\(error)")])
            throw ExitCode(1)
        }
        while true {
            if let sig = ProcessSignals.next(timeout: .milliseconds(100)) {
                if sig == SIGTERM && handler.ignoresSigterm {
                    log.emit("signal_ignored", ["signal": .string(ProcessSignals.name(sig))])
                    continue
                }
                log.emit("signal", ["signal": .string(ProcessSignals.name(sig))])
                handler.stop(timeout: ms(stopTimeoutMs))
                Glibc.exit(0)
            }
            if handler.startError != nil { throw ExitCode(1) }
        }
    }
}

// MARK: server

struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Serve ScheduleZero registration (ping, register, report_status) and dispatch jobs to handlers."
    )

    @Option(help: "Registration endpoint.") var bind = "tcp://127.0.0.1:\(Wire.defaultServerPort)"
    @Option(help: "Jobs file: JSON array of {id?, handler_id, method, params?, interval_ms?, count?}.") var jobs: String?
    @Option(name: .customLong("job"), help: "A job: HANDLER:METHOD[:PARAMS_JSON][@INTERVAL[*COUNT]], e.g. 'h-1:increment_counter:{\"counter_name\":\"c\"}@200ms*5'. Repeatable.")
    var jobSpecs: [String] = []
    @Option(help: "Append every event (dispatch, attempt, reply, failure, register...) as JSON lines here.") var journal: String?
    @Option(help: "Write the ready event's JSON here, atomically.") var readyFile: String?
    @Option(help: "Attempts per dispatch.") var attempts = Wire.upstreamAttempts
    @Option(help: "Timeout of each attempt, ms.") var callTimeoutMs = 10_000
    @Option(help: "Delay before the second attempt, ms (doubling after).") var retryDelayMs = 1_000
    @Option(help: "Cap of the retry delay, ms.") var maxRetryDelayMs = 30_000
    @Option(help: "+- fraction of jitter on retry delays.") var jitter = 0.5
    @Option(help: "Client recovery: lazy-pirate | relaxed.") var strategy = "lazy-pirate"
    @Option(help: "Seed of the retry jitter.") var seed: UInt64?
    @Option(help: "How long a stop lets a dispatch in flight finish, ms.") var stopGraceMs = 1_000
    @Flag(help: "Print only the ready event to stdout (the journal still gets everything).") var quiet = false

    func makeConfiguration() throws -> MockServerConfiguration {
        try checkEndpoint(bind, "--bind")
        var cfg = MockServerConfiguration()
        cfg.bind = bind
        do {
            if let f = jobs {
                guard let data = FileManager.default.contents(atPath: f) else { throw ValidationError("cannot read jobs file \(f)") }
                cfg.jobs += try JobSpec.parseFile(Array(data))
            }
            for spec in jobSpecs { cfg.jobs.append(try JobSpec.parse(spec, id: "job-\(cfg.jobs.count + 1)")) }
        } catch let e as PeerError {
            throw ValidationError(e.description)
        }
        guard let strat = RecoveryStrategy(rawValue: strategy) else { throw ValidationError("--strategy must be lazy-pirate or relaxed") }
        guard attempts >= 1, callTimeoutMs > 0, retryDelayMs >= 0, (0...1).contains(jitter) else {
            throw ValidationError("--attempts >= 1, --call-timeout-ms > 0, --retry-delay-ms >= 0, --jitter in 0...1")
        }
        cfg.dispatch = ClientConfiguration(timeout: ms(callTimeoutMs), attempts: attempts, retryDelay: ms(retryDelayMs),
                                           maxRetryDelay: ms(maxRetryDelayMs), jitter: jitter, strategy: strat, seed: seed)
        cfg.readyFile = readyFile
        cfg.stopGrace = ms(stopGraceMs)
        return cfg
    }

    func validate() throws { _ = try makeConfiguration() }

    func run() throws {
        ProcessSignals.install()
        ProcessSignals.watchParent(environment: ProcessInfo.processInfo.environment)
        let cfg = try makeConfiguration()
        var sinks: [EventLog.Sink] = []
        let stdout = EventLog.fileDescriptor(STDOUT_FILENO)
        let readyOnly: EventLog.Sink = { line in if line.hasPrefix("{\"event\":\"ready\"") { stdout(line) } }
        sinks.append(quiet ? readyOnly : stdout)
        if let j = journal { sinks.append(try EventLog.appending(to: j)) }
        let server = MockServer(configuration: cfg, log: EventLog(sinks))
        do { try server.start() } catch {
            FileHandle.standardError.write(Data("szmock server: \(error)\n".utf8))
            throw ExitCode(1)
        }
        while true {
            if let sig = ProcessSignals.next(timeout: .milliseconds(200)) {
                EventLog(sinks).emit("signal", ["signal": .string(ProcessSignals.name(sig))])
                server.stop()
                Glibc.exit(0)
            }
        }
    }
}

// MARK: call

struct CallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call a method on any ScheduleZero peer and print the reply JSON.",
        discussion: "Exit 0 on success:true, 1 on an error reply or no reply after the last attempt, 2 on usage errors."
    )

    @Argument(help: "Endpoint, e.g. tcp://127.0.0.1:4245.") var endpoint: String
    @Argument(help: "Method name.") var method: String
    @Argument(help: "Params as a JSON object.") var params: String = "{}"
    @Option(help: "Timeout of each attempt (250ms, 2.5s; default 2500ms).") var timeout = "2500ms"
    @Option(help: "Attempts.") var attempts = 3
    @Option(help: "Delay before a retry, ms.") var retryDelayMs = 0
    @Option(help: "Recovery strategy: lazy-pirate | relaxed.") var strategy = "lazy-pirate"

    func parsedParams() throws -> [String: JSONValue] {
        guard let v = try? JSON.parse(params), let o = v.objectValue else {
            throw ValidationError("PARAMS_JSON must be a JSON object, got \(params)")
        }
        return o
    }

    func validate() throws {
        try checkEndpoint(endpoint, "ENDPOINT")
        _ = try parsedParams()
        _ = try DurationText.option(timeout, "--timeout").mapError { ValidationError($0.description) }.get()
        guard attempts >= 1, retryDelayMs >= 0 else { throw ValidationError("--attempts >= 1, --retry-delay-ms >= 0") }
        guard RecoveryStrategy(rawValue: strategy) != nil else { throw ValidationError("--strategy must be lazy-pirate or relaxed") }
    }

    func run() throws {
        let cfg = ClientConfiguration(timeout: DurationText.value(timeout)!, attempts: attempts, retryDelay: ms(retryDelayMs),
                                      strategy: RecoveryStrategy(rawValue: strategy)!)
        do {
            let reply = try SyncClient.with(endpoint: endpoint, configuration: cfg) { try $0.call(method, params: try parsedParams()) }
            print(JSON.string(.object(reply.fields)))
            if !reply.success { throw ExitCode(1) }
        } catch let e as ClientError {
            FileHandle.standardError.write(Data("szmock call: \(e)\n".utf8))
            if case .badEndpoint = e { throw ExitCode(2) }
            throw ExitCode(1)
        }
    }
}
