// Deployment files (YAML). Schema (every field but `command` optional; durations: 250ms, 5s, 1m, or ms):
//
//   deployment: ci                       # checked like a folder name; defaults to the file name
//   environment: {KEY: value}            # global, under each process's own
//   inherit_environment: [PATH, HOME]    # names passed on from the governor's environment
//   max_processes: 1000                  # ceiling on server + handler instances (Limits.swift)
//   defaults:                            # applied to the server and every handler
//     stop_timeout: 5s
//     log: {max_size: 50MiB, backups: 10}  # rotation of logs/<name>.log (LogPump.swift); also per process
//     restart: {policy: on-failure, max_restarts: 5, window: 60s, reset_after: 10s,
//               backoff: {initial: 100ms, multiplier: 2, max: 30s, jitter: 0.2, immediate: 1}}
//     readiness: none | ping | {ping: ENDPOINT, within: 50ms, timeout: 10s} | {ready_file: PATH, timeout: 10s}
//                | {kind: zmq-ping, timeout: 5s, ...settings}
//   server:   {command: [EXE, ARG...], endpoint, environment, restart, stop_timeout, readiness, settings}
//   handlers:
//     - id: h
//       replicas: 3                      # -> h-1, h-2, h-3 (without replicas: the id itself)
//       port_base: 4245                  # ${PORT} = port_base + index - 1
//       (same fields as server)
//
// `${VAR}` in command, endpoint, environment values, readiness and settings is replaced from the supplied
// variables (e.g. SZMOCK, BIN_DIR: "this build's" executables) and these built-ins: DEPLOYMENT,
// DEPLOYMENT_DIR, RUN_DIR, LOG_DIR, NAME, INDEX, PORT (with port_base), ENDPOINT (this process's),
// SERVER_ENDPOINT, READY_FILE (= RUN_DIR/NAME.ready). An unknown variable is an error naming its field.
import Foundation
import Interposer
import Yams

public enum DeploymentFile {
    static let rootKeys = ["deployment", "environment", "inherit_environment", "defaults", "server", "handlers",
                           "max_processes"]
    static let processKeys = ["command", "endpoint", "environment", "restart", "stop_timeout", "readiness", "settings",
                              "interpose", "log"] + realServiceKeys
    static let handlerKeys = ["id", "replicas", "port_base"] + processKeys
    static let defaultsKeys = ["stop_timeout", "restart", "readiness", "interpose", "log"] + realServiceKeys
    static let interposeKeys = ["timeout", "private_port_base"]
    static let logKeys = ["max_size", "backups"]
    static let restartKeys = ["policy", "max_restarts", "window", "reset_after", "backoff"]
    static let backoffKeys = ["initial", "multiplier", "max", "jitter", "immediate"]

    /// Loads a deployment file. `deploymentsRoot` is where `<name>/` folders live (for DEPLOYMENT_DIR).
    /// `replicas` overrides the replica count of handler specs by id (what `szgovernor scale` does).
    /// `interposers: false` loads every process as if it had no `interpose:` (each binds its `endpoint:`
    /// itself; what `szgovernor export` writes for engines without interposers), the names in
    /// `Deployment.interposersLeftOut`.
    public static func load(path: String, variables: [String: String] = [:],
                            deploymentsRoot: String, replicas: [String: Int] = [:],
                            interposers: Bool = true) throws(DeploymentFileError) -> Deployment {
        let display = (path as NSString).lastPathComponent
        let text = try YAMLSource.text(of: path, display: display)
        var deployment = try parse(yaml: text, file: display, defaultName: String(display.split(separator: ".").first ?? ""),
                                   variables: variables, deploymentsRoot: deploymentsRoot, replicas: replicas,
                                   baseDirectory: (path as NSString).deletingLastPathComponent, interposers: interposers)
        deployment.baseDirectory = (path as NSString).deletingLastPathComponent
        deployment.sourcePath = path
        return deployment
    }

    public static func parse(yaml: String, file: String, defaultName: String, variables: [String: String] = [:],
                             deploymentsRoot: String, replicas replicaOverrides: [String: Int] = [:],
                             baseDirectory: String? = nil, interposers: Bool = true) throws(DeploymentFileError) -> Deployment {
        let node = try YAMLSource.compose(yaml, file: file)
        guard let node else { throw DeploymentFileError(file: file, line: 1, column: 1, field: "", message: "the file is empty") }
        let root = YAMLField(node: node, path: "", file: file)
        let fields = try root.mapping(allowed: rootKeys)

        var name = defaultName
        if let f = fields["deployment"] { name = try f.string() }
        do { try Names.validateDeployment(name) } catch {
            throw (fields["deployment"] ?? root).error(error.description)
        }
        let deploymentDir = (deploymentsRoot as NSString).appendingPathComponent(name)
        var globals = variables
        globals["DEPLOYMENT"] = name
        globals["DEPLOYMENT_DIR"] = deploymentDir
        globals["RUN_DIR"] = deploymentDir + "/run"
        globals["LOG_DIR"] = deploymentDir + "/logs"

        var environment: [String: String] = [:]
        if let f = fields["environment"] {
            for (k, v) in try f.stringMap() { environment[k] = try substitute(try v.string(), globals, v) }
        }
        var inherit = Deployment.defaultInherited
        if let f = fields["inherit_environment"] { inherit = try f.sequence().map { f throws(DeploymentFileError) in try f.string() } }

        var defaults = ProcessDefaults()
        if let f = fields["defaults"] {
            let d = try f.mapping(allowed: defaultsKeys)
            if let t = d["stop_timeout"] { defaults.stopTimeout = try t.duration(positive: true) }
            if let r = d["restart"] { defaults.restart = try restartPolicy(r, base: defaults.restart) }
            if let r = d["readiness"] { defaults.readiness = r }
            if let i = d["interpose"] { defaults.interpose = try interposeSetting(i) }
            defaults.workingDir = d["working_dir"]
            defaults.liveness = d["liveness"]
            if let l = d["log"] { defaults.log = try logRotation(l, base: defaults.log) }
        }
        defaults.baseDirectory = baseDirectory

        var maxProcesses = ProcessLimits.defaultMaxProcesses
        if let f = fields["max_processes"] {
            maxProcesses = try f.int(min: 1)
            guard maxProcesses <= ProcessLimits.maxMaxProcesses else {
                throw f.error("must be at most \(ProcessLimits.maxMaxProcesses) (got \(maxProcesses))")
            }
        }
        var processCount = fields["server"] == nil ? 0 : 1
        var interposersLeftOut: [String] = []
        /// The process's `interpose:` setting, or nil (recorded) when interposers are left out: the process
        /// then binds its public endpoint, and `${PORT}` is that endpoint's port as its interposer's was.
        func processInterpose(for id: String, _ own: YAMLField?, endpoint: String?,
                              vars: inout [String: String]) throws(DeploymentFileError) -> InterposeSetting? {
            let setting = try own.map { f throws(DeploymentFileError) in try interposeSetting(f) } ?? defaults.interpose
            if setting != nil, !interposers {
                interposersLeftOut.append(id)
                if vars["PORT"] == nil, let port = endpoint.flatMap(tcpHostPort)?.1 { vars["PORT"] = "\(port)" }
                return nil
            }
            return setting
        }

        var server: HandlerConfig?
        var serverEndpoint: String?
        if let f = fields["server"] {
            let s = try f.mapping(allowed: processKeys)
            var vars = globals
            vars["NAME"] = "server"
            vars["INDEX"] = "1"
            vars["READY_FILE"] = globals["RUN_DIR"]! + "/server.ready"
            if let e = s["endpoint"] { serverEndpoint = try endpointValue(e, vars) }
            vars["ENDPOINT"] = serverEndpoint ?? ""
            vars["SERVER_ENDPOINT"] = serverEndpoint ?? ""
            let link = try interposer(try processInterpose(for: "server", s["interpose"], endpoint: serverEndpoint, vars: &vars),
                                      id: "server", index: 1, publicEndpoint: serverEndpoint, runDir: globals["RUN_DIR"]!,
                                      at: s["interpose"] ?? s["endpoint"] ?? f, vars: &vars)
            server = try process(f, s, id: "server", role: .server, vars: vars, endpoint: serverEndpoint, defaults: defaults)
            server?.instanceVariables = vars.filter { HandlerConfig.instanceVariableNames.contains($0.key) }
            server?.interposer = link
        }

        var handlers: [HandlerConfig] = []
        var specs: [String: Int?] = [:]
        var seen: [String: YAMLField] = server != nil ? ["server": fields["server"]!] : [:]
        if let f = fields["handlers"] {
            for entry in try f.sequence() {
                let h = try entry.mapping(allowed: handlerKeys)
                guard let idField = h["id"] else { throw entry.error("needs an id") }
                let baseID = try idField.string()
                var replicas = try h["replicas"].map { f throws(DeploymentFileError) in try f.int(min: 1) }
                if let n = replicaOverrides[baseID] { replicas = n }
                specs[baseID] = replicas
                // Compared before adding: a replica count near Int.max must not overflow the sum.
                let count = replicas ?? 1
                if count > maxProcesses - processCount {
                    throw (h["replicas"] ?? idField).error(
                        "would make \(processCount.addingReportingOverflow(count).partialValue) processes, more than max_processes (\(maxProcesses)\(fields["max_processes"] == nil ? ", the default" : "")); raise max_processes: at the top of the file if you mean it")
                }
                processCount += count
                let portBase = try h["port_base"].map { f throws(DeploymentFileError) in try f.int(min: 1) }
                if let portBase, let f = h["port_base"] {
                    let last = portBase <= 65535 ? portBase + count - 1 : portBase  // count <= max_processes here
                    guard last <= 65535 else {
                        throw f.error("ports must be in 1...65535: port_base \(portBase) with \(replicas ?? 1) replica(s) gives ports up to \(last)")
                    }
                }
                if replicas == 0 { continue }
                for index in 1...(replicas ?? 1) {
                    let id = replicas == nil ? baseID : "\(baseID)-\(index)"
                    do { try Names.validateProcess(id) } catch { throw idField.error(error.description) }
                    if seen[id] != nil { throw idField.error("process \"\(id)\" is defined twice") }
                    seen[id] = idField
                    var vars = globals
                    vars["NAME"] = id
                    vars["INDEX"] = "\(index)"
                    vars["READY_FILE"] = globals["RUN_DIR"]! + "/\(id).ready"
                    vars["SERVER_ENDPOINT"] = serverEndpoint ?? ""
                    if let (host, port) = serverEndpoint.flatMap(tcpHostPort) {
                        vars["SERVER_HOST"] = host
                        vars["SERVER_PORT"] = "\(port)"
                    }
                    if let portBase { vars["PORT"] = "\(portBase + index - 1)" }
                    var endpoint: String?
                    if let e = h["endpoint"] { endpoint = try endpointValue(e, vars) }
                    vars["ENDPOINT"] = endpoint ?? ""
                    let setting = try processInterpose(for: id, h["interpose"], endpoint: endpoint, vars: &vars)
                    let link = try interposer(setting, id: id, index: index, publicEndpoint: endpoint, runDir: globals["RUN_DIR"]!,
                                              at: h["interpose"] ?? h["endpoint"] ?? entry, vars: &vars)
                    if link != nil, let srv = server, srv.interposer == nil {
                        throw (h["interpose"] ?? fields["defaults"] ?? entry).error(
                            "an interposed handler registers its private endpoint, so the server must be interposed too "
                            + "(its interposer rewrites the address): add `interpose: true` to the server or under defaults")
                    }
                    var config = try process(entry, h, id: id, role: .handler, vars: vars, endpoint: endpoint, defaults: defaults)
                    config.interposer = link
                    config.specID = baseID
                    config.replicaIndex = replicas == nil ? nil : index
                    config.instanceVariables = vars.filter { HandlerConfig.instanceVariableNames.contains($0.key) }
                    handlers.append(config)
                }
            }
        }
        var deployment = Deployment(name: name, server: server, handlers: handlers, environment: environment,
                                    inheritEnvironment: inherit)
        deployment.handlerSpecs = specs.mapValues { $0 ?? 0 }
        deployment.maxProcesses = maxProcesses
        deployment.interposersLeftOut = interposersLeftOut
        return deployment
    }

    struct ProcessDefaults {
        var stopTimeout: Duration = .seconds(5)
        var restart = RestartPolicy()
        var readiness: YAMLField?
        var interpose: InterposeSetting?
        var workingDir: YAMLField?
        var liveness: YAMLField?
        /// The deployment file's folder: relative `working_dir`s resolve against it.
        var baseDirectory: String?
        var log = LogRotation()
    }

    /// `interpose: true | false | {timeout: 10s, private_port_base: N}`.
    struct InterposeSetting {
        var timeout: Duration = .seconds(10)
        var privatePortBase: Int?
        var field: YAMLField
    }

    static func interposeSetting(_ field: YAMLField) throws(DeploymentFileError) -> InterposeSetting? {
        if case .scalar(let s) = field.node {
            switch s.string {
            case "true", "yes", "on": return InterposeSetting(field: field)
            case "false", "no", "off": return nil
            default: throw field.error("must be true, false or {timeout: 10s, private_port_base: N} (got \"\(s.string)\")")
            }
        }
        let m = try field.mapping(allowed: interposeKeys)
        var setting = InterposeSetting(field: field)
        if let t = m["timeout"] { setting.timeout = try t.duration() }
        if let b = m["private_port_base"] {
            setting.privatePortBase = try b.int(min: 1)
            guard setting.privatePortBase! <= 65535 else { throw b.error("must be a TCP port (1...65535)") }
        }
        return setting
    }

    /// The link of an interposed process, and its variables: in its command and environment `${ENDPOINT}`
    /// and `${PORT}` become the private ones, `${PUBLIC_ENDPOINT}` and `${PUBLIC_PORT}` the public ones.
    static func interposer(_ setting: InterposeSetting?, id: String, index: Int, publicEndpoint: String?, runDir: String,
                           at field: YAMLField, vars: inout [String: String]) throws(DeploymentFileError) -> InterposerSpec? {
        vars["PUBLIC_ENDPOINT"] = publicEndpoint ?? ""
        if let port = publicEndpoint.flatMap(tcpHostPort)?.1 { vars["PUBLIC_PORT"] = "\(port)" }
        guard let setting else { return nil }
        guard let publicEndpoint, !publicEndpoint.isEmpty else {
            throw setting.field.error("an interposed process needs an endpoint (the public one its interposer binds)")
        }
        let privateEndpoint: String
        var privatePort: Int?
        if publicEndpoint.hasPrefix("ipc://") {
            privateEndpoint = "ipc://\(runDir)/\(id).private"
        } else if let (host, _) = tcpHostPort(publicEndpoint) {
            let port = try setting.privatePortBase.map { base throws(DeploymentFileError) -> Int in
                guard base + index - 1 <= 65535 else { throw setting.field.error("private_port_base + replicas runs past port 65535") }
                return base + index - 1
            } ?? PrivatePorts.reserve()
            guard let port else { throw setting.field.error("no free TCP port for the private endpoint of \(id)") }
            privatePort = port
            let bindHost = ["*", "0.0.0.0", "::", ""].contains(host) ? "127.0.0.1" : host
            privateEndpoint = "tcp://\(bindHost):\(port)"
        } else {
            throw field.error("interposition works on tcp:// and ipc:// endpoints, not \"\(publicEndpoint)\"")
        }
        vars["ENDPOINT"] = privateEndpoint
        if let privatePort { vars["PORT"] = "\(privatePort)" }
        return InterposerSpec(publicEndpoint: publicEndpoint, privateEndpoint: privateEndpoint, timeout: setting.timeout)
    }

    static func tcpHostPort(_ endpoint: String) -> (String, Int)? { AddressRewriter.tcpHostPort(endpoint) }

    static func process(_ field: YAMLField, _ f: YAMLMapping, id: String, role: ProcessRole,
                        vars: [String: String], endpoint: String?, defaults: ProcessDefaults) throws(DeploymentFileError) -> HandlerConfig {
        guard let commandField = f["command"] else { throw field.error("needs a command (a list: [executable, args...])") }
        // An argument that is an endpoint (`--control ipc://...`) gets the endpoint checks too.
        let command = try commandField.sequence().map { c throws(DeploymentFileError) in
            let arg = try substitute(try c.string(), vars, c)
            if let problem = EndpointLimits.problem(arg) { throw c.error(problem) }
            return arg
        }
        guard let executable = command.first, !executable.isEmpty else { throw commandField.error("must name an executable") }
        var environment: [String: String] = [:]
        if let e = f["environment"] {
            for (k, v) in try e.stringMap() { environment[k] = try substitute(try v.string(), vars, v) }
        }
        var settings: [String: String] = [:]
        if let s = f["settings"] {
            for (k, v) in try s.stringMap() { settings[k] = try substitute(try v.string(), vars, v) }
        }
        let restart = try f["restart"].map { r throws(DeploymentFileError) in try restartPolicy(r, base: defaults.restart) } ?? defaults.restart
        let stopTimeout = try f["stop_timeout"]?.duration(positive: true) ?? defaults.stopTimeout
        let readiness = try (f["readiness"] ?? defaults.readiness).map { r throws(DeploymentFileError) in try readinessSpec(r, vars) } ?? .none
        var config = HandlerConfig(id: id, role: role, executable: executable, arguments: Array(command.dropFirst()),
                                   endpoint: endpoint, environment: environment, restart: restart,
                                   stopTimeout: stopTimeout, readiness: readiness, settings: settings)
        try applyRealServiceKeys(f, defaults: defaults, vars: vars, to: &config)
        config.log = try f["log"].map { l throws(DeploymentFileError) in try logRotation(l, base: defaults.log) } ?? defaults.log
        return config
    }

    static func restartPolicy(_ field: YAMLField, base: RestartPolicy) throws(DeploymentFileError) -> RestartPolicy {
        let r = try field.mapping(allowed: restartKeys)
        var policy = base
        if let p = r["policy"] {
            let text = try p.string()
            guard let mode = RestartMode(rawValue: text) else {
                throw p.error("must be one of \(RestartMode.allCases.map(\.rawValue).joined(separator: ", ")) (got \"\(text)\")")
            }
            policy.mode = mode
        }
        if let m = r["max_restarts"] { policy.maxRestarts = try m.int(min: 0) }
        if let w = r["window"] { policy.window = try w.duration(positive: true) }
        if let w = r["reset_after"] { policy.resetAfter = try w.duration() }
        if let b = r["backoff"] {
            let bf = try b.mapping(allowed: backoffKeys)
            if let x = bf["initial"] { policy.backoff.initial = try x.duration() }
            if let x = bf["multiplier"] { policy.backoff.multiplier = try x.double(in: 1...100) }
            if let x = bf["max"] { policy.backoff.cap = try x.duration() }
            if let x = bf["jitter"] { policy.backoff.jitter = try x.double(in: 0...1) }
            if let x = bf["immediate"] { policy.backoff.immediateRestarts = try x.int(min: 0) }
            if policy.backoff.cap < policy.backoff.initial { throw b.error("max must not be below initial") }
        }
        return policy
    }

    /// `log: {max_size: 50MiB, backups: 10}`; sizes need a unit (B, KiB, MiB, GiB, KB, MB, GB).
    static func logRotation(_ field: YAMLField, base: LogRotation) throws(DeploymentFileError) -> LogRotation {
        let l = try field.mapping(allowed: logKeys)
        var rotation = base
        if let m = l["max_size"] {
            let text = try m.string()
            guard let size = LogRotation.parseSize(text) else {
                throw m.error("must be a size with a unit, like 50MiB, 512KiB or 1GiB (got \"\(text)\")")
            }
            guard (LogRotation.minimumSize...LogRotation.maximumSize).contains(size) else {
                throw m.error("must be from 4KiB to 1TiB (got \"\(text)\")")
            }
            rotation.maxSize = size
        }
        if let b = l["backups"] {
            rotation.backups = try b.int(min: 0)
            guard rotation.backups <= LogRotation.maximumBackups else {
                throw b.error("must be at most \(LogRotation.maximumBackups) (got \(rotation.backups))")
            }
        }
        return rotation
    }

    static func readinessSpec(_ field: YAMLField, _ vars: [String: String]) throws(DeploymentFileError) -> ReadinessSpec {
        if case .scalar(let s) = field.node {
            if s.string == "ping" { return .custom(kind: "ping", settings: [:], timeout: .seconds(10)) }
            guard s.string == "none" else {
                throw field.error("must be none, ping, {ping: ENDPOINT, within: 50ms, timeout: 10s}, {http: URL, timeout: 10s}, {ready_file: PATH, timeout: 10s} or {kind: NAME, timeout: 5s, ...} (got \"\(s.string)\")")
            }
            return .none
        }
        guard case .mapping = field.node else { throw field.error("must be none or a mapping, got \(field.kind)") }
        let all = try field.stringMap()
        let timeout = try all["timeout"]?.duration(positive: true) ?? .seconds(10)
        if let path = all["ready_file"] {
            if let extra = all.keys.first(where: { $0 != "ready_file" && $0 != "timeout" }) {
                throw all[extra]!.error("unknown field (allowed with ready_file: ready_file, timeout)")
            }
            let file = try substitute(try path.string(), vars, path)
            // Unlinked before each start: it must lie inside the deployment folder (${READY_FILE}, ${RUN_DIR}/...).
            if let dir = vars["DEPLOYMENT_DIR"], !DeploymentFolder.isInside(file, dir) {
                throw path.error("\"\(file)\" is outside the deployment folder \(dir) (the governor removes it before each start; use ${READY_FILE} or a path under ${RUN_DIR})")
            }
            return .readyFile(path: file, timeout: timeout)
        }
        if let http = all["http"] { return try httpReadinessSpec(http, all, vars, timeout: timeout) }
        if let ping = all["ping"] {
            var settings: [String: String] = ["ping": try endpointValue(ping, vars)]
            for (k, v) in all where k != "ping" && k != "timeout" {
                guard k == "within" else { throw v.error("unknown field (allowed with ping: ping, within, timeout)") }
                _ = try v.duration(positive: true)
                settings[k] = try v.string()
            }
            return .custom(kind: "ping", settings: settings, timeout: timeout)
        }
        guard let kind = all["kind"] else { throw field.error("needs ping, http, ready_file or kind") }
        var settings: [String: String] = [:]
        for (k, v) in all where k != "kind" && k != "timeout" { settings[k] = try substitute(try v.string(), vars, v) }
        return .custom(kind: try kind.string(), settings: settings, timeout: timeout)
    }

    /// An endpoint after substitution, refused when it can never work (EndpointLimits: ports, ipc path length).
    static func endpointValue(_ field: YAMLField, _ vars: [String: String]) throws(DeploymentFileError) -> String {
        let endpoint = try substitute(try field.string(), vars, field)
        if let problem = EndpointLimits.problem(endpoint) { throw field.error(problem) }
        return endpoint
    }

    /// Replaces `${NAME}` with `vars[NAME]`; an unknown name is an error at `field`.
    static func substitute(_ text: String, _ vars: [String: String], _ field: YAMLField) throws(DeploymentFileError) -> String {
        switch BuildVariables.substitute(text, vars) {
        case .success(let s): return s
        case .failure(let problem): throw field.error(problem.message(in: text))
        }
    }
}
