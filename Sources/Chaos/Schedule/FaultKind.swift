import ScheduleZeroWire
import Interposer

/// The faults an experiment can schedule. Which component applies each one is up to the `FaultActuator`s
/// the runner is given: process faults (kill, pause, signal) need the governor's verified targets,
/// control-channel faults need the mock handler, proxy faults need a `ChaosProxy`.
public enum FaultKind: String, Sendable, CaseIterable, Equatable, Hashable {
    /// Signal one or more targets (`params.signal`, default SIGKILL).
    case kill
    /// `kill` of targets chosen at random (limit 1 unless said otherwise).
    case killRandom = "kill-random"
    /// SIGSTOP, then SIGCONT after the fault's duration.
    case pause
    /// Any signal (`params.signal`).
    case signal
    /// Mock handler control channel: drop the next `params.count` replies, or each with `params.probability`.
    case dropReplies = "drop-replies"
    /// Mock handler control channel: delay replies by `params.ms` +- `params.jitter`.
    case delay
    /// Mock handler control channel: swallow the next request, leaving the caller's REQ socket in EFSM.
    case forceEFSM = "force-efsm"
    /// Mock handler control channel: exit abruptly.
    case crash
    /// Mock handler control channel: answer bytes that are not a reply.
    case garbage
    /// A `ChaosProxy`'s faults for the fault's duration (`params`: the keys of the proxy's `set`).
    case proxy
    /// Network: hosts (network namespaces) cut off from each other for the fault's duration (`between`,
    /// `from`/`to`, `params.mode: isolate`, or the chosen targets against the other hosts: random halves).
    case partition
    /// Network: each packet in or out of the hosts dropped with `params.probability`.
    case loss
    /// Network: the hosts' interfaces limited to `params.rate` (tc tbf; `params.direction` out, in, both).
    case bandwidth
    /// Network: `params.delay` (+- `params.jitter`) on what the hosts send (tc netem, where the kernel has it).
    case latency

    public var isProcessFault: Bool { [.kill, .killRandom, .pause, .signal].contains(self) }
    public var isControlFault: Bool { [.dropReplies, .delay, .forceEFSM, .crash, .garbage].contains(self) }
    /// Whether the fault stays on for a duration and is then undone (the others act once).
    public var hasDuration: Bool { [.pause, .proxy, .delay, .dropReplies].contains(self) || isNetFault }
    /// Faults between hosts, applied by the `NetFaultActuator` (iptables and tc in network namespaces).
    public var isNetFault: Bool { [.partition, .loss, .bandwidth, .latency].contains(self) }

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
