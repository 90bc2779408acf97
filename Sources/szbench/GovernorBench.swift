import ArgumentParser
import Foundation
import Governor
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The governor against a bare floor measured in the same run with the same szmock binary: posix_spawn and
/// a blocking waitid, no governor. Figures: kill -9 -> new PID and kill -9 -> ready again (ping answered)
/// over `kills` kills; start of `count` handlers until all answer ping; stop of `count` that honour SIGTERM.
struct GovernorBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "governor",
        abstract: "Restart latency after SIGKILL, start and stop of 20 handlers, each against a bare posix_spawn floor."
    )

    @Option(help: "SIGKILLs for the restart figures.") var kills = 50
    @Option(help: "Handlers for the start and stop figures.") var count = 20
    @Option(help: "Start/stop rounds (medians are reported).") var rounds = 3
    @Option(help: "The szmock executable (default: next to szbench, or $SZMOCK).") var szmock: String?

    func run() throws {
        let mock = szmock ?? BuildVariables.variables()["SZMOCK"]!
        guard FileManager.default.isExecutableFile(atPath: mock) else {
            throw ValidationError("no szmock at \(mock): build it (scripts/bench.sh does) or pass --szmock")
        }
        var template = Array("/tmp/szb-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ValidationError("mkdtemp failed") }
        let dir = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        print("governor: \(kills) kills, \(count) handlers, \(rounds) rounds; szmock \(mock)")

        // Floors: the same binary, posix_spawn + blocking waitid, no governor.
        let floor = Floor(szmock: mock, dir: dir)
        let (floorRespawn, floorReady) = try floor.restarts(kills)
        var floorStart: [Double] = [], floorStop: [Double] = []
        for _ in 0..<rounds {
            let (start, stop) = try floor.startStop(count)
            floorStart.append(start)
            floorStop.append(stop)
        }

        let bench = self
        let results = try blockingAsync { try await bench.governorFigures(szmock: mock, dir: dir) }

        func line(_ label: String, _ samples: [Double], _ floorSamples: [Double], goal: Double) {
            let m = Measure.median(samples), f = Measure.median(floorSamples)
            Measure.row(label, Measure.fmt(m, 2) + " ms",
                        "p95 \(Measure.fmt(Measure.percentile(samples, 0.95), 2)) ms; floor \(Measure.fmt(f, 2)) ms"
                        + " (x\(Measure.fmt(m / f, 2))); goal <= \(Measure.fmt(goal, 0)) ms: \(m <= goal ? "met" : "NOT met")")
        }
        line("kill -9 -> new pid (median of \(kills))", results.respawn, floorRespawn, goal: 5)
        line("kill -9 -> ready again, ping (median)", results.ready, floorReady, goal: 50)
        line("start \(count) handlers -> all ready", results.start, floorStart, goal: 1000)
        line("stop \(count) handlers (SIGTERM honoured)", results.stop, floorStop, goal: 300)
    }

    struct Figures: Sendable {
        var respawn: [Double] = [], ready: [Double] = [], start: [Double] = [], stop: [Double] = []
    }

    func handler(_ id: String, szmock: String, dir: String) -> HandlerConfig {
        let endpoint = "ipc://\(dir)/\(id).sock"
        return HandlerConfig(id: id, executable: szmock, arguments: ["handler", "--id", id, "--bind", endpoint],
                             endpoint: endpoint,
                             restart: RestartPolicy(mode: .always, maxRestarts: 10_000, window: .seconds(1),
                                                    backoff: BackoffPolicy(immediateRestarts: 10_000)),
                             stopTimeout: .seconds(5),
                             readiness: .custom(kind: "ping", settings: ["within": "20ms"], timeout: .seconds(10)))
    }

    func governorFigures(szmock: String, dir: String) async throws -> Figures {
        var figures = Figures()
        // Restarts: one handler, killed `kills` times; times come from the governor's own event stream.
        let seen = Mutex<[(LifecycleEvent.Kind, Int32?, ContinuousClock.Instant)]>([])
        let options = GovernorOptions(eventObserver: { e in seen.withLock { $0.append((e.event, e.pid, .now)) } })
        let gov = try ProcessGovernor(deployment: Deployment(name: "bench", handlers: [handler("k", szmock: szmock, dir: dir)]),
                                      directory: URL(fileURLWithPath: dir + "/restart"), options: options)
        try await gov.start()
        for _ in 0..<kills {
            guard let old = try await gov.handlerStatus("k").pid else { throw ValidationError("no pid") }
            seen.withLock { $0.removeAll() }
            let t0 = ContinuousClock.now
            kill(old, SIGKILL)
            var spawnAt: ContinuousClock.Instant?, readyAt: ContinuousClock.Instant?
            let deadline = t0 + .seconds(10)
            while readyAt == nil, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(1))
                seen.withLock { events in
                    spawnAt = events.first { $0.0 == .spawned && $0.1 != old }?.2
                    readyAt = events.first { $0.0 == .ready && $0.1 != old }?.2
                }
            }
            guard let s = spawnAt, let r = readyAt else { throw ValidationError("no restart within 10 s") }
            figures.respawn.append((s - t0).ms)
            figures.ready.append((r - t0).ms)
        }
        await gov.stop()

        for round in 0..<rounds {
            let handlers = (1...count).map { handler("h\(round)-\($0)", szmock: szmock, dir: dir) }
            let many = try ProcessGovernor(deployment: Deployment(name: "bench", handlers: handlers),
                                           directory: URL(fileURLWithPath: dir + "/many"))
            let t0 = ContinuousClock.now
            try await many.start()
            figures.start.append((ContinuousClock.now - t0).ms)
            let t1 = ContinuousClock.now
            await many.stop()
            figures.stop.append((ContinuousClock.now - t1).ms)
        }
        return figures
    }
}

/// The bare floor: posix_spawn, blocking waitid, ping until answered; no governor.
struct Floor {
    let szmock: String
    let dir: String

    func spawn(_ id: String) throws -> (pid_t, String) {
        let endpoint = "ipc://\(dir)/floor-\(id).sock"
        let argv = [szmock, "handler", "--id", id, "--bind", endpoint]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        let cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let env: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
        defer { cArgv.forEach { free($0) }; env.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, szmock, &actions, nil, cArgv, env)
        guard rc == 0 else { throw ValidationError("posix_spawn: \(rc)") }
        return (pid, endpoint)
    }

    func ready(_ endpoint: String) -> Bool {
        PingProbe.pingUntilAnswered(endpoint, within: .milliseconds(20), deadline: .now + .seconds(10))
    }

    func reap(_ pid: pid_t) {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED) == -1 && errno == EINTR {}
    }

    /// kill -9 -> waitid -> posix_spawn (new pid), and -> ping answered.
    func restarts(_ n: Int) throws -> ([Double], [Double]) {
        var (pid, endpoint) = try spawn("k")
        guard ready(endpoint) else { throw ValidationError("floor handler not ready") }
        var respawn: [Double] = [], readyAgain: [Double] = []
        for _ in 0..<n {
            let t0 = ContinuousClock.now
            kill(pid, SIGKILL)
            reap(pid)
            (pid, endpoint) = try spawn("k")
            respawn.append((ContinuousClock.now - t0).ms)
            guard ready(endpoint) else { throw ValidationError("floor handler not ready") }
            readyAgain.append((ContinuousClock.now - t0).ms)
        }
        kill(pid, SIGKILL)
        reap(pid)
        return (respawn, readyAgain)
    }

    /// Spawn `n`, ping each until answered; then SIGTERM all and reap all.
    func startStop(_ n: Int) throws -> (Double, Double) {
        let t0 = ContinuousClock.now
        let children = try (1...n).map { try spawn("s\($0)") }
        for (_, e) in children { guard ready(e) else { throw ValidationError("floor handler not ready") } }
        let start = (ContinuousClock.now - t0).ms
        let t1 = ContinuousClock.now
        for (p, _) in children { kill(p, SIGTERM) }
        for (p, _) in children { reap(p) }
        return (start, (ContinuousClock.now - t1).ms)
    }
}

extension Duration {
    var ms: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}

/// Runs async work from this synchronous command; the main thread waits (it is not a pool thread).
func blockingAsync<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let r: Result<T, any Error>
        do { r = .success(try await body()) } catch { r = .failure(error) }
        result.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0 }!.get()
}
