// Deployment files (YAML). Schema (every field but `command` optional; durations: 250ms, 5s, 1m, or ms):
//
//   deployment: ci                       # checked like a folder name; defaults to the file name
//   environment: {KEY: value}            # global, under each process's own
//   inherit_environment: [PATH, HOME]    # names passed on from the governor's environment
//   defaults:                            # applied to the server and every handler
//     stop_timeout: 5s
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
import Yams

public enum DeploymentFile {
    static let rootKeys = ["deployment", "environment", "inherit_environment", "defaults", "server", "handlers"]
    static let processKeys = ["command", "endpoint", "environment", "restart", "stop_timeout", "readiness", "settings"]
    static let handlerKeys = ["id", "replicas", "port_base"] + processKeys
    static let defaultsKeys = ["stop_timeout", "restart", "readiness"]
    static let restartKeys = ["policy", "max_restarts", "window", "reset_after", "backoff"]
    static let backoffKeys = ["initial", "multiplier", "max", "jitter", "immediate"]

    /// Loads a deployment file. `deploymentsRoot` is where `<name>/` folders live (for DEPLOYMENT_DIR).
    /// `replicas` overrides the replica count of handler specs by id (what `szgovernor scale` does).
    public static func load(path: String, variables: [String: String] = [:],
                            deploymentsRoot: String, replicas: [String: Int] = [:]) throws(DeploymentFileError) -> Deployment {
        let display = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DeploymentFileError(file: path, line: 0, column: 0, field: "", message: "cannot read the file")
        }
        var deployment = try parse(yaml: text, file: display, defaultName: String(display.split(separator: ".").first ?? ""),
                                   variables: variables, deploymentsRoot: deploymentsRoot, replicas: replicas)
        deployment.baseDirectory = (path as NSString).deletingLastPathComponent
        deployment.sourcePath = path
        return deployment
    }

    public static func parse(yaml: String, file: String, defaultName: String, variables: [String: String] = [:],
                             deploymentsRoot: String, replicas replicaOverrides: [String: Int] = [:]) throws(DeploymentFileError) -> Deployment {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw yamlError(error, file: file)
        } catch {
            throw DeploymentFileError(file: file, line: 0, column: 0, field: "", message: "\(error)")
        }
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
            if let t = d["stop_timeout"] { defaults.stopTimeout = try t.duration() }
            if let r = d["restart"] { defaults.restart = try restartPolicy(r, base: defaults.restart) }
            if let r = d["readiness"] { defaults.readiness = r }
        }

        var server: HandlerConfig?
        var serverEndpoint: String?
        if let f = fields["server"] {
            let s = try f.mapping(allowed: processKeys)
            var vars = globals
            vars["NAME"] = "server"
            vars["INDEX"] = "1"
            vars["READY_FILE"] = globals["RUN_DIR"]! + "/server.ready"
            if let e = s["endpoint"] { serverEndpoint = try substitute(try e.string(), vars, e) }
            vars["ENDPOINT"] = serverEndpoint ?? ""
            vars["SERVER_ENDPOINT"] = serverEndpoint ?? ""
            server = try process(f, s, id: "server", role: .server, vars: vars, endpoint: serverEndpoint, defaults: defaults)
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
                let portBase = try h["port_base"].map { f throws(DeploymentFileError) in try f.int(min: 1) }
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
                    if let portBase { vars["PORT"] = "\(portBase + index - 1)" }
                    var endpoint: String?
                    if let e = h["endpoint"] { endpoint = try substitute(try e.string(), vars, e) }
                    vars["ENDPOINT"] = endpoint ?? ""
                    handlers.append(try process(entry, h, id: id, role: .handler, vars: vars, endpoint: endpoint, defaults: defaults))
                }
            }
        }
        var deployment = Deployment(name: name, server: server, handlers: handlers, environment: environment,
                                    inheritEnvironment: inherit)
        deployment.handlerSpecs = specs.mapValues { $0 ?? 0 }
        return deployment
    }

    struct ProcessDefaults {
        var stopTimeout: Duration = .seconds(5)
        var restart = RestartPolicy()
        var readiness: YAMLField?
    }

    static func process(_ field: YAMLField, _ f: [String: YAMLField], id: String, role: ProcessRole,
                        vars: [String: String], endpoint: String?, defaults: ProcessDefaults) throws(DeploymentFileError) -> HandlerConfig {
        guard let commandField = f["command"] else { throw field.error("needs a command (a list: [executable, args...])") }
        let command = try commandField.sequence().map { c throws(DeploymentFileError) in try substitute(try c.string(), vars, c) }
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
        let stopTimeout = try f["stop_timeout"]?.duration() ?? defaults.stopTimeout
        let readiness = try (f["readiness"] ?? defaults.readiness).map { r throws(DeploymentFileError) in try readinessSpec(r, vars) } ?? .none
        return HandlerConfig(id: id, role: role, executable: executable, arguments: Array(command.dropFirst()),
                             endpoint: endpoint, environment: environment, restart: restart,
                             stopTimeout: stopTimeout, readiness: readiness, settings: settings)
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
        if let w = r["window"] { policy.window = try w.duration() }
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

    static func readinessSpec(_ field: YAMLField, _ vars: [String: String]) throws(DeploymentFileError) -> ReadinessSpec {
        if case .scalar(let s) = field.node {
            if s.string == "ping" { return .custom(kind: "ping", settings: [:], timeout: .seconds(10)) }
            guard s.string == "none" else {
                throw field.error("must be none, ping, {ping: ENDPOINT, within: 50ms, timeout: 10s}, {ready_file: PATH, timeout: 10s} or {kind: NAME, timeout: 5s, ...} (got \"\(s.string)\")")
            }
            return .none
        }
        guard case .mapping = field.node else { throw field.error("must be none or a mapping, got \(field.kind)") }
        let all = try field.stringMap()
        let timeout = try all["timeout"]?.duration() ?? .seconds(10)
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
        if let ping = all["ping"] {
            var settings: [String: String] = ["ping": try substitute(try ping.string(), vars, ping)]
            for (k, v) in all where k != "ping" && k != "timeout" {
                guard k == "within" else { throw v.error("unknown field (allowed with ping: ping, within, timeout)") }
                guard parseDuration(try v.string()) != nil else {
                    throw v.error("must be a duration like 50ms (got \"\(try v.string())\")")
                }
                settings[k] = try v.string()
            }
            return .custom(kind: "ping", settings: settings, timeout: timeout)
        }
        guard let kind = all["kind"] else { throw field.error("needs ping, ready_file or kind") }
        var settings: [String: String] = [:]
        for (k, v) in all where k != "kind" && k != "timeout" { settings[k] = try substitute(try v.string(), vars, v) }
        return .custom(kind: try kind.string(), settings: settings, timeout: timeout)
    }

    /// Replaces `${NAME}` with `vars[NAME]`; an unknown name is an error at `field`.
    static func substitute(_ text: String, _ vars: [String: String], _ field: YAMLField) throws(DeploymentFileError) -> String {
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw field.error("unterminated ${ in \"\(text)\"")
            }
            let name = String(rest[start.upperBound..<end])
            guard let value = vars[name] else {
                throw field.error("unknown variable ${\(name)} (known: \(vars.keys.sorted().joined(separator: ", ")))")
            }
            out += value
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }

    static func yamlError(_ error: YamlError, file: String) -> DeploymentFileError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return DeploymentFileError(file: file, line: mark.line, column: mark.column, field: "",
                                       message: "YAML syntax: \(problem)")
        default:
            return DeploymentFileError(file: file, line: 0, column: 0, field: "", message: "YAML: \(error)")
        }
    }
}
