// `szgovernor export kubernetes DIR`: per process group (the server, each handler spec) one file
// `<d>-<group>.yaml` holding a Deployment (replicas = the spec's) and, where the group listens on TCP, a
// Service (docs/DISTRIBUTED.md). Emitted with Yams' Node emitter: every string double-quoted (so "1",
// "true" or "0700" stay strings), keys in a fixed order, no line wrapping.
import Foundation
import ScheduleZeroWire
import Yams

public enum KubernetesExport {
    public static let defaultImage = "schedulezero-harness:latest"
    /// The pod's name, from the downward API: what `${NAME}` becomes for a replicated spec.
    static let nameVariable = "SZGOVERNOR_NAME"
    static let portMarker = "PORT"
    static let loopbacks: Set<String> = ["127.0.0.1", "localhost", "::1", "[::1]"]

    public static func export(_ deployment: Deployment, image: String, variables: [String: String],
                              parentEnvironment: [String: String]) throws(ExportError) -> EngineExport {
        var out = EngineExport()
        let groups = ProcessGroup.groups(of: deployment)
        var names: [String: String] = [:]
        for g in groups {
            let name = try objectName(exportBaseName(deployment, g))
            if let other = names[name] {
                throw ExportError("handler specs \"\(other)\" and \"\(g.name)\" both become the Kubernetes name \"\(name)\"")
            }
            names[name] = g.name
        }
        let serverService = deployment.server.flatMap { _ in groups.first { $0.role == .server } }
            .map { g in try? objectName(exportBaseName(deployment, g)) } ?? nil
        for g in groups {
            try out.merge(manifests(deployment, g, image: image, szmock: variables["SZMOCK"] ?? "szmock",
                                    serverService: serverService, parent: parentEnvironment))
        }
        return out
    }

    /// A DNS-1035 label (what a Service name must be): lowercase, `_` and `.` as `-`.
    static func objectName(_ text: String) throws(ExportError) -> String {
        let name = String(text.lowercased().map { $0 == "_" || $0 == "." ? "-" : $0 })
        guard name.count <= 63, let first = name.first, first.isLetter, name.last!.isLetter || name.last!.isNumber,
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw ExportError("\"\(text)\" cannot be a Kubernetes object name (a DNS-1035 label: a letter first, letters, digits and -, at most 63)")
        }
        return name
    }

    static func manifests(_ d: Deployment, _ g: ProcessGroup, image: String, szmock: String, serverService: String?,
                          parent: [String: String]) throws(ExportError) -> EngineExport {
        var out = EngineExport()
        let name = try objectName(exportBaseName(d, g))
        let file = "\(name).yaml"
        var notes: [String] = []
        let c = g.first

        // Endpoint addresses: a pod's loopback is its own, so a process binds 0.0.0.0 and others reach it
        // through its Service.
        var rewrites: [(String, String)] = []
        let own = c.endpoint.flatMap { DeploymentFile.tcpHostPort($0) }
        let loopback = own.map { loopbacks.contains($0.0) } ?? false
        if let (_, port) = own, loopback {
            for i in g.instances { if let e = i.endpoint { rewrites.append((e, "tcp://0.0.0.0:\(DeploymentFile.tcpHostPort(e)?.1 ?? port)")) } }
        }
        let ownRewrites = rewrites.count
        if g.role == .handler, let server = d.server, let e = server.endpoint, let (_, port) = DeploymentFile.tcpHostPort(e), let serverService {
            rewrites.append((e, "tcp://\(serverService):\(port)"))
        }
        if let e = c.endpoint, e.hasPrefix("ipc://") {
            notes.append("endpoint \(e) is ipc: reachable only inside its own pod (pods share no filesystem); give the process a tcp:// endpoint to reach it from others")
        }
        var rewroteOwn = false
        func rewritten(_ s: String) -> String {
            var s = s
            for (n, (from, to)) in rewrites.enumerated() where s.contains(from) {
                s = s.replacingOccurrences(of: from, with: to)
                if n < ownRewrites { rewroteOwn = true }
            }
            return s
        }

        // Values of the replicas, written once: ${NAME} as the pod's name, ${PORT} as replica 1's (each pod
        // has its own address, so every replica can use the same port).
        func tokens(_ i: HandlerConfig) -> InstanceTokens {
            var table: [(value: String, segments: [Segment])] = []
            if g.replicated, let n = i.instanceVariables["NAME"] { table.append((n, [.variable(nameVariable)])) }
            if let p = i.instanceVariables["PORT"] { table.append((p, [.variable(portMarker)])) }
            table.sort { $0.value.count > $1.value.count }
            return InstanceTokens(table: table, whole: [])
        }
        let allTokens = g.instances.map(tokens)
        func render(_ segments: [Segment], _ k: Int) -> String? {
            let i = g.instances[k]
            return segments.map { s -> String in
                switch s {
                case .text(let t): t
                case .index: "\(g.index(i))"
                case .variable(let v): v == nameVariable ? i.instanceVariables["NAME"] ?? "" : i.instanceVariables["PORT"] ?? ""
                }
            }.joined()
        }
        var usesName = false
        var differing: [String] = []
        /// One value for every replica, as Kubernetes expands it in command, args and env (`$(VAR)`).
        func value(_ field: String, _ values: [String], expands: Bool) -> String {
            let values = values.map(rewritten)
            guard let p = Generalize.pattern(values, tokens: allTokens, replicated: g.replicated, render: render) else {
                differing.append(field)
                return expands ? escapeDollar(values[0]) : values[0]
            }
            if !expands, p.contains(.variable(nameVariable)) {
                differing.append(field)
                return values[0]
            }
            var out = ""
            for s in p {
                switch s {
                case .text(let t): out += expands ? escapeDollar(t) : t
                case .index: out += "1"
                case .variable(let v):
                    if v == nameVariable { usesName = true; out += "$(\(nameVariable))" } else { out += g.first.instanceVariables["PORT"] ?? "" }
                }
            }
            return out
        }

        let executable: String
        do { executable = try d.resolvedExecutable(for: c, parent: parent) } catch {
            throw ExportError("\(c.id): \(error) (export resolves executables as `szgovernor up` does)")
        }
        let args = g.instances.map(\.arguments.count).allSatisfy({ $0 == c.arguments.count })
            ? (0..<c.arguments.count).map { i in value("args[\(i)]", g.instances.map { $0.arguments[i] }, expands: true) }
            : c.arguments.map(rewritten).map(escapeDollar)
        var envPairs: [(String, String)] = []
        let envs = g.instances.map { d.environment.merging($0.environment) { $1 } }
        for key in envs.reduce(into: Set<String>(), { $0.formUnion($1.keys) }).sorted() {
            let values = envs.map { $0[key] ?? "" }
            envPairs.append((key, value("env \(key)", values, expands: true)))
        }
        let workingDir = c.workingDirectory.map { _ in value("workingDir", g.instances.map { $0.workingDirectory ?? "" }, expands: false) }
        if let e = c.endpoint, loopback {
            notes.append(rewroteOwn
                ? "endpoint \(e) binds the loopback, in a pod the pod's own: written as tcp://0.0.0.0:\(own!.1) so its Service and probes reach it"
                : "endpoint \(e) is on the loopback, in a pod the pod's own, and no value names it whole: the process must bind 0.0.0.0 (or the pod's address) for its Service and probes to reach it")
        }

        // Probes.
        var ports: [(String, Int)] = []
        if let e = c.endpoint, let (_, p) = DeploymentFile.tcpHostPort(e) { ports.append(("zmq", p)) }
        /// An exec probe's command for every replica: exec probes get no `$(VAR)` expansion, so a value that
        /// holds the replica's name runs through `sh -c` with the pod's $SZGOVERNOR_NAME.
        func probeCommand(_ field: String, _ perInstance: (HandlerConfig) -> [String]) -> Node {
            let commands = g.instances.map(perInstance)
            guard commands.allSatisfy({ $0.count == commands[0].count }) else { differing.append(field); return execProbe(commands[0]) }
            var words: [[Segment]] = []
            for i in 0..<commands[0].count {
                guard let p = Generalize.pattern(commands.map { $0[i] }, tokens: allTokens, replicated: g.replicated, render: render) else {
                    differing.append(field)
                    return execProbe(commands[0])
                }
                words.append(p)
            }
            let port = g.first.instanceVariables["PORT"] ?? ""
            guard words.contains(where: { $0.contains(.variable(nameVariable)) }) else {
                return execProbe(words.map { w in w.map { s -> String in
                    if case .text(let t) = s { return t }
                    return s == .index ? "1" : port
                }.joined() })
            }
            usesName = true
            let script = words.map { w in w.map { s -> String in
                switch s {
                case .text(let t): "'" + t.replacingOccurrences(of: "'", with: "'\\''") + "'"
                case .index: "1"
                case .variable(let v): v == nameVariable ? "\"$\(nameVariable)\"" : port
                }
            }.joined() }.joined(separator: " ")
            return execProbe(["/bin/sh", "-c", "exec " + script])
        }
        func pingProbe(_ endpoint: (HandlerConfig) -> String, timeout: Duration, field: String) -> Node {
            if let (_, p) = DeploymentFile.tcpHostPort(endpoint(c)) {
                if !ports.contains(where: { $0.1 == p }) { ports.append(("zmq-\(ports.count)", p)) }
                return map([("tcpSocket", map([("port", int(p))]))])
            }
            return probeCommand(field) { [szmock, "call", endpoint($0), "ping", "--timeout", DurationText.format(timeout), "--attempts", "1"] }
        }
        func httpProbe(_ url: HTTPURL) -> Node {
            if !ports.contains(where: { $0.1 == url.port }) { ports.append(("http", url.port)) }
            if loopbacks.contains(url.host) {
                notes.append("HTTP \(url) is probed at the pod's address, not the loopback: the process must listen there (a bind to 127.0.0.1 fails the probe)")
            }
            return map([("httpGet", map([("path", str(url.path)), ("port", int(url.port)), ("scheme", str("HTTP"))]))])
        }
        var readiness: Node?
        var readinessDeadline: Duration?
        var probeTimeout = 1
        switch c.readiness {
        case .none: break
        case .readyFile(let path, let t):
            readiness = probeCommand("readiness") { i in
                if case .readyFile(let p, _) = i.readiness { return ["test", "-e", p] }
                return ["test", "-e", path]
            }
            readinessDeadline = t
        case .custom(let kind, let settings, let t):
            readinessDeadline = t
            if PingProbe.kinds.contains(kind) {
                let within = settings["within"].flatMap(DurationText.value) ?? .seconds(1)
                probeTimeout = within.ceilSeconds()
                readiness = pingProbe({ i in
                    if case .custom(_, let s, _) = i.readiness, let e = s["ping"] { return e }
                    return i.endpoint ?? ""
                }, timeout: within, field: "readiness")
            } else if kind == HTTPReadinessProbe.kind, let u = settings["http"], let url = try? HTTPURL(parsing: u) {
                probeTimeout = (settings["within"].flatMap(DurationText.value) ?? .seconds(1)).ceilSeconds()
                readiness = httpProbe(url)
            } else {
                notes.append("readiness \(kind): no Kubernetes equivalent: no readinessProbe")
            }
        }
        var liveness: Node?
        if let l = c.liveness {
            switch l.check {
            // A listening socket takes TCP connections while its process is stopped: a hang is seen only
            // by an answered ping, so liveness by ping runs `szmock call ... ping` in the container.
            case .ping(let e):
                _ = e
                liveness = probeCommand("liveness") { i in
                    var endpoint = i.endpoint ?? ""
                    if case .ping(let own?)? = i.liveness?.check { endpoint = own }
                    return [szmock, "call", endpoint, "ping", "--timeout", DurationText.format(l.timeout), "--attempts", "1"]
                }
            case .http(let url): liveness = httpProbe(url)
            }
            liveness = merged(liveness!, [("periodSeconds", int(l.period.ceilSeconds())), ("timeoutSeconds", int(l.timeout.ceilSeconds())),
                                          ("failureThreshold", int(l.failures))])
        }

        if !differing.isEmpty {
            notes.append("\(differing.joined(separator: ", ")) differ between the replicas beyond ${NAME} and ${PORT} (${INDEX}, say): a Deployment's pods are identical, written as \(c.id)'s")
        }
        let restart = c.restart
        if restart.mode != .always {
            notes.append("restart \(restart.mode.rawValue): a Deployment's pods always restart (restartPolicy Always)")
        }
        notes.append("restart backoff and max_restarts \(restart.maxRestarts) within \(DurationText.format(restart.window)): no Kubernetes equivalent; the kubelet's CrashLoopBackOff (10 s doubling to 5 min) applies")
        if d.interposersLeftOut.contains(where: { n in g.instances.contains { $0.id == n } }) {
            notes.append("interpose: no Kubernetes equivalent (the governor's message-level interposer): the process binds its endpoint itself; a sidecar running `szchaos proxy` would keep one")
        }

        // The objects.
        let labels = map([("app.kubernetes.io/name", str(name)), ("app.kubernetes.io/part-of", str(try objectName(d.name))),
                          ("app.kubernetes.io/component", str(g.role == .server ? "server" : "handler"))])
        var env: [Node] = []
        if usesName {
            env.append(map([("name", str(nameVariable)), ("valueFrom", map([("fieldRef", map([("fieldPath", str("metadata.name"))]))]))]))
        }
        env += envPairs.map { map([("name", str($0.0)), ("value", str($0.1))]) }
        var container: [(String, Node)] = [("name", str((try? objectName(g.name)) ?? "main")), ("image", str(image)),
                                           ("command", seq([str(executable)])), ("args", seq(args.map(str)))]
        if let workingDir { container.append(("workingDir", str(workingDir))) }
        if !env.isEmpty { container.append(("env", seq(env))) }
        if !ports.isEmpty {
            container.append(("ports", seq(ports.map { map([("name", str($0.0)), ("containerPort", int($0.1)), ("protocol", str("TCP"))]) })))
        }
        if let readiness {
            let deadline = readinessDeadline ?? .seconds(10)
            container.append(("startupProbe", merged(readiness, [("periodSeconds", int(1)), ("timeoutSeconds", int(probeTimeout)),
                                                                 ("failureThreshold", int(deadline.ceilSeconds()))])))
            container.append(("readinessProbe", merged(readiness, [("periodSeconds", int(5)), ("timeoutSeconds", int(probeTimeout)),
                                                                   ("failureThreshold", int(3))])))
        }
        if let liveness { container.append(("livenessProbe", liveness)) }
        container.append(("resources", map([])))
        let pod = map([("terminationGracePeriodSeconds", int(c.stopTimeout.ceilSeconds())), ("restartPolicy", str("Always")),
                       ("containers", seq([map(container)]))])
        let deploymentObject = map([
            ("apiVersion", str("apps/v1")), ("kind", str("Deployment")),
            ("metadata", map([("name", str(name)), ("labels", labels)])),
            ("spec", map([("replicas", int(g.instances.count)), ("selector", map([("matchLabels", labels)])),
                          ("template", map([("metadata", map([("labels", labels)])), ("spec", pod)]))])),
        ])
        var documents = [deploymentObject]
        let servicePorts = ports
        if !servicePorts.isEmpty {
            var spec: [(String, Node)] = [("selector", labels)]
            // Handlers are called one by one at the address they register: a headless Service gives each
            // pod a DNS name instead of balancing calls across them.
            if g.role == .handler { spec.append(("clusterIP", str("None"))) }
            spec.append(("ports", seq(servicePorts.map { map([("name", str($0.0)), ("port", int($0.1)), ("targetPort", int($0.1)),
                                                              ("protocol", str("TCP"))]) })))
            documents.append(map([("apiVersion", str("v1")), ("kind", str("Service")),
                                  ("metadata", map([("name", str(name)), ("labels", labels)])), ("spec", map(spec))]))
        }
        let yaml: String
        do {
            yaml = try Yams.serialize(nodes: documents, indent: 2, width: -1, allowUnicode: true, explicitStart: true)
        } catch {
            throw ExportError("\(c.id): cannot write YAML: \(error)")
        }
        var text = "# Written by `szgovernor export kubernetes` from \(d.sourcePath.map { ($0 as NSString).lastPathComponent } ?? "a deployment") (deployment \"\(d.name)\"): \(g.role == .server ? "the server" : "handler spec \"\(g.name)\"").\n"
        text += "# `kubectl apply -f .` in this folder. docs/DISTRIBUTED.md maps every key.\n"
        var seen = Set<String>()
        notes = notes.filter { seen.insert($0).inserted }
        for n in notes {
            text += "# \(n)\n"
            out.notes.append(ExportNote(file: file, text: n))
        }
        out.files.append(ExportedFile(path: file, contents: text + yaml))
        return out
    }

    /// `$(` written as `$$(`: Kubernetes expands `$(VAR)` in command, args and env values.
    static func escapeDollar(_ s: String) -> String { s.replacingOccurrences(of: "$(", with: "$$(") }

    static func execProbe(_ command: [String]) -> Node { map([("exec", map([("command", seq(command.map(str)))]))]) }

    static func merged(_ node: Node, _ extra: [(String, Node)]) -> Node {
        guard case .mapping(let m) = node else { return node }
        return map(m.map { ($0.key.string ?? "", $0.value) } + extra)
    }

    static func str(_ s: String) -> Node { .scalar(.init(s, .implicit, .doubleQuoted)) }
    static func int(_ i: Int) -> Node { .scalar(.init(String(i), .implicit, .plain)) }
    static func seq(_ nodes: [Node]) -> Node { .sequence(.init(nodes)) }
    static func map(_ pairs: [(String, Node)]) -> Node {
        .mapping(.init(pairs.map { (Node.scalar(.init($0.0, .implicit, .plain)), $0.1) }))
    }
}

