import Foundation
import ScheduleZeroWire
import Governor
import Yams
import ZMQClient
import Interposer

/// Why an experiment file is refused: the file, the line and column, the field (a path like
/// `faults[1].schedule.interval`) and what is wrong with it. The same type as the governor's deployment
/// file errors, read by the same `YAMLField`, so both read alike.
public typealias ExperimentError = LocatedFileError

/// A chaos experiment, Chaos Toolkit's shape for ZeroMQ services: a deployment, a steady-state probe, load,
/// faults on schedules, and checks afterwards. Read from YAML with `Experiment.load(file:)`; see
/// `docs/CHAOS.md` for the schema.
public struct Experiment: Sendable, Equatable {
    public var title: String
    public var description: String?
    /// `nil`: the runner draws one and prints it.
    public var seed: UInt64?
    /// How long load runs and faults may start.
    public var duration: Duration
    public var deployment: DeploymentSpec?
    public var steadyState: SteadyStateSpec?
    /// Message-level proxies the runner starts itself (proxy-only experiments need nothing else).
    public var proxies: [ProxySpec]
    public var load: LoadSpec?
    public var faults: [FaultSpec]
    public var checks: ChecksSpec
    public var output: OutputSpec
    /// The file it was read from (for messages).
    public var file: String

    public init(title: String, description: String? = nil, seed: UInt64? = nil, duration: Duration,
                deployment: DeploymentSpec? = nil, steadyState: SteadyStateSpec? = nil, proxies: [ProxySpec] = [],
                load: LoadSpec? = nil, faults: [FaultSpec] = [], checks: ChecksSpec = .init(),
                output: OutputSpec = .init(), file: String = "<memory>") {
        self.title = title
        self.description = description
        self.seed = seed
        self.duration = duration
        self.deployment = deployment
        self.steadyState = steadyState
        self.proxies = proxies
        self.load = load
        self.faults = faults
        self.checks = checks
        self.output = output
        self.file = file
    }
}

public struct DeploymentSpec: Sendable, Equatable {
    public var name: String
    /// Start it (under the governor) when it is not running.
    public var startIfNotRunning: Bool
    /// Stop it afterwards if the runner started it.
    public var stopAfter: Bool
    public init(name: String, startIfNotRunning: Bool = true, stopAfter: Bool = true) {
        self.name = name
        self.startIfNotRunning = startIfNotRunning
        self.stopAfter = stopAfter
    }
}

public struct SteadyStateSpec: Sendable, Equatable {
    /// The probe kind; `ping` (every target answers `ping` within `within`) is the one there is.
    public var probe: String
    /// Names or globs of deployment handlers and proxies.
    public var targets: [String]
    /// Explicit name -> endpoint pairs to ping as well.
    public var endpoints: [String: String]
    public var within: Duration
    /// How long the steady state may take to come back after a fault or at the end.
    public var recoveryTimeout: Duration
    /// How often a recovering steady state is probed.
    public var interval: Duration

    public init(probe: String = "ping", targets: [String] = [], endpoints: [String: String] = [:],
                within: Duration = .milliseconds(50), recoveryTimeout: Duration = .seconds(10),
                interval: Duration = .milliseconds(100)) {
        self.probe = probe
        self.targets = targets
        self.endpoints = endpoints
        self.within = within
        self.recoveryTimeout = recoveryTimeout
        self.interval = interval
    }
}

public struct ProxySpec: Sendable, Equatable {
    public var name: String
    public var listen: String
    public var upstream: String
    public var control: String?
    /// Faults on from the start (usually none: faults come from the schedule).
    public var faults: ProxyFaults
    public init(name: String, listen: String, upstream: String, control: String? = nil, faults: ProxyFaults = .none) {
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.control = control
        self.faults = faults
    }
}

/// One method the load calls, with its params (a `seq` and `client` are added to every request).
public struct MethodCall: Sendable, Equatable {
    public var method: String
    public var params: [String: JSONValue]
    public init(_ method: String, params: [String: JSONValue] = [:]) {
        self.method = method
        self.params = params
    }
}

public struct LoadSpec: Sendable, Equatable {
    public var clients: Int
    /// Proxy names, handler names or endpoints (`tcp://`, `ipc://`); clients are spread over them in turn.
    public var targets: [String]
    /// Requests per second per client (0: as fast as replies come).
    public var rate: Double
    /// Called in turn by each client.
    public var methods: [MethodCall]
    public var client: ClientConfiguration

    public init(clients: Int = 1, targets: [String], rate: Double = 10, methods: [MethodCall] = [MethodCall("ping")],
                client: ClientConfiguration = ClientConfiguration(timeout: .milliseconds(500), attempts: 3)) {
        self.clients = clients
        self.targets = targets
        self.rate = rate
        self.methods = methods
        self.client = client
    }
}

public struct FaultSpec: Sendable, Equatable {
    public var name: String
    public var kind: FaultKind
    public var targets: TargetSelector
    public var schedule: ScheduleSpec
    public var params: [String: JSONValue]
    public init(name: String, kind: FaultKind, targets: TargetSelector, schedule: ScheduleSpec,
                params: [String: JSONValue] = [:]) {
        self.name = name
        self.kind = kind
        self.targets = targets
        self.schedule = schedule
        self.params = params
    }
}

public struct ChecksSpec: Sendable, Equatable {
    /// The steady-state probe holds at the end (within its recovery timeout).
    public var steadyStateRestored: Bool
    /// Requests that got no reply after every attempt; `nil`: counted, not checked.
    public var maxLostRequests: Int?
    /// Error replies and invalid replies; `nil`: counted, not checked.
    public var maxErrors: Int?
    /// Replies that answered another request or came twice; `nil`: counted, not checked.
    public var maxDuplicates: Int?
    /// Every fault's time to recovery at most this; `nil`: measured, not checked.
    public var maxTimeToRecovery: Duration?
    /// Checks on the deployment's interposed links (`checks.links`), from their journals: no cooperation of
    /// the service needed.
    public var links: [LinkCheckSpec]
    /// `checks.findings`: which kinds of finding fail the run (the others are warnings). Default: none fails.
    public var findings: [FindingKind: FindingPolicy] = [:]
    public init(steadyStateRestored: Bool = true, maxLostRequests: Int? = 0, maxErrors: Int? = nil,
                maxDuplicates: Int? = nil, maxTimeToRecovery: Duration? = nil, links: [LinkCheckSpec] = []) {
        self.steadyStateRestored = steadyStateRestored
        self.maxLostRequests = maxLostRequests
        self.maxErrors = maxErrors
        self.maxDuplicates = maxDuplicates
        self.maxTimeToRecovery = maxTimeToRecovery
        self.links = links
    }
}

/// `checks.links.NAME`: allowances for the interposed links whose names match `pattern` (a name or a glob).
public struct LinkCheckSpec: Sendable, Equatable {
    public var pattern: String
    /// Requests that reached the handler again after an earlier copy ran there without its reply getting back.
    public var maxDuplicateExecutions: Int?
    /// Requests forwarded and never answered within the link's timeout.
    public var maxLostRequests: Int?
    /// Replies that came after their requester had given up.
    public var maxLateReplies: Int?
    public init(pattern: String, maxDuplicateExecutions: Int? = nil, maxLostRequests: Int? = nil, maxLateReplies: Int? = nil) {
        self.pattern = pattern
        self.maxDuplicateExecutions = maxDuplicateExecutions
        self.maxLostRequests = maxLostRequests
        self.maxLateReplies = maxLateReplies
    }
}

public struct OutputSpec: Sendable, Equatable {
    /// Where journal, JUnit XML and summary go (relative to the working directory).
    public var directory: String
    public init(directory: String = "chaos-results") { self.directory = directory }
}

// MARK: Reading

extension Experiment {
    /// Reads and validates an experiment file. Errors name the file, line, column and field.
    public static func load(file path: String) throws(ExperimentError) -> Experiment {
        let text = try YAMLSource.text(of: path, display: path)
        return try parse(text, file: path)
    }

    public static func parse(_ yaml: String, file: String = "<memory>") throws(ExperimentError) -> Experiment {
        guard let root = try YAMLSource.compose(yaml, file: file) else {
            throw ExperimentError(file: file, line: 1, column: 1, field: "", message: "the file is empty")
        }
        return try ExperimentReader(file: file).experiment(YAMLField(node: root, path: "", file: file))
    }
}

/// The schema, one function per section.
struct ExperimentReader {
    let file: String

    func experiment(_ c: YAMLField) throws(ExperimentError) -> Experiment {
        let m = try c.mapping(allowed: ["title", "description", "seed", "duration", "deployment", "steady_state",
                                        "proxies", "load", "faults", "checks", "output"])
        var e = Experiment(title: try m.required("title").string(),
                           duration: try m.required("duration").duration(positive: true), file: file)
        e.description = try m["description"]?.string()
        e.seed = try m["seed"]?.uint64()
        if let d = m["deployment"] { e.deployment = try deployment(d) }
        if let s = m["steady_state"] { e.steadyState = try steadyState(s) }
        if let p = m["proxies"] {
            for pc in try p.sequence() {
                let spec = try proxy(pc)
                if e.proxies.contains(where: { $0.name == spec.name }) { throw pc.error("proxy name \(spec.name) given twice") }
                e.proxies.append(spec)
            }
        }
        if let l = m["load"] { e.load = try load(l) }
        if let f = m["faults"] {
            for fc in try f.sequence() {
                let spec = try fault(fc)
                if e.faults.contains(where: { $0.name == spec.name }) { throw fc.error("fault name \(spec.name) given twice") }
                e.faults.append(spec)
            }
        }
        if let ch = m["checks"] { e.checks = try checks(ch) }
        if let o = m["output"] {
            let om = try o.mapping(allowed: ["directory"])
            e.output.directory = try om.required("directory").string()
        }
        if e.deployment == nil && e.proxies.isEmpty && e.steadyState?.endpoints.isEmpty != false && !e.faults.contains(where: \.kind.isNetFault) {
            throw c.error("nothing to run against: give a deployment, proxies, steady_state endpoints, or network faults")
        }
        return e
    }

    func deployment(_ c: YAMLField) throws(ExperimentError) -> DeploymentSpec {
        if case .scalar = c.node { return DeploymentSpec(name: try c.string()) }
        let m = try c.mapping(allowed: ["name", "start_if_not_running", "stop_after"])
        var d = DeploymentSpec(name: try m.required("name").string())
        if let s = m["start_if_not_running"] { d.startIfNotRunning = try s.bool() }
        if let s = m["stop_after"] { d.stopAfter = try s.bool() }
        return d
    }

    func steadyState(_ c: YAMLField) throws(ExperimentError) -> SteadyStateSpec {
        let m = try c.mapping(allowed: ["probe", "targets", "endpoints", "within", "recovery_timeout", "interval"])
        var s = SteadyStateSpec()
        if let p = m["probe"] {
            s.probe = try p.string()
            guard s.probe == "ping" else { throw p.error("unknown probe \(s.probe) (known: ping)") }
        }
        if let t = m["targets"] { s.targets = try t.stringList() }
        if let ep = m["endpoints"] {
            for (name, value) in try ep.mapping() { s.endpoints[name] = try endpoint(value) }
        }
        if let w = m["within"] { s.within = try w.duration(positive: true) }
        if let r = m["recovery_timeout"] { s.recoveryTimeout = try r.duration(positive: true) }
        if let i = m["interval"] { s.interval = try i.duration(positive: true) }
        if s.targets.isEmpty && s.endpoints.isEmpty { throw c.error("name targets or endpoints to probe") }
        return s
    }

    func endpoint(_ c: YAMLField) throws(ExperimentError) -> String {
        let s = try c.string()
        guard s.hasPrefix("tcp://") || s.hasPrefix("ipc://") || s.hasPrefix("inproc://") else {
            throw c.error("expected a ZeroMQ endpoint like tcp://127.0.0.1:4245, got \"\(s)\"")
        }
        if let problem = EndpointLimits.problem(s) { throw c.error(problem) }
        return s
    }

    func proxy(_ c: YAMLField) throws(ExperimentError) -> ProxySpec {
        let m = try c.mapping(allowed: ["name", "listen", "upstream", "control", "faults"])
        var p = ProxySpec(name: try m.required("name").string(), listen: try endpoint(m.required("listen")),
                          upstream: try endpoint(m.required("upstream")))
        if let ctl = m["control"] { p.control = try endpoint(ctl) }
        if let f = m["faults"] { p.faults = try proxyFaults(f, base: .none) }
        return p
    }

    func proxyFaults(_ c: YAMLField, base: ProxyFaults) throws(ExperimentError) -> ProxyFaults {
        let m = try c.mapping(allowed: ProxyFaults.settingKeys)
        guard case .object(let o) = try c.json() else { throw c.error("must be a mapping (key: value), got \(c.kind)") }
        do { return try base.applying(o) } catch { throw (m[error.key] ?? c).error(error.reason) }
    }

    func load(_ c: YAMLField) throws(ExperimentError) -> LoadSpec {
        let m = try c.mapping(allowed: ["clients", "targets", "target", "rate", "methods", "client"])
        var l = LoadSpec(targets: [])
        if let n = m["clients"] { l.clients = try n.int(min: 1) }
        if let t = m["targets"] { l.targets = try t.stringList() }
        if let t = m["target"] { l.targets += try t.stringList() }
        guard !l.targets.isEmpty else { throw (m["targets"] ?? c).error("name the targets of the load (proxy, handler or endpoint)") }
        if let r = m["rate"] { l.rate = try r.double(in: 0...100_000) }
        if let ms = m["methods"] {
            l.methods = []
            for mc in try ms.sequence() {
                if case .scalar = mc.node {
                    l.methods.append(MethodCall(try mc.string()))
                    continue
                }
                let mm = try mc.mapping(allowed: ["method", "params"])
                var call = MethodCall(try mm.required("method").string())
                if let p = mm["params"] {
                    guard case .object(let o) = try p.json() else { throw p.error("must be a mapping of params (key: value), got \(p.kind)") }
                    call.params = o
                }
                l.methods.append(call)
            }
            guard !l.methods.isEmpty else { throw ms.error("name at least one method") }
        }
        if let cl = m["client"] {
            let cm = try cl.mapping(allowed: ["timeout", "attempts", "retry_delay", "strategy"])
            if let t = cm["timeout"] { l.client.timeout = try t.duration(positive: true) }
            if let a = cm["attempts"] { l.client.attempts = try a.int(min: 1) }
            if let r = cm["retry_delay"] { l.client.retryDelay = try r.duration() }
            if let s = cm["strategy"] {
                let v = try s.string()
                guard let st = RecoveryStrategy(rawValue: v) else {
                    throw s.error("unknown strategy \(v) (known: \(RecoveryStrategy.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                l.client.strategy = st
            }
        }
        return l
    }

    func fault(_ c: YAMLField) throws(ExperimentError) -> FaultSpec {
        let m = try c.mapping(allowed: ["name", "kind", "targets", "schedule", "params", "between", "from", "to", "start", "stop"])
        let kc = try m.required("kind")
        let ks = try kc.string()
        guard let kind = FaultKind(rawValue: ks) else { throw kc.error("unknown fault kind \(ks) (known: \(FaultKind.names))") }
        let name = try m["name"]?.string() ?? ks
        if !kind.isNetFault, let k = ["between", "from", "to"].first(where: { m[$0] != nil }) {
            throw m[k]!.error("\(k) is a key of the network faults (partition, loss, bandwidth, latency), not of \(ks)")
        }
        if kind.isNetFault { return try netFault(m, c, kind: kind, name: name) }
        let sel = try selector(m.required("targets"), kind: kind)
        let sched = try schedule(m, c)
        var params: [String: JSONValue] = [:]
        if let p = m["params"] {
            if kind == .proxy {
                _ = try proxyFaults(p, base: .none)  // validated now, with the field named
            }
            guard case .object(let o) = try p.json() else { throw p.error("must be a mapping of params (key: value), got \(p.kind)") }
            params = o
        }
        if kind == .proxy && sched.duration <= .zero {
            throw (m["schedule"] ?? c).error("a proxy fault needs a duration > 0 (how long the faults stay on)")
        }
        if kind == .pause && sched.duration <= .zero {
            throw (m["schedule"] ?? c).error("a pause needs a duration > 0 (when SIGCONT comes)")
        }
        return FaultSpec(name: name, kind: kind, targets: sel, schedule: sched, params: params)
    }

    /// The schedule keys of a fault entry: `schedule: {...}`, or Jepsen's `start`/`stop` (one fault from
    /// `start` to `stop`; the network faults' durations need their unit).
    func schedule(_ m: YAMLMapping, _ c: YAMLField) throws(ExperimentError) -> ScheduleSpec {
        var sched = ScheduleSpec()
        if let s = m["schedule"] {
            if let k = ["start", "stop"].first(where: { m[$0] != nil }) {
                throw m[k]!.error("give either schedule or start/stop, not both")
            }
            let sm = try s.mapping(allowed: ["initial_delay", "interval", "jitter", "duration", "count"])
            if let v = sm["initial_delay"] { sched.initialDelay = try v.duration() }
            if let v = sm["interval"] { sched.interval = try v.duration() }
            if let v = sm["jitter"] { sched.jitter = try v.duration() }
            if let v = sm["duration"] { sched.duration = try v.duration() }
            if let v = sm["count"] {
                if case .scalar(let sc) = v.node, sc.string == "unlimited" { sched.count = nil } else { sched.count = try v.int(min: 1) }
            }
            if sched.count.map({ $0 > 1 }) ?? true, sched.interval <= .zero {
                throw (sm["interval"] ?? s).error("must be longer than 0 when the fault repeats")
            }
            if sched.jitter > sched.interval, sched.count.map({ $0 > 1 }) ?? true {
                throw (sm["jitter"] ?? s).error("must not exceed the interval (\(sched.interval.millisText))")
            }
        } else if let startC = m["start"] {
            let start = try startC.duration()
            guard let stopC = m["stop"] else { throw startC.error("start needs a stop (when the fault is undone)") }
            let stop = try stopC.duration()
            guard stop > start else { throw stopC.error("must be later than start (\(start.millisText))") }
            sched = ScheduleSpec(initialDelay: start, interval: stop - start, jitter: .zero, duration: stop - start, count: 1)
        } else if let stopC = m["stop"] {
            throw stopC.error("stop needs a start")
        }
        return sched
    }

    /// partition, loss, bandwidth, latency: hosts are network namespaces (names; globs in `targets`).
    func netFault(_ m: YAMLMapping, _ c: YAMLField, kind: FaultKind, name: String) throws(ExperimentError) -> FaultSpec {
        let sched = try schedule(m, c)
        guard sched.duration > .zero else {
            throw (m["schedule"] ?? c).error("a \(kind.rawValue) fault needs a duration > 0 (schedule.duration, or start and stop)")
        }
        let allowedParams: [String] = switch kind {
        case .partition: ["mode"]
        case .loss: ["probability"]
        case .bandwidth: ["rate", "direction"]
        default: ["delay", "jitter"]
        }
        var params: [String: JSONValue] = [:]
        if let p = m["params"] {
            let pm = try p.mapping(allowed: allowedParams)
            if let v = pm["mode"] {
                let mode = try v.string()
                guard ["halves", "isolate"].contains(mode) else { throw v.error("expected halves or isolate, got \"\(mode)\"") }
                params["mode"] = .string(mode)
            }
            if let v = pm["probability"] { params["probability"] = .double(try v.double(in: 0...1)) }
            if let v = pm["rate"] {
                let r = try v.string()
                guard BandwidthRate.bytesPerSecond(r) != nil else { throw v.error("expected a rate with bit, kbit, mbit or gbit (per second), e.g. 1mbit, got \"\(r)\"") }
                params["rate"] = .string(r)
            }
            if let v = pm["direction"] {
                let d = try v.string()
                guard BandwidthDirection(rawValue: d) != nil else { throw v.error("expected out, in or both, got \"\(d)\"") }
                params["direction"] = .string(d)
            }
            for k in ["delay", "jitter"] {
                if let v = pm[k] { params[k] = .int(Int64(try v.duration(positive: k == "delay").wholeMilliseconds)) }
            }
        }
        switch kind {
        case .loss where params["probability"] == nil: throw (m["params"] ?? c).error("a loss fault needs params.probability (0 to 1)")
        case .bandwidth where params["rate"] == nil: throw (m["params"] ?? c).error("a bandwidth fault needs params.rate (e.g. 1mbit)")
        case .latency where params["delay"] == nil: throw (m["params"] ?? c).error("a latency fault needs params.delay (e.g. 100ms)")
        default: break
        }
        func hosts(_ v: YAMLField) throws(ExperimentError) -> [String] {
            let h = try v.stringList()
            guard !h.isEmpty else { throw v.error("name at least one host") }
            if let bad = h.first(where: { $0.isEmpty || $0.contains("/") || $0.contains("*") || $0.contains("?") }) {
                throw v.error("expected host names (network namespaces; globs go in targets), got \"\(bad)\"")
            }
            return h
        }
        var named: [String] = []
        if let b = m["between"] {
            guard kind == .partition else { throw b.error("between is for partition faults") }
            var groups: [[String]] = []
            for g in try b.sequence() { groups.append(try hosts(g)) }
            guard groups.count >= 2 else { throw b.error("expected two groups of hosts or more, e.g. [[h1], [h2, h3]]") }
            params["between"] = .array(groups.map { .array($0.map { .string($0) }) })
            named = groups.flatMap { $0 }
        }
        if m["from"] != nil || m["to"] != nil {
            guard kind == .partition, m["between"] == nil else {
                throw (m["from"] ?? m["to"]!).error("from/to (a one-way partition) are for partition faults, without between")
            }
            guard let f = m["from"], let t = m["to"] else { throw (m["from"] ?? m["to"]!).error("a one-way partition needs both from and to") }
            let fh = try hosts(f), th = try hosts(t)
            params["from"] = .array(fh.map { .string($0) })
            params["to"] = .array(th.map { .string($0) })
            named = fh + th
        }
        if Set(named).count != named.count { throw c.error("a host is named twice: \(named.joined(separator: ", "))") }
        var sel: TargetSelector
        if !named.isEmpty {
            if let t = m["targets"] { throw t.error("targets are the hosts of between/from/to here: leave targets out") }
            sel = TargetSelector(include: named, random: false)
        } else {
            sel = try selector(m.required("targets"), kind: kind)
            if kind == .partition && params["mode"] != .string("isolate") {
                // Halves: the chosen targets against the other hosts the selector allows.
                params["pool"] = .array(sel.include.map { .string($0) })
                params["pool_exclude"] = .array(sel.exclude.map { .string($0) })
            }
        }
        return FaultSpec(name: name, kind: kind, targets: sel, schedule: sched, params: params)
    }

    func selector(_ c: YAMLField, kind: FaultKind) throws(ExperimentError) -> TargetSelector {
        var s = TargetSelector(include: [], random: kind == .killRandom)
        if case .mapping = c.node {
            let m = try c.mapping(allowed: ["include", "exclude", "limit", "random"])
            if let i = m["include"] { s.include = try i.stringList() }
            if let e = m["exclude"] { s.exclude = try e.stringList() }
            if let l = m["limit"] { s.limit = try l.int(min: 1) }
            if let r = m["random"] { s.random = try r.bool() }
        } else {
            s.include = try c.stringList()
        }
        guard !s.include.isEmpty, !s.include.contains(where: \.isEmpty) else {
            throw c.error("name at least one target or glob: a fault never hits every target by default")
        }
        return s
    }

    /// `findings: fail` (every kind), `findings: warn`, or `findings: {ignored_sigterm: fail, error_replies: warn}`.
    func findingPolicies(_ v: YAMLField) throws(ExperimentError) -> [FindingKind: FindingPolicy] {
        let kinds = FindingKind.allCases.map(\.rawValue)
        func policy(_ c: YAMLField) throws(ExperimentError) -> FindingPolicy {
            let text = try c.string()
            guard let p = FindingPolicy(rawValue: text) else { throw c.error("expected warn or fail, got \"\(text)\"") }
            return p
        }
        if case .scalar = v.node {
            let p = try policy(v)
            return Dictionary(uniqueKeysWithValues: FindingKind.allCases.map { ($0, p) })
        }
        let m = try v.mapping(allowed: kinds)
        var out: [FindingKind: FindingPolicy] = [:]
        for k in FindingKind.allCases {
            if let x = m[k.rawValue] { out[k] = try policy(x) }
        }
        return out
    }

    func checks(_ c: YAMLField) throws(ExperimentError) -> ChecksSpec {
        let m = try c.mapping(allowed: ["steady_state_restored", "max_lost_requests", "max_errors", "max_duplicates",
                                        "max_time_to_recovery", "links", "findings"])
        var k = ChecksSpec()
        if let v = m["findings"] { k.findings = try findingPolicies(v) }
        if let v = m["steady_state_restored"] { k.steadyStateRestored = try v.bool() }
        if let v = m["max_lost_requests"] { k.maxLostRequests = try v.int(min: 0) }
        if let v = m["max_errors"] { k.maxErrors = try v.int(min: 0) }
        if let v = m["max_duplicates"] { k.maxDuplicates = try v.int(min: 0) }
        if let v = m["max_time_to_recovery"] { k.maxTimeToRecovery = try v.duration(positive: true) }
        if let v = m["links"] {
            guard case .mapping(let links) = v.node else {
                throw v.error("must be a mapping of link names (or globs) to checks, e.g. {h-1: {max_duplicate_executions: 1}}, got \(v.kind)")
            }
            for (keyNode, value) in links {
                guard case .scalar(let key) = keyNode, !key.string.isEmpty else {
                    throw YAMLField(node: keyNode, path: v.path, file: v.file).error("link names must be plain names or globs")
                }
                let entry = v.child(key.string, value)
                let lm = try entry.mapping(allowed: ["max_duplicate_executions", "max_lost_requests", "max_late_replies"])
                var spec = LinkCheckSpec(pattern: key.string)
                if let x = lm["max_duplicate_executions"] { spec.maxDuplicateExecutions = try x.int(min: 0) }
                if let x = lm["max_lost_requests"] { spec.maxLostRequests = try x.int(min: 0) }
                if let x = lm["max_late_replies"] { spec.maxLateReplies = try x.int(min: 0) }
                if spec.maxDuplicateExecutions == nil && spec.maxLostRequests == nil && spec.maxLateReplies == nil {
                    throw entry.error("needs at least one of max_duplicate_executions, max_lost_requests, max_late_replies")
                }
                k.links.append(spec)
            }
        }
        return k
    }
}
