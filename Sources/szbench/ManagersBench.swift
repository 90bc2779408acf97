import ArgumentParser
import Foundation
import Governor
import ScheduleZeroWire
import Synchronization
import ZMQClient
#if canImport(Glibc)
import Glibc
#endif

/// szgovernor beside supervisord and circusd (from PyPI, in a virtual environment cached under
/// .build/bench-venv) with the same children: `count` release szmock handlers on ipc endpoints of their own,
/// registering with nobody. One manager after the other: cold start until all answer ping, RSS and threads of
/// the manager alone, its CPU, context switches (every thread, /proc/PID/task/*/status) and wake-ups while
/// idle, its children's CPU, restart after SIGKILL (until the manager has a new child), stop (SIGTERM until the
/// manager and its children are gone); ratios to supervisord. Then szgovernor at each `--scale`: threads, RSS,
/// `status` per process. Then the bare floors of `szbench governor` (Floor) against szgovernor's figures.
/// Everything started is stopped and every temporary folder removed, also on SIGINT / SIGTERM.
struct ManagersBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "managers",
        abstract: "szgovernor beside supervisord and circusd with the same szmock handlers; scale figures; floors."
    )

    @Option(help: "Idle window for CPU and context switches, e.g. 30s (quick try: 5s).") var idle = "30s"
    @Option(help: "Window for wake-ups, e.g. 10s (at most --idle).") var wake = "10s"
    @Option(help: "szgovernor scale figures at these handler counts.") var scale = "20,100,300"
    @Option(help: "Handlers under each manager.") var count = 20
    @Option(help: "SIGKILLs of szgovernor's handlers (and of the floor) for restart figures.") var kills = 20
    @Option(help: "SIGKILLs under supervisord and circusd (each costs about 1 s and 3 s).") var slowKills = 5
    @Option(help: "Floor start/stop rounds (medians are reported).") var rounds = 3
    @Option(help: "Managers to run, comma-separated (none: only the scale figures).") var managers = "supervisord,circusd,szgovernor"
    @Option(help: "The szmock executable (default: next to szbench, or $SZMOCK).") var szmock: String?
    @Option(help: "The szgovernor executable (default: next to szbench).") var szgovernor: String?
    @Option(help: "Virtual environment with supervisor and circus (default: <package>/.build/bench-venv; made if missing).")
    var venv: String?

    func validate() throws {
        guard let i = DurationText.value(idle), i > .zero else { throw ValidationError("--idle: a duration such as 30s") }
        guard let w = DurationText.value(wake), w > .zero else { throw ValidationError("--wake: a duration such as 10s") }
        guard scaleCounts.count > 0, scaleCounts.allSatisfy({ $0 > 0 }) else { throw ValidationError("--scale: counts such as 20,100,300") }
        guard count > 0, kills > 0, slowKills > 0, rounds > 0 else { throw ValidationError("counts must be > 0") }
        _ = w
    }

    var scaleCounts: [Int] { scale.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        BenchCleanup.installSignalThread()
        let bin = BuildVariables.executableDirectory()
        let mock = szmock ?? BuildVariables.variables()["SZMOCK"] ?? bin + "/szmock"
        let governor = szgovernor ?? bin + "/szgovernor"
        for exe in [mock, governor] where !FileManager.default.isExecutableFile(atPath: exe) {
            throw ValidationError("no executable at \(exe): build it (scripts/bench.sh does) or pass --szmock / --szgovernor")
        }
        let idleWindow = DurationText.value(idle)!
        let wakeWindow = min(DurationText.value(wake)!, idleWindow)
        let dir = try BenchCleanup.temporaryDirectory()
        defer { BenchCleanup.removeDirectory(dir) }
        func load() -> String {
            (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        }
        print("managers: \(count) szmock handlers each, idle \(idle), wake-ups over \(Measure.fmt(wakeWindow.seconds, 1)) s, scale \(scale); loadavg \(load())")
        defer { print("\nloadavg at the end: \(load())") }
        print("  szmock \(mock)\n  szgovernor \(governor)")

        let wanted = managers.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { $0 != "none" }
        var python: String?
        if wanted.contains(where: { $0 != "szgovernor" }) {
            let venvDir = venv ?? ((BuildVariables.variables()["PACKAGE_DIR"]).map { $0 + "/.build/bench-venv" } ?? dir + "/venv")
            python = PythonManagers.prepare(venv: venvDir)
        }
        var results: [ManagerFigures] = []
        for name in wanted {
            let kind: ManagerKind
            switch name {
            case "supervisord": kind = .supervisord
            case "circusd": kind = .circusd
            case "szgovernor": kind = .szgovernor
            default: throw ValidationError("--managers: supervisord, circusd, szgovernor (not \(name))")
            }
            if kind != .szgovernor, python == nil {
                print("  \(name): skipped (no virtual environment with supervisor and circus; see above)")
                continue
            }
            let sub = dir + "/" + name
            try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
            let run = ManagerRun(kind: kind, count: count, dir: sub, szmock: mock, szgovernor: governor,
                                 venvBin: python.map { ($0 as NSString).deletingLastPathComponent })
            do {
                let figures = try run.measure(idle: idleWindow, wake: wakeWindow, kills: kind == .szgovernor ? kills : slowKills)
                results.append(figures)
                print("  \(name): done (cold start \(Measure.fmt(figures.coldStartMs, 1)) ms)")
            } catch {
                print("  \(name): FAILED: \(error)")
            }
            fflush(nil)
        }
        printComparison(results, idle: idleWindow, wake: wakeWindow)

        // Scale: szgovernor only.
        print("\nszgovernor at scale (threads and RSS of the governor; status over one kept control connection, raw frames, median of 9):")
        var scaleFigures: [(Int, ScaleFigures)] = []
        for n in scaleCounts {
            let sub = dir + "/scale-\(n)"
            try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
            let run = ManagerRun(kind: .szgovernor, count: n, dir: sub, szmock: mock, szgovernor: governor, venvBin: nil)
            do {
                let f = try run.scaleFigures()
                scaleFigures.append((n, f))
                Measure.row("\(n) handlers: threads / RSS", "\(f.threads)", "RSS \(Measure.fmt(f.rssMiB, 1)) MiB; start -> all ping \(Measure.fmt(f.startMs, 0)) ms")
                Measure.row("\(n) handlers: status", "\(Measure.fmt(f.statusMs, 2)) ms",
                            "\(Measure.fmt(f.statusUsPerProcess, 1)) us/process, \(Measure.fmt(f.statusOverPingUsPerProcess, 1)) over a ping (\(Measure.fmt(f.pingMs, 3)) ms); \(Measure.fmt(f.replyKiB, 0)) KiB; down \(Measure.fmt(f.downMs, 1)) ms")
            } catch {
                print("  \(n) handlers: FAILED: \(error)")
            }
            fflush(nil)
        }
        if let first = scaleFigures.first, let last = scaleFigures.last, scaleFigures.count > 1 {
            let constant = first.1.threads == last.1.threads
            Measure.row("threads \(first.0) -> \(last.0)", "\(first.1.threads) -> \(last.1.threads)",
                        "goal: constant: \(constant ? "met" : "NOT met")")
        }
        if let big = scaleFigures.last {
            let us = big.1.statusUsPerProcess
            Measure.row("status per process at \(big.0)", "\(Measure.fmt(us, 1)) us", "goal <= 5 us at 300: \(us <= 5 ? "met" : "NOT met")\(big.0 < 300 ? " (measured at \(big.0), not 300)" : "")")
        }

        // Floors (szbench governor's Floor) against szgovernor's own figures from the run above.
        guard let gov = results.first(where: { $0.kind == .szgovernor }) else { return }
        print("\nszgovernor against the bare floor (posix_spawn + blocking waitid, the same szmock), goal <= 1.1x:")
        let floor = Floor(szmock: mock, dir: dir)
        let (floorRespawn, _) = try floor.restarts(kills)
        var floorStart: [Double] = [], floorStop: [Double] = []
        for _ in 0..<rounds {
            let (start, stop) = try floor.startStop(count)
            floorStart.append(start)
            floorStop.append(stop)
        }
        func line(_ label: String, _ value: Double, _ floorSamples: [Double], note: String = "") {
            let f = Measure.median(floorSamples)
            Measure.row(label, Measure.fmt(value, 2) + " ms",
                        "floor \(Measure.fmt(f, 2)) ms (x\(Measure.fmt(value / f, 2))); \(Measure.verdict(value / f, goal: 1.1))\(note)")
        }
        line("kill -9 -> new pid (median of \(gov.restartMs.count))", Measure.median(gov.restartMs), floorRespawn,
             note: "; a new PID seen from /proc within about 0.1 ms")
        line("cold start \(count) -> all answer ping", gov.coldStartMs, floorStart, note: "; includes szgovernor's own start")
        line("stop \(count) (SIGTERM -> all gone)", gov.stopMs, floorStop)
    }

    func printComparison(_ results: [ManagerFigures], idle: Duration, wake: Duration) {
        guard !results.isEmpty else { return }
        let names = results.map(\.kind.rawValue)
        print("\nside by side (\(count) handlers each, one manager after the other; idle \(Measure.fmt(idle.seconds, 1)) s):")
        let header = "figure".padding(toLength: 34, withPad: " ", startingAt: 0)
            + names.map { $0.padding(toLength: 14, withPad: " ", startingAt: 0) }.joined() + "goal"
        print("  " + header)
        let sup = results.first { $0.kind == .supervisord }
        func row(_ label: String, _ value: (ManagerFigures) -> Double, _ digits: Int, _ unit: String, goal: (Double, Double?) -> String) {
            var line = label.padding(toLength: 34, withPad: " ", startingAt: 0)
            for r in results {
                var cell = (digits == 0 ? "\(Int(value(r).rounded()))" : Measure.fmt(value(r), digits)) + unit
                if let s = sup, r.kind != .supervisord, value(s) > 0 { cell += " x" + Measure.fmt(value(r) / value(s), 2) }
                line += cell.padding(toLength: 14, withPad: " ", startingAt: 0)
            }
            if let g = results.first(where: { $0.kind == .szgovernor }) { line += goal(value(g), sup.map(value)) }
            print("  " + line)
        }
        func notAbove(_ g: Double, _ s: Double?) -> String {
            guard let s else { return "(no supervisord)" }
            return "<= supervisord: \(g <= s ? "met" : "NOT met")"
        }
        let perIdle = 30 / idle.seconds
        row("RSS of the manager, MiB", { $0.rssMiB }, 1, "", goal: notAbove)
        row("threads", { Double($0.threads) }, 0, "", goal: { g, _ in "constant 20 -> 300: see scale" })
        row("manager CPU per 30 s idle, ms", { $0.idleCpuMs * perIdle }, 2, "", goal: notAbove)
        row("context switches per s", { $0.switchesPerSecond }, 2, "", goal: { _, _ in "" })
        row("wake-ups over \(Measure.fmt(wake.seconds, 1)) s", { Double($0.wakeUps) }, 0, "", goal: { g, _ in "none: \(g == 0 ? "met" : "NOT met")" })
        row("children's CPU per 30 s idle, ms", { $0.childrenIdleCpuMs * perIdle }, 1, "", goal: { g, s in
            guard let s else { return "(no supervisord)" }
            return "equal to supervisord's (within 10%): \(g <= s * 1.1 ? "met" : "NOT met")"
        })
        row("cold start \(count) -> all ping, ms", { $0.coldStartMs }, 1, "", goal: { _, _ in "no worse than today (157 ms)" })
        row("kill -9 -> new pid, ms (median)", { Measure.median($0.restartMs) }, 2, "", goal: { _, _ in "no worse than today (2.47 ms)" })
        row("stop \(count) (SIGTERM -> gone), ms", { $0.stopMs }, 1, "", goal: { _, _ in "" })
        print("  (RSS: the manager process alone, VmRSS after the idle window; CPU: the kernel's CPU clock of the manager,")
        print("  all threads; context switches: voluntary + involuntary over every thread; wake-ups: voluntary switches.)")
    }
}

enum ManagerKind: String, Sendable { case supervisord, circusd, szgovernor }

struct ManagerFigures {
    var kind: ManagerKind
    var coldStartMs = 0.0
    var rssMiB = 0.0
    var threads = 0
    var idleCpuMs = 0.0
    var switchesPerSecond = 0.0
    var wakeUps: UInt64 = 0
    var childrenIdleCpuMs = 0.0
    var restartMs: [Double] = []
    var stopMs = 0.0
}

struct ScaleFigures {
    var startMs = 0.0
    var threads = 0
    var rssMiB = 0.0
    var statusMs = 0.0
    var statusUsPerProcess = 0.0
    var pingMs = 0.0
    var statusOverPingUsPerProcess = 0.0
    var replyKiB = 0.0
    var downMs = 0.0
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// One manager governing `count` handlers in `dir`.
struct ManagerRun {
    let kind: ManagerKind
    let count: Int
    let dir: String
    let szmock: String
    let szgovernor: String
    let venvBin: String?

    func endpoint(_ i: Int) -> String {
        switch kind {
        case .szgovernor: "ipc://\(dir)/deployments/bench/run/h-\(i).sock"
        default: "ipc://\(dir)/h-\(i).sock"
        }
    }

    var controlEndpoint: String { "ipc://\(dir)/deployments/bench/run/governor.control" }

    /// Writes the configuration and returns the manager's argv.
    func prepare() throws -> [String] {
        switch kind {
        case .supervisord:
            let conf = """
                [supervisord]
                nodaemon=true
                logfile=\(dir)/supervisord.log
                pidfile=\(dir)/supervisord.pid
                childlogdir=\(dir)

                [program:h]
                command=\(szmock) handler --id h-%(process_num)d --bind ipc://\(dir)/h-%(process_num)d.sock
                process_name=%(program_name)s-%(process_num)d
                numprocs=\(count)
                numprocs_start=1
                autorestart=true
                stopsignal=TERM
                stopwaitsecs=5
                stdout_logfile=NONE
                redirect_stderr=true

                """
            try conf.write(toFile: dir + "/supervisord.conf", atomically: true, encoding: .utf8)
            return [venvBin! + "/supervisord", "-c", dir + "/supervisord.conf"]
        case .circusd:
            let conf = """
                [circus]
                endpoint = ipc://\(dir)/circus-control.sock
                pubsub_endpoint = ipc://\(dir)/circus-pubsub.sock
                statsd = false
                check_delay = 5

                [watcher:h]
                cmd = \(szmock) handler --id h-$(circus.wid) --bind ipc://\(dir)/h-$(circus.wid).sock
                numprocesses = \(count)
                copy_env = true
                stop_signal = TERM
                graceful_timeout = 5

                """
            try conf.write(toFile: dir + "/circus.ini", atomically: true, encoding: .utf8)
            return [venvBin! + "/circusd", dir + "/circus.ini"]
        case .szgovernor:
            let yaml = """
                # szbench managers: \(count) szmock handlers, no server (nothing registers), restarts at once.
                deployment: bench
                max_processes: \(max(1000, count + 1))
                defaults:
                  stop_timeout: 5s
                  restart:
                    policy: always
                    max_restarts: 100000
                    window: 1s
                    backoff: {initial: 50ms, multiplier: 2, max: 2s, jitter: 0, immediate: 100000}
                handlers:
                  - id: h
                    replicas: \(count)
                    endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
                    command: ["\(szmock)", "handler", "--id", "${NAME}", "--bind", "${ENDPOINT}"]
                    readiness: {ping: "${ENDPOINT}", within: 20ms, timeout: 60s}

                """
            try yaml.write(toFile: dir + "/bench.yaml", atomically: true, encoding: .utf8)
            return [szgovernor, "up", "--deployment", "bench", "--root", dir + "/deployments", "--file", dir + "/bench.yaml"]
        }
    }

    /// Starts the manager and waits until every handler answers ping. Returns its pid and the time taken.
    func start() throws -> (pid_t, Double) {
        let argv = try prepare()
        let t0 = ContinuousClock.now
        let pid = try BenchCleanup.spawnManager(argv, log: dir + "/manager.out")
        for i in 1...count {
            guard PingProbe.pingUntilAnswered(endpoint(i), within: .milliseconds(20), deadline: t0 + .seconds(120)) else {
                let tail = (try? String(contentsOfFile: dir + "/manager.out", encoding: .utf8))?.suffix(600) ?? ""
                BenchCleanup.stopManager(pid)
                throw ValidationError("\(kind.rawValue): handler \(i) did not answer ping within 120 s; its output ends:\n\(tail)")
            }
        }
        return (pid, (ContinuousClock.now - t0).ms)
    }

    func measure(idle: Duration, wake: Duration, kills: Int) throws -> ManagerFigures {
        var f = ManagerFigures(kind: kind)
        let (pid, cold) = try start()
        defer { BenchCleanup.stopManager(pid) }
        f.coldStartMs = cold
        let children = ProcUsage.children(of: pid)
        if children.count != count { print("  \(kind.rawValue): \(children.count) children, not \(count)") }
        Thread.sleep(forTimeInterval: 2)  // let start-up work (readiness probes, start timers) end

        let s0 = Sample(pid, children)
        Thread.sleep(forTimeInterval: wake.seconds)
        let s1 = Sample(pid, children)
        Thread.sleep(forTimeInterval: (idle - wake).seconds)
        let s2 = Sample(pid, children)
        let window = idle.seconds
        f.idleCpuMs = Double(s2.cpuNs &- s0.cpuNs) / 1e6
        f.childrenIdleCpuMs = Double(s2.childrenCpuNs &- s0.childrenCpuNs) / 1e6
        let idleSwitches = s2.switches(since: s0)
        f.switchesPerSecond = Double(idleSwitches.voluntary + idleSwitches.involuntary) / window
        f.wakeUps = s1.switches(since: s0).voluntary
        let status = ProcTaskStatus.read("/proc/\(pid)/status")
        f.rssMiB = Double(status?.residentKiB ?? 0) / 1024
        f.threads = status?.threads ?? 0

        // Restart after SIGKILL: until a PID allocated after the kill belongs to a child of the manager.
        for k in 0..<kills {
            let before = Set(ProcUsage.children(of: pid))
            guard !before.isEmpty else { throw ValidationError("\(kind.rawValue): no children to kill") }
            let victim = before.sorted()[k % before.count]
            let watch = NewChildWatch(manager: pid, known: before)
            let t0 = ContinuousClock.now
            kill(victim, SIGKILL)
            guard let s = watch.wait(deadline: t0 + .seconds(30)) else {
                throw ValidationError("\(kind.rawValue): no new child within 30 s of a SIGKILL")
            }
            f.restartMs.append((s - t0).ms)
            // Let the new child come up (and supervisord's startsecs pass) before the next kill.
            for i in 1...count { _ = PingProbe.pingUntilAnswered(endpoint(i), within: .milliseconds(20), deadline: .now + .seconds(30)) }
            if kind == .supervisord { Thread.sleep(forTimeInterval: 1.1) }
        }

        let all = ProcUsage.children(of: pid)
        let t1 = ContinuousClock.now
        BenchCleanup.stopManager(pid)
        BenchCleanup.waitGone(all, deadline: t1 + .seconds(30))
        f.stopMs = (ContinuousClock.now - t1).ms
        return f
    }

    func scaleFigures() throws -> ScaleFigures {
        var f = ScaleFigures()
        let (pid, startMs) = try start()
        defer { BenchCleanup.stopManager(pid) }
        f.startMs = startMs
        Thread.sleep(forTimeInterval: 1)
        let st = ProcTaskStatus.read("/proc/\(pid)/status")
        f.threads = st?.threads ?? 0
        f.rssMiB = Double(st?.residentKiB ?? 0) / 1024
        let client = try SyncClient(endpoint: controlEndpoint, configuration: ClientConfiguration(timeout: .seconds(10), attempts: 1))
        defer { client.terminate() }
        // Raw frames (no decoding here): the time is the governor's and the transport's, not this client's parse.
        let ping = Request(method: "ping", params: [:]).encoded(), status = Request(method: "status", params: [:]).encoded()
        var pings: [Double] = [], statuses: [Double] = []
        for _ in 0..<9 {
            let t0 = ContinuousClock.now
            _ = try client.exchange(ping, method: "ping")
            pings.append((ContinuousClock.now - t0).ms)
        }
        var replyBytes = 0
        for _ in 0..<9 {
            let t0 = ContinuousClock.now
            let bytes = try client.exchange(status, method: "status")
            statuses.append((ContinuousClock.now - t0).ms)
            replyBytes = bytes.count
        }
        let reply = try Reply.decode(try client.exchange(status, method: "status"))
        let n = reply["processes"]?.arrayValue?.count ?? 0
        guard n == count else { throw ValidationError("status listed \(n) processes, not \(count)") }
        f.pingMs = Measure.median(pings)
        f.statusMs = Measure.median(statuses)
        f.statusUsPerProcess = f.statusMs * 1000 / Double(count)
        f.statusOverPingUsPerProcess = (f.statusMs - f.pingMs) * 1000 / Double(count)
        f.replyKiB = Double(replyBytes) / 1024
        let children = ProcUsage.children(of: pid)
        let t1 = ContinuousClock.now
        _ = try client.call("down")
        f.downMs = (ContinuousClock.now - t1).ms
        BenchCleanup.waitGone(children, deadline: t1 + .seconds(30))
        return f
    }
}

/// Sees a manager's new child as soon as its PID exists: PIDs are handed out in order, so only those after
/// /proc/sys/kernel/ns_last_pid (read before the kill) are looked at, one /proc/PID/stat each (its parent).
/// A PID whose /proc entry is not there yet is looked at again; the full children lists are read every
/// 20 ms as well (PID wrap-around, a missed entry). Costs a few us per look, not a scan of every thread.
struct NewChildWatch {
    let manager: pid_t
    let known: Set<pid_t>
    let last: pid_t

    init(manager: pid_t, known: Set<pid_t>) {
        self.manager = manager
        self.known = known
        last = NewChildWatch.lastPid() ?? 0
    }

    static func lastPid() -> pid_t? {
        (try? String(contentsOfFile: "/proc/sys/kernel/ns_last_pid", encoding: .utf8))
            .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func wait(deadline: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        var next = last + 1
        var pending: [pid_t: ContinuousClock.Instant] = [:]  // allocated, no /proc entry yet: since when
        var fullCheck = ContinuousClock.now + .milliseconds(20)
        while ContinuousClock.now < deadline {
            if let current = NewChildWatch.lastPid(), current >= next {
                for p in next...current { pending[p] = .now }
                next = current + 1
            }
            for (p, since) in pending {
                if let stat = ProcStat.read(pid: p) {
                    if stat.parentPid == manager, !known.contains(p) { return .now }
                    pending[p] = nil
                } else if ContinuousClock.now - since > .milliseconds(5) {
                    pending[p] = nil
                }
            }
            if ContinuousClock.now >= fullCheck {
                if ProcUsage.children(of: manager).contains(where: { !known.contains($0) }) { return .now }
                fullCheck = .now + .milliseconds(20)
            }
            usleep(50)
        }
        return nil
    }
}

/// The manager's and its children's counters at one moment; context switches per thread, so a thread that
/// ends inside a window takes only its own counts out (it is not seen after it ends), not the others'.
struct Sample {
    var cpuNs: UInt64 = 0, childrenCpuNs: UInt64 = 0
    var switches: [pid_t: (voluntary: UInt64, involuntary: UInt64)] = [:]

    init(_ pid: pid_t, _ children: [pid_t]) {
        switches = ProcUsage.contextSwitchesByThread(of: pid)
        cpuNs = ProcUsage.cpuNanoseconds(of: pid) ?? 0
        childrenCpuNs = children.reduce(0) { $0 + (ProcUsage.cpuNanoseconds(of: $1) ?? 0) }
    }

    /// Switches made since `earlier` by the threads alive now (a thread born in between: all of its own).
    func switches(since earlier: Sample) -> (voluntary: UInt64, involuntary: UInt64) {
        var v: UInt64 = 0, n: UInt64 = 0
        for (tid, now) in switches {
            let before = earlier.switches[tid] ?? (0, 0)
            v += now.voluntary >= before.voluntary ? now.voluntary - before.voluntary : now.voluntary
            n += now.involuntary >= before.involuntary ? now.involuntary - before.involuntary : now.involuntary
        }
        return (v, n)
    }
}

/// supervisor and circus from PyPI in a virtual environment (made once, reused).
enum PythonManagers {
    /// The venv's python, or nil (with a printed note) when it cannot be made.
    static func prepare(venv: String) -> String? {
        let python = venv + "/bin/python"
        let ready = { FileManager.default.isExecutableFile(atPath: venv + "/bin/supervisord")
            && FileManager.default.isExecutableFile(atPath: venv + "/bin/circusd") }
        if ready() { return python }
        print("  making a virtual environment with supervisor and circus in \(venv) (pip install; once)")
        fflush(nil)
        let log = venv + ".log"
        guard run(["/usr/bin/python3", "-m", "venv", venv], log: log) == 0 else {
            print("  skipped supervisord and circusd: `/usr/bin/python3 -m venv` failed (apt-get install -y python3-venv); see \(log)")
            return nil
        }
        guard run([python, "-m", "pip", "install", "-q", "supervisor", "circus"], log: log) == 0, ready() else {
            print("  skipped supervisord and circusd: `pip install supervisor circus` failed (no PyPI?); see \(log)")
            return nil
        }
        return python
    }

    static func run(_ argv: [String], log: String) -> Int32 {
        guard let pid = try? BenchCleanup.spawn(argv, log: log, ownGroup: false) else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
    }
}

/// The write end of the signal pipe (set once, before any handler is installed).
nonisolated(unsafe) private var signalPipe: Int32 = -1

/// Every manager started and every folder made, stopped and removed at the end and on SIGINT / SIGTERM.
enum BenchCleanup {
    private static let state = Mutex<(managers: Set<pid_t>, dirs: Set<String>)>(([], []))

    /// SIGINT, SIGTERM and SIGHUP, in whichever thread they land, write their number to a pipe; a thread of
    /// its own reads it, stops every manager, kills the floor's handlers, removes every folder and exits 130.
    /// (A handler, not a mask: threads that exist before `run` would take a signal they do not block.)
    static func installSignalThread() {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        signalPipe = fds[1]
        let readEnd = fds[0]
        for s in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                var b = UInt8(truncatingIfNeeded: sig)
                _ = write(signalPipe, &b, 1)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(s, &action, nil)
        }
        Thread.detachNewThread {
            var b: UInt8 = 0
            while read(readEnd, &b, 1) != 1 {}
            print("\nszbench managers: signal \(b): stopping every manager and removing its folders")
            fflush(nil)
            let (managers, dirs) = state.withLock { ($0.managers, $0.dirs) }
            for pid in managers { stopManager(pid) }
            for child in ProcUsage.children(of: getpid()) { kill(child, SIGKILL) }  // the floor's handlers
            for d in dirs { try? FileManager.default.removeItem(atPath: d) }
            fflush(nil)
            exit(130)
        }
    }

    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/szm-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ValidationError("mkdtemp failed") }
        let dir = String(cString: made)
        state.withLock { _ = $0.dirs.insert(dir) }
        return dir
    }

    static func removeDirectory(_ dir: String) {
        try? FileManager.default.removeItem(atPath: dir)
        state.withLock { _ = $0.dirs.remove(dir) }
    }

    /// posix_spawn with stdout and stderr to `log`, stdin from /dev/null, an empty signal mask and, with
    /// `ownGroup`, a process group of its own (a terminal's Ctrl-C reaches only szbench, which stops it).
    static func spawn(_ argv: [String], log: String, ownGroup: Bool) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var flags = Int16(POSIX_SPAWN_SETSIGMASK)
        if ownGroup { flags |= Int16(POSIX_SPAWN_SETPGROUP); posix_spawnattr_setpgroup(&attr, 0) }
        posix_spawnattr_setflags(&attr, flags)
        // The children must not register with a server: no SCHEDULEZERO_* or SZGOVERNOR_* from this shell.
        let env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SCHEDULEZERO_") && !$0.key.hasPrefix("SZGOVERNOR") }
            .map { "\($0.key)=\($0.value)" }
        let cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer { cArgv.forEach { free($0) }; cEnv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgv, cEnv)
        guard rc == 0 else { throw ValidationError("posix_spawn \(argv[0]): \(String(cString: strerror(rc)))") }
        return pid
    }

    static func spawnManager(_ argv: [String], log: String) throws -> pid_t {
        // Registered under the lock before the spawn can be seen, so a signal arriving now still stops it.
        try state.withLock { s in
            let pid = try spawn(argv, log: log, ownGroup: true)
            s.managers.insert(pid)
            return pid
        }
    }

    /// SIGTERM to the manager, reaped within 20 s, else SIGKILL to it and everything below it.
    static func stopManager(_ pid: pid_t) {
        guard state.withLock({ $0.managers.remove(pid) }) != nil else { return }
        let tree = descendants(of: pid)
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(20)
        var status: Int32 = 0
        while ContinuousClock.now < deadline {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r == -1 && errno == ECHILD) { break }
            usleep(200)
        }
        if ContinuousClock.now >= deadline {
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        }
        for p in tree where isAlive(p) { kill(p, SIGKILL) }
    }

    static func descendants(of pid: pid_t) -> [pid_t] {
        var out: [pid_t] = [], queue = [pid]
        while let p = queue.popLast() {
            let c = ProcUsage.children(of: p)
            out += c
            queue += c
        }
        return out
    }

    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        let state = ProcStat.read(pid: pid)?.state
        return state != nil && state != "Z" && state != "X"
    }

    static func waitGone(_ pids: [pid_t], deadline: ContinuousClock.Instant) {
        while pids.contains(where: isAlive), ContinuousClock.now < deadline { usleep(100) }
    }
}
