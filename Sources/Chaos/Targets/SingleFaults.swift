// Single faults on a deployment's verified processes: signals (kill, kill-random, signal, pause) and the mock
// handler's control channel (drop-replies, delay, force-efsm, crash, garbage, clear, status). Each returns a
// `FaultOutcome`: one action per target plus what was skipped and why, printable as lines or one JSON record.
// The blocking calls (control channel, waits) run on the caller's thread: call from a thread of your own.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Governor
import MockPeers
import ScheduleZeroWire
import ZMQClient

/// What was done to one target.
public struct FaultAction: Sendable, Equatable {
    public var target: String
    public var pid: Int32?
    /// A verb: `kill`, `signal`, `pause`, `resume`, `fault.set`, `fault.clear`, `status`, `crash`...
    public var action: String
    public var detail: String
    public var ok: Bool
    /// Extra JSON (e.g. the handler's status reply).
    public var data: JSONValue?

    public init(target: String, pid: Int32?, action: String, detail: String, ok: Bool, data: JSONValue? = nil) {
        self.target = target
        self.pid = pid
        self.action = action
        self.detail = detail
        self.ok = ok
        self.data = data
    }

    public var line: String {
        "\(ok ? "" : "FAILED ")\(action) \(target)" + (pid.map { " (pid \($0))" } ?? "") + ": \(detail)"
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["target": .string(target), "action": .string(action), "detail": .string(detail), "success": .bool(ok)]
        o["pid"] = pid.map { .int(Int64($0)) } ?? .null
        if let data { o["data"] = data }
        return .object(o)
    }
}

/// The outcome of one single-fault command.
public struct FaultOutcome: Sendable, Equatable {
    public var command: String
    public var deployment: String
    public var root: String
    public var seed: UInt64
    public var dryRun: Bool
    public var actions: [FaultAction] = []
    public var skipped: [SkippedTarget] = []
    /// Why the fault could not be applied at all.
    public var error: String?

    public init(command: String, paths: DeploymentPaths, seed: UInt64, dryRun: Bool) {
        self.command = command
        deployment = paths.name
        root = paths.root
        self.seed = seed
        self.dryRun = dryRun
    }

    /// Done: no error, at least one action, every action ok.
    public var succeeded: Bool { error == nil && !actions.isEmpty && actions.allSatisfy(\.ok) }
    /// 0 done, 1 the fault could not be applied (to some target).
    public var exitCode: Int32 { succeeded ? 0 : 1 }

    /// One line per skip and per action (the seed line is printed by the caller first).
    public var lines: [String] {
        skipped.map { "skip \($0.name): \($0.reason)" } + actions.map(\.line)
    }

    public var json: JSONValue {
        .object([
            "command": .string(command), "deployment": .string(deployment), "root": .string(root),
            "seed": .string(String(seed)), "dry_run": .bool(dryRun), "success": .bool(succeeded),
            "actions": .array(actions.map(\.json)),
            "skipped": .array(skipped.map { .object(["target": .string($0.name), "pid_file": .string($0.pidFile), "reason": .string($0.reason)]) }),
            "error": error.map { .string($0) } ?? .null,
        ])
    }
}

public enum SingleFaults {
    /// Selects targets, recording skips and the error in `outcome`; nil when nothing can be hit.
    static func targets(_ query: TargetQuery, _ paths: DeploymentPaths, _ outcome: inout FaultOutcome) -> [VerifiedTarget]? {
        do {
            let sel = try DeploymentTargets.select(query, in: paths, seed: outcome.seed)
            outcome.skipped = sel.skipped
            return sel.chosen
        } catch {
            if case .noneVerified(let s) = error { outcome.skipped = s }
            outcome.error = error.description
            return nil
        }
    }

    /// kill, kill-random, signal: sends `sig` to each chosen verified target.
    public static func signal(command: String, _ sig: Int32, query: TargetQuery, paths: DeploymentPaths, seed: UInt64,
                              dryRun: Bool) -> FaultOutcome {
        var out = FaultOutcome(command: command, paths: paths, seed: seed, dryRun: dryRun)
        guard let chosen = targets(query, paths, &out) else { return out }
        let verb = command == "signal" ? "signal" : "kill"
        for t in chosen {
            if dryRun {
                out.actions.append(FaultAction(target: t.name, pid: t.identity.pid, action: verb,
                                               detail: "would send \(SignalName.name(sig)) (dry run: nothing sent)", ok: true))
                continue
            }
            do {
                try ProcessHandle(t).send(sig)
                out.actions.append(FaultAction(target: t.name, pid: t.identity.pid, action: verb, detail: "\(SignalName.name(sig)) sent", ok: true))
            } catch {
                out.actions.append(FaultAction(target: t.name, pid: t.identity.pid, action: verb, detail: error.description, ok: false))
            }
        }
        return out
    }

    /// pause, first half: freezes each chosen target's governor cgroup (its whole tree), or SIGSTOP when it is
    /// in none; returns the handles to resume (same processes, pidfd, same cgroups).
    public static func pause(query: TargetQuery, paths: DeploymentPaths, seed: UInt64, dryRun: Bool,
                             for duration: Duration) -> (FaultOutcome, [ProcessHandle]) {
        var out = FaultOutcome(command: "pause", paths: paths, seed: seed, dryRun: dryRun)
        guard let chosen = targets(query, paths, &out) else { return (out, []) }
        var handles: [ProcessHandle] = []
        for t in chosen {
            if dryRun {
                out.actions.append(FaultAction(target: t.name, pid: t.identity.pid, action: "pause",
                                               detail: t.cgroup.map { "would freeze cgroup \($0.path), then thaw it after \(duration.millisText) (dry run: nothing done)" }
                                                   ?? "would send SIGSTOP, then SIGCONT after \(duration.millisText) (dry run: nothing sent)", ok: true))
                continue
            }
            do {
                let h = try ProcessHandle(t)
                let done = try h.pause()
                handles.append(h)
                out.actions.append(FaultAction(target: t.name, pid: t.identity.pid, action: "pause",
                                               detail: "\(done); resumed after \(duration.millisText)", ok: true))
            } catch {
                out.actions.append(FaultAction(target: t.name, pid: t.identity.pid, action: "pause", detail: error.description, ok: false))
            }
        }
        return (out, handles)
    }

    /// pause, second half: thaw every frozen cgroup, SIGCONT to every stopped process.
    public static func resume(_ handles: [ProcessHandle], why: String) -> [FaultAction] {
        handles.map { h in
            do {
                let done = try h.resume()
                return FaultAction(target: h.name, pid: h.identity.pid, action: "resume", detail: "\(done) (\(why))", ok: true)
            } catch {
                return FaultAction(target: h.name, pid: h.identity.pid, action: "resume", detail: "\(error)", ok: false)
            }
        }
    }

    /// A control-channel fault: `fault.set` with `params` (or `fault.clear` / `status` by `method`) to each
    /// chosen verified mock handler. `crashNow`: after arming a crash, one request to the handler's data
    /// endpoint sets it off, and the process is awaited gone (up to `timeout` x 3).
    public static func control(command: String, method: String, params: [String: JSONValue] = [:], query: TargetQuery,
                               paths: DeploymentPaths, seed: UInt64, dryRun: Bool, timeout: Duration = .seconds(2),
                               crashNow: Bool = false) -> FaultOutcome {
        var out = FaultOutcome(command: command, paths: paths, seed: seed, dryRun: dryRun)
        guard let chosen = targets(query, paths, &out) else { return out }
        let what = method == "fault.set" ? "\(method) \(JSON.string(.object(params)))" : method
        for t in chosen {
            let endpoints: [String]
            switch paths.faultEndpoints(t.name, method: method, params: params) {
            case .success(let e): endpoints = e
            case .failure(let e):
                out.actions.append(FaultAction(target: t.name, pid: t.identity.pid, action: method, detail: e.message, ok: false))
                continue
            }
            for ep in endpoints {
                if dryRun {
                    out.actions.append(FaultAction(target: t.name, pid: t.identity.pid, action: method,
                                                   detail: "would send \(what) to \(ep) (dry run: nothing sent)", ok: true))
                    continue
                }
                out.actions.append(controlOne(t, endpoint: ep, method: method, params: params, timeout: timeout, crashNow: crashNow))
            }
        }
        return out
    }

    static func controlOne(_ t: VerifiedTarget, endpoint ep: String, method: String, params: [String: JSONValue],
                           timeout: Duration, crashNow: Bool) -> FaultAction {
        let pid = t.identity.pid
        let reply: Reply
        do {
            reply = try MockControl.send(ep, method, params: params, timeout: timeout)
        } catch {
            return FaultAction(target: t.name, pid: pid, action: method,
                               detail: "control channel \(ep) unreachable: \(error)", ok: false)
        }
        guard reply.success else {
            return FaultAction(target: t.name, pid: pid, action: method, detail: "refused: \(reply.error ?? "?")", ok: false,
                               data: .object(reply.fields))
        }
        switch method {
        case "status":
            var f = reply.fields
            f["success"] = nil
            let counters = reply["counters"].map { JSON.string($0) } ?? "{}"
            let faults = reply["faults"].map { JSON.string($0) } ?? "{}"
            return FaultAction(target: t.name, pid: pid, action: "status", detail: "counters \(counters) faults \(faults)", ok: true, data: .object(f))
        case "fault.clear":
            return FaultAction(target: t.name, pid: pid, action: "fault.clear", detail: "every fault off (\(ep))", ok: true)
        default:
            let active = reply["faults"].map { JSON.string($0) } ?? "{}"
            guard crashNow else {
                let via = ep.hasSuffix(".link") ? "its interposer \(ep)" : "its control channel \(ep)"
                return FaultAction(target: t.name, pid: pid, action: "fault.set",
                                   detail: "\(JSON.string(.object(params))) set on \(via) (active: \(active))", ok: true)
            }
            // Set the crash off: one request to the data endpoint (no reply expected), then wait for the exit.
            let data = (try? MockControl.status(ep, timeout: timeout))?["endpoint"]?.stringValue
            if let data {
                _ = try? SyncClient.with(endpoint: data, configuration: ClientConfiguration(timeout: .milliseconds(500), attempts: 1)) {
                    try $0.ping()
                }
            }
            let clock = ContinuousClock()
            let deadline = clock.now + timeout * 3
            while ProcessIdentity.of(pid: pid)?.matches(t.identity) == true, clock.now < deadline {
                usleep(5_000)
            }
            let gone = ProcessIdentity.of(pid: pid)?.matches(t.identity) != true
            return FaultAction(target: t.name, pid: pid, action: "crash",
                               detail: gone ? "armed \(JSON.string(.object(params))) and set off by a request to \(data ?? "?"): the process is gone"
                                   : "armed \(JSON.string(.object(params))), but the process is still alive after \((timeout * 3).millisText)",
                               ok: gone)
        }
    }
}

