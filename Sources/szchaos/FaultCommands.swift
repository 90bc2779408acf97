import ArgumentParser
import Chaos
import Foundation
import Governor
import ScheduleZeroWire

/// `--deployment` and `--root`, shared by every command that works on a deployment. No default deployment:
/// a fault hits only the deployment it names.
struct DeploymentOptions: ParsableArguments {
    @Option(name: [.customShort("d"), .long], help: "The deployment (a folder name: no '/', no '..'); required.") var deployment: String
    @Option(help: "Deployments root (default: $SZ_DEPLOYMENTS_ROOT, else the nearest deployments/ at or above this folder).") var root: String?

    func validate() throws {
        do { try Names.validateDeployment(deployment) } catch { throw ValidationError("--deployment: \(error)") }
    }

    func paths() throws -> DeploymentPaths {
        do { return try DeploymentPaths(root: root ?? DeploymentPaths.defaultRoot, name: deployment) } catch {
            throw ValidationError("--deployment: \(error)")
        }
    }
}

/// Options every single fault takes.
struct FaultOptions: ParsableArguments {
    @Option(help: "Seed for every random choice (default: drawn; always printed).") var seed: String?
    @Flag(help: "Say what would happen and do nothing.") var dryRun = false
    @Flag(help: "Print one JSON record instead of lines.") var json = false
    @Option(help: "Leave out processes matching this name or glob (repeatable).") var exclude: [String] = []
    @Flag(help: "Allow the server as a target (excluded by default; the governor never is).") var includeServer = false
    @Option(help: "Hit at most this many of the matching processes.") var limit: Int?

    func validate() throws {
        if let seed { _ = try parseSeed(seed) }
        if let limit, limit < 1 { throw ValidationError("--limit takes a count of at least 1, not \(limit)") }
    }

    func resolvedSeed() throws -> UInt64 { try seed.map(parseSeed) ?? SeededGenerator.randomSeed() }

    func query(_ include: [String], random: Bool = false) -> TargetQuery {
        TargetQuery(include: include, exclude: exclude, includeServer: includeServer, limit: limit, random: random)
    }

    /// Runs `round` once, or on the schedule of `repeating` (SIGINT/SIGTERM end the wait between rounds):
    /// the seed once, then each round's lines (or one JSON record per round); exits 1 unless every round succeeded.
    func rounds(_ repeating: RepeatOptions, seed: UInt64, stop: () -> Bool = { false },
                _ round: (Int) -> FaultOutcome) throws {
        guard repeating.repeats else { return try finish(round(0)) }
        let sigs = Signals.block()
        if !json { print("seed: \(seed)") }
        fflush(nil)
        let (ok, _) = repeating.run(seed: seed, sigs: sigs, stop: stop) { n in
            let outcome = round(n)
            if json {
                guard case .object(var o) = outcome.json else { return outcome.succeeded }
                o["round"] = .int(Int64(n + 1))
                print(JSON.string(.object(o)))
            } else {
                print("round \(n + 1):")
                for l in outcome.lines { print("  " + l) }
                if let e = outcome.error { FileHandle.standardError.write(Data("szchaos \(outcome.command): round \(n + 1): \(e)\n".utf8)) }
            }
            fflush(nil)
            return outcome.succeeded
        }
        if !ok { throw ExitCode(1) }
    }

    /// Prints the outcome (the seed first in text mode) and exits 1 unless it succeeded.
    func finish(_ outcome: FaultOutcome) throws {
        if json {
            print(JSON.string(outcome.json))
        } else {
            print("seed: \(outcome.seed)")
            for l in outcome.lines { print(l) }
        }
        fflush(nil)
        if !outcome.succeeded {
            if let e = outcome.error, !json { FileHandle.standardError.write(Data("szchaos \(outcome.command): \(e)\n".utf8)) }
            throw ExitCode(1)
        }
    }
}

/// The control channel's (or interposer's) reply timeout of the message-fault commands.
struct ControlOptions: ParsableArguments {
    @Option(help: "How long to wait for the control channel's reply (default 2s).") var timeout: String = "2s"

    func validate() throws { _ = try unitDuration(timeout, option: "--timeout") }
    func duration() throws -> Duration { try unitDuration(timeout, option: "--timeout") }
}

/// Pumba-style repetition for the process faults (kill-random, kill, signal, pause): the first round after
/// --initial-delay, then one every --interval +- --jitter (seeded, the same seed as the targets), until --count
/// rounds or SIGINT/SIGTERM. Without --interval: one round.
struct RepeatOptions: ParsableArguments {
    @Option(help: "Repeat every this long (250ms, 5s, 1m): until --count rounds or SIGINT/SIGTERM.") var interval: String?
    @Option(help: "+- this much, uniform, on each interval (needs --interval).") var jitter: String?
    @Option(help: "How many rounds (default: 1; with --interval, until interrupted).") var count: Int?
    @Option(help: "Wait this long before the first round (default 0).") var initialDelay: String?

    func validate() throws {
        if let interval { _ = try unitDuration(interval, option: "--interval") }
        if let jitter {
            guard interval != nil else { throw ValidationError("--jitter needs --interval") }
            if DurationText.value(jitter) != .zero { _ = try unitDuration(jitter, option: "--jitter") }
        }
        if let initialDelay, DurationText.value(initialDelay) != .zero { _ = try unitDuration(initialDelay, option: "--initial-delay") }
        if let count {
            guard count >= 1 else { throw ValidationError("--count takes a count of at least 1, not \(count)") }
            guard count == 1 || interval != nil else { throw ValidationError("--count \(count) needs --interval (the time between rounds)") }
        }
    }

    var repeats: Bool { interval != nil || (initialDelay.flatMap(DurationText.value) ?? .zero) > .zero }

    /// Runs `round` on the schedule; signals (blocked by the caller: `sigs`) end the wait between rounds, and
    /// `stop` (asked after each round) ends the loop. A round's own time counts against the interval.
    /// Returns whether every round succeeded and whether a signal ended the loop.
    func run(seed: UInt64, sigs: sigset_t, stop: () -> Bool = { false }, _ round: (Int) -> Bool) -> (allSucceeded: Bool, interrupted: Bool) {
        let spec = ScheduleSpec(initialDelay: initialDelay.flatMap(DurationText.value) ?? .zero,
                                interval: interval.flatMap(DurationText.value) ?? .zero,
                                jitter: jitter.flatMap(DurationText.value) ?? .zero, duration: .zero,
                                count: count ?? (interval == nil ? 1 : nil))
        var rng = SeededGenerator(seed: seed ^ 0x5EED_0F_1007)
        var wait = spec.initialDelay
        var ok = true
        var rounds = 0
        let clock = ContinuousClock()
        while spec.count.map({ rounds < $0 }) ?? true {
            if wait > .zero, Signals.wait(sigs, timeout: wait) != nil { return (ok, true) }
            let started = clock.now
            ok = round(rounds) && ok
            rounds += 1
            if stop() { return (ok, true) }
            wait = FaultSchedule.step(spec, &rng) - (clock.now - started)
        }
        return (ok, false)
    }
}

func signalNumber(_ text: String, option: String = "--signal") throws -> Int32 {
    guard let n = SignalName.number(text) else { throw ValidationError("\(option): unknown signal '\(text)' (known: \(SignalName.known))") }
    return n
}

func requireNames(_ names: [String]) throws {
    if names.isEmpty || names.contains(where: \.isEmpty) {
        throw ValidationError("name at least one process or glob (a fault never hits every process by default)")
    }
}

struct KillRandom: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kill-random",
        abstract: "Kill verified processes of a deployment chosen at random (one unless --limit).",
        discussion: """
        Candidates: the processes with a PID file that match --target (default: every process but the server;
        --include-server adds it; the governor never is one), minus --exclude. Each is verified before any
        signal (alive, same start time and executable as its PID file, started by this deployment's governor);
        stale or forged PID files are reported and skipped. The draw is seeded: same seed, same victims.
        Exit 0 done, 1 nothing could be killed, 2 usage.
        """
    )
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @OptionGroup var repeating: RepeatOptions
    @Option(help: "Processes to choose from: names or globs such as 'h-*' (repeatable).") var target: [String] = []
    @Option(help: "The signal (default SIGKILL).") var signal: String = "SIGKILL"

    func validate() throws { _ = try signalNumber(signal) }

    func run() throws {
        let sig = try signalNumber(signal), paths = try deployment.paths(), seed = try fault.resolvedSeed()
        let query = fault.query(target.isEmpty ? ["*"] : target, random: true)
        try fault.rounds(repeating, seed: seed) { round in
            // Each round draws its own victims (the PIDs change as the governor restarts them).
            SingleFaults.signal(command: "kill-random", sig, query: query, paths: paths,
                                seed: round == 0 ? seed : FaultSchedule.seed(seed, entry: round), dryRun: fault.dryRun)
        }
    }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kill named processes of a deployment (names or globs; verified first).",
        discussion: "Exit 0 done, 1 the fault could not be applied (no verified match, signal refused), 2 usage."
    )
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @OptionGroup var repeating: RepeatOptions
    @Argument(help: "Process names or globs (h-1, 'h-*').") var names: [String] = []
    @Option(help: "The signal (default SIGKILL).") var signal: String = "SIGKILL"

    func validate() throws {
        try requireNames(names)
        _ = try signalNumber(signal)
    }

    func run() throws {
        let sig = try signalNumber(signal), paths = try deployment.paths(), seed = try fault.resolvedSeed()
        try fault.rounds(repeating, seed: seed) { _ in
            SingleFaults.signal(command: "kill", sig, query: fault.query(names), paths: paths, seed: seed, dryRun: fault.dryRun)
        }
    }
}

struct SignalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signal",
        abstract: "Send a signal to named processes of a deployment (verified first)."
    )
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @OptionGroup var repeating: RepeatOptions
    @Argument(help: "Process names or globs.") var names: [String] = []
    @Option(help: "The signal, e.g. SIGUSR1, HUP, 10.") var signal: String

    func validate() throws {
        try requireNames(names)
        _ = try signalNumber(signal)
    }

    func run() throws {
        let sig = try signalNumber(signal), paths = try deployment.paths(), seed = try fault.resolvedSeed()
        try fault.rounds(repeating, seed: seed) { _ in
            SingleFaults.signal(command: "signal", sig, query: fault.query(names), paths: paths, seed: seed, dryRun: fault.dryRun)
        }
    }
}

struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "SIGSTOP named processes, then SIGCONT after --for; resumed at once if szchaos gets SIGINT or SIGTERM.",
        discussion: "Exit 0 paused and resumed, 1 not applied or interrupted (the processes were resumed early), 2 usage."
    )
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @OptionGroup var repeating: RepeatOptions
    @Argument(help: "Process names or globs.") var names: [String] = []
    @Option(name: .customLong("for"), help: "How long to pause (500ms, 2s, 1m).") var duration: String

    func validate() throws {
        try requireNames(names)
        _ = try unitDuration(duration, option: "--for")
    }

    func run() throws {
        // SIGINT/SIGTERM are blocked before anything is stopped, and taken with sigtimedwait: whatever
        // happens, SIGCONT is sent before szchaos exits.
        let sigs = Signals.block()
        let d = DurationText.value(duration)!
        if repeating.repeats {
            // Each round pauses for --for (a signal resumes at once and ends the loop), then waits out the interval.
            let paths = try deployment.paths(), seed = try fault.resolvedSeed()
            var interrupted = false
            try fault.rounds(repeating, seed: seed, stop: { interrupted }) { _ in
                var (outcome, handles) = SingleFaults.pause(query: fault.query(names), paths: paths, seed: seed, dryRun: fault.dryRun, for: d)
                if !handles.isEmpty {
                    let sig = Signals.wait(sigs, timeout: d)
                    outcome.actions += SingleFaults.resume(handles, why: sig.map { "interrupted by \(SignalName.name($0))" } ?? "after \(d.millisText)")
                    handles = []
                    if let sig {
                        interrupted = true
                        outcome.error = "interrupted by \(SignalName.name(sig)): the paused processes were resumed early"
                    }
                }
                return outcome
            }
            return
        }
        var (outcome, handles) = SingleFaults.pause(query: fault.query(names), paths: try deployment.paths(),
                                                    seed: try fault.resolvedSeed(), dryRun: fault.dryRun, for: d)
        if !fault.json {
            print("seed: \(outcome.seed)")
            for l in outcome.lines { print(l) }
            fflush(nil)
        }
        if !handles.isEmpty {
            let clock = ContinuousClock()
            let t0 = clock.now
            let sig = Signals.wait(sigs, timeout: d)
            let why = sig.map { "interrupted by \(SignalName.name($0)) after \((clock.now - t0).millisText)" } ?? "after \(d.millisText)"
            let resumed = SingleFaults.resume(handles, why: why)
            handles = []
            outcome.actions += resumed
            if let sig { outcome.error = "interrupted by \(SignalName.name(sig)): the paused processes were resumed early" }
            if !fault.json {
                for a in resumed { print(a.line) }
                fflush(nil)
            }
        }
        if fault.json {
            print(JSON.string(outcome.json))
            fflush(nil)
        } else if let e = outcome.error {
            FileHandle.standardError.write(Data("szchaos pause: \(e)\n".utf8))
        }
        if !outcome.succeeded { throw ExitCode(1) }
    }
}

/// The shape of every control-channel command: names, options, one `fault.set` (or clear/status).
protocol ControlCommand: ParsableCommand {
    var deployment: DeploymentOptions { get }
    var fault: FaultOptions { get }
    var names: [String] { get }
    var control: ControlOptions { get }
}

extension ControlCommand {
    func apply(_ command: String, method: String = "fault.set", params: [String: JSONValue] = [:], crashNow: Bool = false) throws {
        try fault.finish(SingleFaults.control(command: command, method: method, params: params, query: fault.query(names),
                                              paths: try deployment.paths(), seed: try fault.resolvedSeed(), dryRun: fault.dryRun,
                                              timeout: try control.duration(), crashNow: crashNow))
    }
}

struct DropReplies: ControlCommand {
    static let configuration = CommandConfiguration(
        commandName: "drop-replies",
        abstract: "A handler runs requests but its replies are lost (the next --count, or each with --probability): on its interposer, or a mock handler's control channel."
    )
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @Argument(help: "Handler names or globs.") var names: [String] = []
    @Option(help: "Drop the next N replies.") var count: Int?
    @Option(help: "Drop each reply with this probability (seeded by the handler).") var probability: Double?
    @OptionGroup var control: ControlOptions

    func validate() throws {
        try requireNames(names)
        guard (count == nil) != (probability == nil) else { throw ValidationError("give exactly one of --count N and --probability p") }
        if let count, count < 1 { throw ValidationError("--count takes at least 1, not \(count)") }
        if let p = probability, !(0...1).contains(p) { throw ValidationError("--probability takes a probability from 0 to 1, not \(p)") }
    }

    func run() throws {
        try apply("drop-replies", params: count.map { ["drop_next": .int(Int64($0))] } ?? ["drop_probability": .double(probability!)])
    }
}

struct Delay: ControlCommand {
    static let configuration = CommandConfiguration(abstract: "Delay every reply of a handler by --by +- --jitter (interposer or mock handler).")
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @Argument(help: "Handler names or globs.") var names: [String] = []
    @Option(help: "How long each reply is held (300ms, 1.5s).") var by: String
    @Option(help: "+- this much, uniform (default 0ms).") var jitter: String = "0ms"
    @OptionGroup var control: ControlOptions

    func validate() throws {
        try requireNames(names)
        _ = try unitDuration(by, option: "--by")
        if DurationText.value(jitter) != .zero { _ = try unitDuration(jitter, option: "--jitter") }
    }

    func run() throws {
        let d = try unitDuration(by, option: "--by"), j = DurationText.value(jitter) ?? .zero
        try apply("delay", params: ["delay_ms": .int(Int64(d.wholeMilliseconds)), "jitter_ms": .int(Int64(j.wholeMilliseconds))])
    }
}

struct ForceEFSM: ControlCommand {
    static let configuration = CommandConfiguration(
        commandName: "force-efsm",
        abstract: "Swallow the next request to a handler, leaving the caller's REQ socket in EFSM (interposer or mock handler)."
    )
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @Argument(help: "Handler names or globs.") var names: [String] = []
    @Option(help: "How many requests to swallow.") var count: Int = 1
    @OptionGroup var control: ControlOptions

    func validate() throws {
        try requireNames(names)
        if count < 1 { throw ValidationError("--count takes at least 1") }
    }

    func run() throws { try apply("force-efsm", params: ["swallow_next": .int(Int64(count))]) }
}

struct Crash: ControlCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mock handler: end the process abruptly (exit code or signal); set off at once by one request.",
        discussion: "With --on-next-request the crash is only armed: the handler's next request sets it off."
    )
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @Argument(help: "Handler names or globs.") var names: [String] = []
    @Option(name: .customLong("exit-code"), help: "Exit with this code (default 3).") var exitCode: Int?
    @Option(help: "Crash by this signal instead: SIGABRT, SIGSEGV, SIGBUS, SIGKILL.") var signal: String?
    @Flag(name: .customLong("on-next-request"), help: "Only arm the crash.") var onNextRequest = false
    @OptionGroup var control: ControlOptions

    func validate() throws {
        try requireNames(names)
        if exitCode != nil && signal != nil { throw ValidationError("give --exit-code or --signal, not both") }
        if let exitCode, !(0...255).contains(exitCode) { throw ValidationError("--exit-code takes 0...255") }
        if let signal { _ = try signalNumber(signal) }
    }

    func run() throws {
        var p: [String: JSONValue] = ["crash_after": .int(0)]
        if let exitCode { p["crash_exit_code"] = .int(Int64(exitCode)) }
        if let signal { p["crash_signal"] = .string(SignalName.name(try signalNumber(signal))) }
        try apply("crash", params: p, crashNow: !onNextRequest)
    }
}

struct Garbage: ControlCommand {
    static let configuration = CommandConfiguration(abstract: "Answer every request to a handler with bytes that are not a reply (interposer or mock handler).")
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @Argument(help: "Handler names or globs.") var names: [String] = []
    @Option(help: "bytes (not JSON) or wrong_shape (a JSON array).") var kind: String = "bytes"
    @OptionGroup var control: ControlOptions

    func validate() throws {
        try requireNames(names)
        if kind != "bytes" && kind != "wrong_shape" { throw ValidationError("--kind takes bytes or wrong_shape, not '\(kind)'") }
    }

    func run() throws { try apply("garbage", params: ["garbage": .string(kind)]) }
}

struct Clear: ControlCommand {
    static let configuration = CommandConfiguration(abstract: "Switch every message fault of a handler off (its interposer and its mock control channel).")
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @Argument(help: "Handler names or globs.") var names: [String] = []
    @OptionGroup var control: ControlOptions

    func validate() throws { try requireNames(names) }
    func run() throws { try apply("clear", method: "fault.clear") }
}

struct Status: ControlCommand {
    static let configuration = CommandConfiguration(abstract: "Counters and active faults of a handler's interposer or mock control channel.")
    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var fault: FaultOptions
    @Argument(help: "Handler names or globs.") var names: [String] = []
    @OptionGroup var control: ControlOptions

    func validate() throws { try requireNames(names) }
    func run() throws { try apply("status", method: "status") }
}
