// One managed process: its state machine and its only owner.
//
// Ownership and lock order (for the whole Governor module):
//   ProcessGovernor (actor)  ->  ManagedProcess (actor, one per name)  ->  ChildProcess.state (Mutex, leaf)
//   LifecycleLog / LatencyRecorder mutexes are leaves too.
// A caller only ever awaits "downwards" (governor -> process -> child); a ManagedProcess never calls its
// governor, and no code awaits while holding a Mutex, so there is no cycle and no deadlock.
//
// Every state change happens inside the ManagedProcess actor. Operations that span awaits (start, stop,
// restart, the reaction to an exit, a backoff restart) run one at a time under the actor's FIFO operation
// lock (`acquireOperation`/`releaseOperation`), so ten concurrent stops run one after another: the first
// stops the child, the nine others find `stopped` and return. Reads (`info`) never wait for that lock.
// A stop announces itself first (`pendingStops` + cancelling an in-flight readiness wait), so it never
// waits for a slow probe and no restart is scheduled behind its back; start and stop racing therefore end
// in the state of whichever ran last, with at most one child alive.
#if canImport(Glibc)
import Glibc
#endif
import ScheduleZeroWire
import Foundation
import Synchronization

/// Restart latency samples, shared by the processes of one governor.
public final class LatencyRecorder: Sendable {
    private let samples = Mutex<(respawn: [Double], ready: [Double])>(([], []))
    public init() {}
    func addRespawn(_ ms: Double) { samples.withLock { $0.respawn.append(ms) } }
    func addReady(_ ms: Double) { samples.withLock { $0.ready.append(ms) } }
    public var respawnMs: [Double] { samples.withLock { $0.respawn } }
    public var readyMs: [Double] { samples.withLock { $0.ready } }
}

/// The process-tree mode of a governor's processes, set when the governor starts (nil: not decided, the
/// process group only). Shared by the processes of one governor.
public final class ProcessTreeState: Sendable {
    private let state = Mutex<ProcessTreeMode?>(nil)
    public init(_ mode: ProcessTreeMode? = nil) { state.withLock { $0 = mode } }
    public var mode: ProcessTreeMode? {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}

/// Everything a ManagedProcess needs besides its config; built by the governor.
public struct ProcessContext: Sendable {
    public var spawn: SpawnRequest
    public var pidFilePath: String
    public var probe: any ReadinessProbe
    public var clock: any GovernorClock
    public var events: LifecycleLog
    public var latency: LatencyRecorder
    public var seed: UInt64
    /// Extra key=value lines for the PID file.
    public var pidFileExtra: [String: String]
    /// Cgroup or process group: each spawn reads it (a child in cgroup mode goes to `<group>/<name>`).
    public var tree: ProcessTreeState

    public init(spawn: SpawnRequest, pidFilePath: String, probe: any ReadinessProbe, clock: any GovernorClock,
                events: LifecycleLog, latency: LatencyRecorder = LatencyRecorder(), seed: UInt64 = 0x5eed,
                pidFileExtra: [String: String] = [:], tree: ProcessTreeState = ProcessTreeState()) {
        self.tree = tree
        self.spawn = spawn
        self.pidFilePath = pidFilePath
        self.probe = probe
        self.clock = clock
        self.events = events
        self.latency = latency
        self.seed = seed
        self.pidFileExtra = pidFileExtra
    }
}

public actor ManagedProcess {
    public nonisolated let name: String
    public nonisolated let config: HandlerConfig
    public nonisolated let context: ProcessContext

    private var status: ProcessStatus = .stopped
    private var child: ChildProcess?
    private var tracker: RestartTracker
    private var restartCount = 0
    private var lastError: String?
    private var lastExit: ExitStatus?
    private var startDate: Date?
    /// Policy-clock time at which the current child became ready.
    private var readySince: Duration?
    /// When the last unexpected exit was seen: the start of the latency figures.
    private var unexpectedExitAt: ContinuousClock.Instant?
    private var backoffTask: Task<Void, Never>?
    private var backoffEpoch: UInt64 = 0
    private var probeTask: Task<Void, any Error>?
    private var pendingStops = 0
    /// Liveness checks of the current child while it runs (Liveness.swift).
    private var liveness: LivenessMonitor?

    private var operationBusy = false
    private var operationWaiters: [CheckedContinuation<Void, Never>] = []

    public init(config: HandlerConfig, context: ProcessContext) {
        self.name = config.id
        self.config = config
        self.context = context
        self.tracker = RestartTracker(policy: config.restart, seed: context.seed)
    }

    // MARK: reads

    public func info() -> ManagedProcessInfo {
        var info = ManagedProcessInfo(name: name, role: config.role, pid: child?.pid, status: status,
                                      restartCount: restartCount, lastError: lastError, startTime: startDate,
                                      lastExit: lastExit, endpoint: config.endpoint)
        info.livenessFailures = liveness?.consecutiveFailures
        return info
    }

    public var currentStatus: ProcessStatus { status }
    public var pid: pid_t? { child?.pid }

    // MARK: operations

    /// Starts the process (from any state but running) and waits until its probe passes.
    /// Throws `GovernorError.startFailed` when the spawn or the probe fails; the restart policy then decides
    /// what happens next (backoff, crashed or fatal).
    public func start() async throws {
        await acquireOperation()
        defer { releaseOperation() }
        if status == .running, child != nil { return }
        cancelBackoff()
        tracker.reset()
        if let error = await launchSupervised() { throw error }
    }

    /// Stops the process: SIGTERM to its tree (group, and cgroup members in cgroup mode), SIGKILL to the tree
    /// (`cgroup.kill`) after `timeout` (default: the config's), stopped once the cgroup is empty. Ends in
    /// `stopped`. Safe to call any number of times, concurrently.
    public func stop(timeout: Duration? = nil) async {
        pendingStops += 1
        probeTask?.cancel()
        await acquireOperation()
        defer { releaseOperation(); pendingStops -= 1 }
        await stopLocked(timeout: timeout ?? config.stopTimeout)
    }

    /// Stop, then start.
    public func restart(timeout: Duration? = nil) async throws {
        pendingStops += 1
        probeTask?.cancel()
        await acquireOperation()
        defer { releaseOperation() }
        await stopLocked(timeout: timeout ?? config.stopTimeout)
        pendingStops -= 1
        tracker.reset()
        if let error = await launchSupervised() { throw error }
    }

    // MARK: internals (all called with the operation lock held)

    private func stopLocked(timeout: Duration) async {
        cancelBackoff()
        stopLiveness()
        if let child {
            status = .stopping
            let how = child.cgroup.map { "SIGTERM to group and cgroup \($0.path), cgroup.kill after" } ?? "SIGTERM to group, SIGKILL after"
            context.events.record(name, .stopping, pid: child.pid, detail: "\(how) \(DurationText.format(timeout))")
            await Self.terminate(child, timeout: timeout, name: name, events: context.events)
            lastExit = child.exitStatus
            self.child = nil
            PidFile.remove(context.pidFilePath)
            context.events.record(name, .stopped, pid: child.pid, detail: child.exitStatus?.description)
        } else if status != .stopped {
            context.events.record(name, .stopped, detail: "was \(status.rawValue)")
        }
        readySince = nil
        unexpectedExitAt = nil
        status = .stopped
    }

    /// SIGTERM to the tree; SIGKILL to the tree if it has not exited by `timeout`. `waitForExit` returns
    /// once the leader is reaped and its cgroup (if any) is empty: a leftover that outlives the leader is
    /// killed when the leader exits (ChildProcess), as the rest of its group always was.
    static func terminate(_ child: ChildProcess, timeout: Duration, name: String, events: LifecycleLog) async {
        child.signalTree(SIGTERM)
        if await child.waitForExit(timeout: timeout) == nil {
            let what = child.cgroup == nil ? "SIGKILL to group" : "SIGKILL to group and cgroup.kill"
            events.record(name, .escalated, pid: child.pid, detail: "still alive after \(DurationText.format(timeout)): \(what)")
            child.killTree()
            _ = await child.waitForExit(timeout: .seconds(30))
        }
    }

    /// Launches; on failure applies the restart policy (unless a stop is pending). Returns the error.
    private func launchSupervised() async -> GovernorError? {
        do {
            try await launch()
            return nil
        } catch {
            let failure = GovernorError.startFailed(name: name, reason: "\(error)")
            if pendingStops > 0 || error is CancellationError {
                status = .stopped
                return failure
            }
            lastError = failure.description
            await applyPolicy(exit: lastExitOfFailedStart, ranFor: nil)
            return failure
        }
    }

    private var lastExitOfFailedStart: ExitStatus?

    /// Spawns on the event loop's thread: it lives as long as the governor, so the child's parent-death
    /// signal (SpawnRequest.deathSignal) is sent when the governor dies and at no other time. An executable
    /// still open for writing (ETXTBSY) is tried again after a loop timer, up to the request's `textBusyPatience`,
    /// never by sleeping in the loop's job: that slept up to a second on the one thread that reaps every
    /// child, answers the control socket and spawns every other process (and, in a test process, those of
    /// every other governor: a restart that takes 3 ms took over a second behind it).
    static func spawnOnLoop(_ request: SpawnRequest) async throws -> ChildProcess {
        let loop = EventLoop.shared
        var once = request
        once.textBusyPatience = .zero
        let attempt = once
        let deadline = ContinuousClock.now.advanced(by: request.textBusyPatience)
        var pause = Duration.milliseconds(1)
        while true {
            do {
                return try await loop.perform { try Spawner.spawn(attempt) }
            } catch SpawnError.textBusy where ContinuousClock.now < deadline {
                try await loop.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(50))
            }
        }
    }

    /// Spawns the child, writes its PID file, waits for readiness (racing the child's exit).
    private func launch() async throws {
        status = .starting
        lastExitOfFailedStart = nil
        try context.probe.prepare(for: config)
        let child: ChildProcess
        do {
            var request = context.spawn
            if case .cgroup(let group)? = context.tree.mode {
                request.cgroup = ProcessCgroup(path: (group as NSString).appendingPathComponent(name))
            }
            do {
                child = try await Self.spawnOnLoop(request)
            } catch SpawnError.cgroupFailed(let cgroup, let reason) {
                // The deployment's group exists but this child's could not be made or entered: start it
                // anyway, in its process group only, and say so.
                context.events.record(name, .warning, detail: "cannot start in cgroup \(cgroup) (\(reason)): process group only")
                request.cgroup = nil
                child = try await Self.spawnOnLoop(request)
            }
        } catch {
            lastExitOfFailedStart = nil
            context.events.record(name, .startFailed, detail: "\(error)")
            throw error
        }
        self.child = child
        startDate = Date()
        lastExit = nil
        if let exitAt = unexpectedExitAt {
            context.latency.addRespawn((child.spawnedAt - exitAt).msDouble)
        }
        if let identity = child.identity {
            try? PidFile.write(PidRecord(identity: identity, name: name, extra: context.pidFileExtra),
                               to: context.pidFilePath)
        } else {
            try? PidFile.write(PidRecord(pid: child.pid, name: name, extra: context.pidFileExtra), to: context.pidFilePath)
        }
        context.events.record(name, .spawned, pid: child.pid, detail: context.spawn.executable)
        watch(child)

        do {
            try await waitForReadiness(of: child)
        } catch {
            // Never leave a half-started child behind.
            child.killTree()
            _ = await child.waitForExit(timeout: .seconds(30))
            lastExitOfFailedStart = child.exitStatus
            lastExit = child.exitStatus
            if self.child === child { self.child = nil }
            PidFile.remove(context.pidFilePath)
            context.events.record(name, .startFailed, pid: child.pid, detail: "\(error)")
            throw error
        }
        status = .running
        readySince = context.clock.now()
        if let exitAt = unexpectedExitAt {
            context.latency.addReady((ContinuousClock.now - exitAt).msDouble)
            unexpectedExitAt = nil
        }
        refreshPidFile(of: child)
        context.events.record(name, .ready, pid: child.pid)
        startLiveness(for: child)
    }

    /// A wrapper that execs (`sh -c '... exec python3 ...'`) runs another executable once ready than at spawn,
    /// in the same process (same PID and start time). The PID file must name what runs now, or every verifier
    /// (szchaos, the orphan cleanup of the next `up` and `down`) refuses the process as forged.
    private func refreshPidFile(of child: ChildProcess) {
        guard let spawned = child.identity, let now = ProcessIdentity.of(pid: child.pid),
              now.startTime == spawned.startTime, now.executable != spawned.executable else { return }
        try? PidFile.write(PidRecord(identity: now, name: name, extra: context.pidFileExtra), to: context.pidFilePath)
    }

    private func waitForReadiness(of child: ChildProcess) async throws {
        let probe = context.probe
        let timeout = config.readiness.timeout ?? .seconds(30)
        let target = ReadinessTarget(name: name, pid: child.pid, endpoint: config.directEndpoint, config: config)
        let name = self.name
        let task = Task<Void, any Error> {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // The budget counts from when the probe can run: on a starved machine the probe's task once
                // started about 17 s late and judged a server unready after probing for 3 s of its 20 s.
                group.addTask { try await probe.waitUntilReady(target, deadline: ContinuousClock.now + timeout) }
                group.addTask {
                    guard let exit = await child.waitForExit() else { throw CancellationError() }
                    throw ReadinessError.exited(name: name, status: exit)
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
        probeTask = task
        defer { probeTask = nil }
        if pendingStops > 0 { task.cancel() }
        try await task.value
    }

    /// One task per child waits for its exit and reports it (if it is still the current child).
    private func watch(_ child: ChildProcess) {
        Task { [weak self] in
            guard let status = await child.waitForExit() else { return }
            await self?.childExited(child, status: status)
        }
    }

    private func childExited(_ exited: ChildProcess, status exit: ExitStatus) async {
        await acquireOperation()
        defer { releaseOperation() }
        guard exited === child, status == .running else { return }  // stale, or handled by stop/launch
        stopLiveness()
        child = nil
        lastExit = exit
        unexpectedExitAt = exited.exitedAt ?? .now
        PidFile.remove(context.pidFilePath)
        let ranFor = readySince.map { context.clock.now() - $0 }
        readySince = nil
        context.events.record(name, .exited, pid: exited.pid, detail: exit.description)
        if pendingStops > 0 {
            status = .stopped
            return
        }
        lastError = "exited unexpectedly: \(exit)"
        await applyPolicy(exit: exit, ranFor: ranFor)
    }

    /// After an exit or failed start: backoff-and-restart, leave down, or give up.
    private func applyPolicy(exit: ExitStatus?, ranFor: Duration?) async {
        switch tracker.decide(exit: exit, ranFor: ranFor, now: context.clock.now()) {
        case .leaveDown:
            status = (exit?.isSuccess ?? false) ? .stopped : .crashed
            unexpectedExitAt = nil
        case .giveUp(let reason):
            status = .fatal
            lastError = "gave up: \(reason)" + (lastError.map { "; last: \($0)" } ?? "")
            unexpectedExitAt = nil
            context.events.record(name, .fatal, detail: reason)
        case .restart(let delay, let attempt):
            restartCount += 1
            status = .backoff
            context.events.record(name, .backoff, detail: "attempt \(attempt + 1) in \(DurationText.format(delay))")
            if delay == .zero {
                _ = await launchSupervised()
            } else {
                scheduleRestart(after: delay)
            }
        }
    }

    private func scheduleRestart(after delay: Duration) {
        backoffEpoch += 1
        let epoch = backoffEpoch
        let clock = context.clock
        backoffTask = Task { [weak self] in
            do { try await clock.sleep(for: delay) } catch { return }
            await self?.backoffElapsed(epoch: epoch)
        }
    }

    private func backoffElapsed(epoch: UInt64) async {
        await acquireOperation()
        defer { releaseOperation() }
        guard status == .backoff, epoch == backoffEpoch, pendingStops == 0 else { return }
        backoffTask = nil
        _ = await launchSupervised()
    }

    private func cancelBackoff() {
        backoffEpoch += 1
        backoffTask?.cancel()
        backoffTask = nil
    }

    // MARK: liveness (Liveness.swift)

    private func startLiveness(for child: ChildProcess) {
        stopLiveness()
        guard let spec = config.liveness else { return }
        liveness = LivenessMonitor(spec: spec, name: name, endpoint: config.endpoint) { [weak self, weak child] detail in
            Task { [weak self] in
                guard let child else { return }
                await self?.livenessFailed(child, detail: detail)
            }
        }
    }

    private func stopLiveness() {
        liveness?.stop()
        liveness = nil
    }

    /// Failed liveness checks in a row of the current child (0 without liveness).
    public var livenessFailures: Int { liveness?.consecutiveFailures ?? 0 }
    /// Liveness checks made on the current child so far.
    public var livenessChecks: Int { liveness?.checksMade ?? 0 }

    /// The current child failed its liveness checks: `unhealthy`, stopped as by `stop` (SIGTERM, SIGKILL
    /// after the stop timeout), then the restart policy decides as for a crash (whatever the exit status).
    private func livenessFailed(_ failed: ChildProcess, detail: String) async {
        await acquireOperation()
        defer { releaseOperation() }
        guard failed === child, status == .running, pendingStops == 0 else { return }
        stopLiveness()
        status = .unhealthy
        lastError = "unhealthy: \(detail)"
        context.events.record(name, .unhealthy, pid: failed.pid, detail: detail)
        await Self.terminate(failed, timeout: config.stopTimeout, name: name, events: context.events)
        child = nil
        lastExit = failed.exitStatus
        unexpectedExitAt = failed.exitedAt ?? .now
        PidFile.remove(context.pidFilePath)
        let ranFor = readySince.map { context.clock.now() - $0 }
        readySince = nil
        context.events.record(name, .exited, pid: failed.pid,
                              detail: "\(failed.exitStatus?.description ?? "gone"), killed: liveness failed")
        if pendingStops > 0 {
            status = .stopped
            return
        }
        // nil: counted as a failure even if the child exited 0 on SIGTERM (on-failure restarts it).
        await applyPolicy(exit: nil, ranFor: ranFor)
    }

    // MARK: the operation lock (FIFO)

    private func acquireOperation() async {
        if !operationBusy {
            operationBusy = true
            return
        }
        await withCheckedContinuation { operationWaiters.append($0) }
    }

    private func releaseOperation() {
        if operationWaiters.isEmpty {
            operationBusy = false
        } else {
            operationWaiters.removeFirst().resume()
        }
    }
}
