import ArgumentParser
import Chaos
import Foundation
import Governor
import ScheduleZeroWire
import Interposer

/// `szchaos`: the fault injector. Argument parsing and wiring only; the work is in the Chaos library.
struct SZChaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "szchaos",
        abstract: "Fault injection for ScheduleZero: single faults, a message-level chaos proxy, reproducible chaos experiments.",
        discussion: """
        Single faults hit verified processes of a deployment (<root>/<deployment>/pids/*.pid): kill-random, kill,
        pause, signal; and, through the mock handler's control channel, drop-replies, delay, force-efsm, crash,
        garbage, clear, status. `net` puts network faults between hosts (network namespaces: partition, loss,
        bandwidth, latency) and heals them. `conform` checks a live handler or server against the wire protocol. Exit status:
        0 done (every check held), 1 failure (a check failed, a fault could not be applied), 2 usage.
        """,
        version: HarnessVersion.current,
        subcommands: [KillRandom.self, Kill.self, Pause.self, SignalCommand.self, DropReplies.self, Delay.self, ForceEFSM.self,
                      Crash.self, Garbage.self, Clear.self, Status.self, Links.self, Conform.self, Proxy.self, ProxyFaultsCommand.self, Run.self,
                      ReportCommand.self, Net.self]
    )
}

/// Blocks SIGINT and SIGTERM in every thread (call before starting any) and returns a waiter for them.
enum Signals {
    static func block() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return set
    }

    /// Waits for SIGINT or SIGTERM; returns the signal.
    static func wait(_ set: sigset_t) -> Int32 {
        var s = set
        var sig: Int32 = 0
        while sigwait(&s, &sig) != 0 {}
        return sig
    }

    /// Waits for SIGINT or SIGTERM at most `timeout` (sigtimedwait); returns the signal, nil when the time ran out.
    static func wait(_ set: sigset_t, timeout: Duration) -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var s = set
        while true {
            let left = deadline - clock.now
            if left <= .zero { return nil }
            let (secs, atto) = left.components
            var ts = timespec(tv_sec: Int(secs), tv_nsec: Int(atto / 1_000_000_000))
            let r = sigtimedwait(&s, nil, &ts)
            if r > 0 { return r }
            if errno == EAGAIN { return nil }
        }
    }
}

/// SIGINT/SIGTERM for async commands: a handler (any thread may take the signal) writes the signal number
/// to a pipe, and a thread of the command reads it. Blocking the signals would not do here: the main thread's
/// mask is not under the command's control once the async main has handed over to the cooperative pool.
enum SignalPipe {
    nonisolated(unsafe) static var writeFD: Int32 = -1

    /// Installs the handlers; returns the pipe's read end.
    static func install() -> Int32 {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return -1 }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        writeFD = fds[1]
        var sa = sigaction()
        sa.__sigaction_handler.sa_handler = { sig in
            var b = UInt8(truncatingIfNeeded: sig)
            _ = write(SignalPipe.writeFD, &b, 1)
        }
        sigemptyset(&sa.sa_mask)
        sa.sa_flags = Int32(SA_RESTART)
        sigaction(SIGINT, &sa, nil)
        sigaction(SIGTERM, &sa, nil)
        return fds[0]
    }

    /// Blocks until a signal arrives (on a thread of its own, which lets SIGINT/SIGTERM in); returns it.
    static func wait(_ fd: Int32) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        var b: UInt8 = 0
        while read(fd, &b, 1) != 1 {}
        return Int32(b)
    }
}

func parseSeed(_ text: String) throws -> UInt64 {
    guard let s = UInt64(text) else { throw ValidationError("--seed takes a whole number from 0 to \(UInt64.max), not '\(text)'") }
    return s
}

func probability(_ v: Double?, _ name: String) throws {
    if let v, !(0...1).contains(v) { throw ValidationError("--\(name) takes a probability from 0 to 1, not \(v)") }
}

struct Proxy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a message-level chaos proxy between REQ clients and a REP handler.",
        discussion: """
        Clients connect to --listen; the proxy forwards to --upstream (ROUTER/DEALER inside, envelopes intact).
        Each fault has a probability; all are switchable at run time through --control (JSON requests:
        ping, status, set {drop, delay, delay_ms, jitter_ms, duplicate, reorder, corrupt, blackhole,
        direction}, clear). The seed is always printed; the same seed and traffic give the same decisions.
        Stops on SIGINT or SIGTERM.
        """
    )

    @Option(help: "Endpoint the clients connect to, e.g. tcp://127.0.0.1:5601.") var listen: String
    @Option(help: "The REP handler's endpoint, e.g. tcp://127.0.0.1:4245.") var upstream: String
    @Option(help: "Control endpoint (REP) for ping/status/set/clear.") var control: String?
    @Option(help: "Seed for every random decision (default: drawn and printed).") var seed: String?
    @Option(help: "Probability of losing an exchange (with --direction requests|replies: a message of that side).") var drop: Double = 0
    @Option(help: "Delay each exchange (its request) this long (300ms, 1s; default 0ms).") var delay: String = "0ms"
    @Option(help: "+- this much on the delay (default 0ms).") var jitter: String = "0ms"
    @Option(name: .customLong("delay-probability"), help: "Probability that a message is delayed.") var delayProbability: Double = 1
    @Option(help: "Probability of forwarding a message twice.") var duplicate: Double = 0
    @Option(help: "Probability of holding a message and swapping it with the next.") var reorder: Double = 0
    @Option(help: "Probability of flipping a byte of the body.") var corrupt: Double = 0
    @Flag(help: "Swallow every message until cleared.") var blackhole = false
    @Option(help: "Where faults apply: both (default: each fault once per exchange, see docs/CHAOS.md), requests or replies.")
    var direction: String = "both"

    func validate() throws {
        for (v, n) in [(drop, "drop"), (duplicate, "duplicate"), (reorder, "reorder"), (corrupt, "corrupt"), (delayProbability, "delay-probability")] {
            try probability(v, n)
        }
        for (text, option) in [(delay, "--delay"), (jitter, "--jitter")] where DurationText.value(text) != .zero {
            _ = try unitDuration(text, option: option)
        }
        if FaultDirection(rawValue: direction) == nil { throw ValidationError("--direction takes requests, replies or both, not '\(direction)'") }
        if let seed { _ = try parseSeed(seed) }
    }

    func run() throws {
        let sigs = Signals.block()
        let seed = try seed.map(parseSeed) ?? SeededGenerator.randomSeed()
        print("seed: \(seed)")
        let faults = ProxyFaults(drop: drop, delay: delayProbability, delayMs: Int((DurationText.value(delay) ?? .zero).wholeMilliseconds),
                                 jitterMs: Int((DurationText.value(jitter) ?? .zero).wholeMilliseconds), duplicate: duplicate,
                                 reorder: reorder, corrupt: corrupt, blackhole: blackhole,
                                 direction: FaultDirection(rawValue: direction) ?? .both)
        let proxy: ChaosProxy
        do {
            proxy = try ChaosProxy(ChaosProxyConfiguration(listen: listen, upstream: upstream, control: control, seed: seed, faults: faults))
        } catch {
            throw Failure("szchaos proxy: \(error)")
        }
        print("ready: listen \(proxy.listenEndpoint) upstream \(upstream)" + (proxy.controlEndpoint.map { " control \($0)" } ?? "")
              + " faults \(faults)")
        fflush(nil)
        let sig = Signals.wait(sigs)
        proxy.stop()
        let s = proxy.stats
        print("stopped on \(sig == SIGINT ? "SIGINT" : "SIGTERM"): forwarded \(s.forwarded[.request] ?? 0) requests, \(s.forwarded[.reply] ?? 0) replies; "
              + "dropped \(s.dropped), delayed \(s.delayed), duplicated \(s.duplicated), reordered \(s.reordered), corrupted \(s.corrupted), blackholed \(s.blackholed)")
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a chaos experiment from a YAML file and write its journal, JUnit XML and summary.",
        discussion: """
        With a `deployment`, its processes and endpoints come from its deployment file (--file, default
        Fixtures/deployments/<name>.yaml) and its folder under --root; when it is not running and the experiment
        says start_if_not_running, szchaos starts it under a governor in this process (and stops it afterwards
        with stop_after). SIGINT/SIGTERM: paused processes are resumed, a deployment started here is stopped.
        Exit status 0 when every check held, 1 when one failed or the experiment could not run, 2 usage.
        """
    )

    @Argument(help: "The experiment file.") var experiment: String
    @Option(help: "Seed (overrides the file's).") var seed: String?
    @Option(help: "Output directory (overrides the file's output.directory).") var output: String?
    @Option(help: "Deployments root (default: $SZ_DEPLOYMENTS_ROOT, else the nearest deployments/ at or above this folder).") var root: String?
    @Option(help: "The deployment file (default: Fixtures/deployments/<deployment>.yaml).") var file: String?
    @Flag(help: "Print the fault plan and exit without running anything.") var dryRun = false

    func validate() throws { if let seed { _ = try parseSeed(seed) } }

    func run() async throws {
        let signalFD = SignalPipe.install()
        let session = ExperimentSession(experimentFile: experiment, seed: try seed.map(parseSeed), outputDirectory: output, root: root,
                                        deploymentFile: file, dryRun: dryRun)
        let interruption = ExperimentSession.Interruption(wait: { SignalPipe.wait(signalFD) }, exit: { Foundation.exit($0) })
        let status: Int32
        do {
            status = try await session.run(interruption: interruption) { event in
                switch event {
                case .seed(let seed):
                    print("seed: \(seed)")
                    fflush(nil)
                case .planned(let fault): print(fault)
                case .notice(let text): FileHandle.standardError.write(Data("szchaos run: \(text)\n".utf8))
                case .summary(let summary): print(summary, terminator: "")
                case .htmlReport(let path): print("report: \(path)")
                }
            }
        } catch {
            throw Failure("szchaos run: \(error)")
        }
        fflush(nil)
        if status != 0 { throw ExitCode(status) }
    }
}

/// A failure to report on stderr with exit status 1.
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@main
enum Main {
    static func main() async {
        // pause, proxy and net (synchronous, on the main thread) block SIGINT/SIGTERM before any thread starts and
        // take them with sigwait/sigtimedwait; `run` (async, on the cooperative pool) uses `SignalPipe`.
        if let sub = CommandLine.arguments.dropFirst().first, ["pause", "proxy", "net"].contains(sub) { _ = Signals.block() }
        do {
            var command = try SZChaos.parseAsRoot()
            if var c = command as? AsyncParsableCommand { try await c.run() } else { try command.run() }
        } catch let f as Failure {
            FileHandle.standardError.write(Data((f.description + "\n").utf8))
            exit(1)
        } catch {
            let code = SZChaos.exitCode(for: error)
            let message = SZChaos.fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                exit(0)
            }
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            // Usage errors exit 2 (ArgumentParser's default is 64), everything else as the command said.
            exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}
