// `szgovernor export systemd DIR`: a unit per process group of a deployment (docs/DISTRIBUTED.md).
//   <d>-server.service      the server
//   <d>-<spec>@.service     a template per handler spec; instance N is replica <spec>-N
//   <d>-<spec>@N.service.d/instance.conf   what instance N needs beyond `%i` (its ${PORT}, ...), when anything
//   <d>.target              wants every unit: `systemctl start <d>.target`
#if canImport(Glibc)
import Glibc
#endif
import ScheduleZeroWire
import Foundation

public enum SystemdExport {
    /// The variable that carries an instance's `${PORT}` into ExecStart= (set in its drop-in).
    static let portVariable = "SZGOVERNOR_PORT"
    static let publicPortVariable = "SZGOVERNOR_PUBLIC_PORT"

    /// `deployment` as DeploymentFile.load gives it with `interposers: false`; `deploymentDirectory` is the
    /// folder `${DEPLOYMENT_DIR}` names; `parentEnvironment` is what the governor would inherit from (PATH
    /// for bare executable names).
    public static func export(_ deployment: Deployment, deploymentDirectory: String,
                              parentEnvironment: [String: String]) throws(ExportError) -> EngineExport {
        var out = EngineExport()
        let groups = ProcessGroup.groups(of: deployment)
        let target = "\(deployment.name).target"
        let serverUnit = deployment.server.map { _ in "\(deployment.name)-server.service" }
        var wanted: [String] = []
        for group in groups {
            let unit = unitName(deployment, group)
            wanted += group.role == .server ? [unit] : group.instances.map { instanceName(deployment, group, group.index($0)) }
            try out.merge(unitFiles(deployment, group, unit: unit, target: target, serverUnit: serverUnit,
                                    deploymentDirectory: deploymentDirectory, parent: parentEnvironment))
        }
        var t = header(deployment)
        t += ["[Unit]", "Description=ScheduleZero deployment \(deployment.name)",
              "Wants=\(wanted.joined(separator: " "))", "", "[Install]", "WantedBy=multi-user.target"]
        out.files.append(ExportedFile(path: target, contents: t.joined(separator: "\n") + "\n"))
        return out
    }

    static func unitName(_ d: Deployment, _ g: ProcessGroup) -> String {
        g.role == .server ? "\(exportBaseName(d, g)).service" : "\(exportBaseName(d, g))@.service"
    }

    static func instanceName(_ d: Deployment, _ g: ProcessGroup, _ index: Int) -> String { "\(exportBaseName(d, g))@\(index).service" }

    static func header(_ d: Deployment) -> [String] {
        ["# Written by `szgovernor export systemd` from \(d.sourcePath.map { ($0 as NSString).lastPathComponent } ?? "a deployment") (deployment \"\(d.name)\").",
         "# Install: copy this folder's files into /etc/systemd/system/, then `systemctl daemon-reload` and",
         "# `systemctl start \(d.name).target`. docs/DISTRIBUTED.md maps every key."]
    }

    /// The unit (or template with its instances' drop-ins) of one group.
    static func unitFiles(_ d: Deployment, _ g: ProcessGroup, unit: String, target: String, serverUnit: String?,
                          deploymentDirectory: String, parent: [String: String]) throws(ExportError) -> EngineExport {
        var out = EngineExport()
        let template = g.role == .handler
        let n = g.instances.count
        // Per instance: what `%i` and ${SZGOVERNOR_PORT} stand for, in ExecStart= (variables expand there)
        // and in Environment=/WorkingDirectory= (specifiers only).
        func tokens(_ c: HandlerConfig, variables: Bool) -> InstanceTokens {
            var table: [(String, [Segment])] = []
            if template, g.replicated, let name = c.instanceVariables["NAME"] { table.append((name, [.text("\(g.name)-"), .index])) }
            if variables, let port = c.instanceVariables["PORT"] { table.append((port, [.variable(portVariable)])) }
            if variables, let p = c.instanceVariables["PUBLIC_PORT"], p != c.instanceVariables["PORT"] {
                table.append((p, [.variable(publicPortVariable)]))
            }
            table.sort { $0.0.count > $1.0.count }
            let whole: [(String, [Segment])] = template && g.replicated ? c.instanceVariables["INDEX"].map { [($0, [.index])] } ?? [] : []
            return InstanceTokens(table: table.map { (value: $0.0, segments: $0.1) }, whole: whole.map { (value: $0.0, segments: $0.1) })
        }
        let execTokens = g.instances.map { tokens($0, variables: true) }
        let plainTokens = g.instances.map { tokens($0, variables: false) }
        var dropIns = Array(repeating: [String](), count: n)   // per instance: lines of its [Service] drop-in
        var usedVariables = Set<String>()
        func value(of variable: String, _ k: Int) -> String? {
            let v = g.instances[k].instanceVariables
            switch variable {
            case portVariable: return v["PORT"]
            case publicPortVariable: return v["PUBLIC_PORT"]
            default: return nil
            }
        }
        func render(_ segments: [Segment], _ k: Int) -> String? {
            var s = ""
            for seg in segments {
                switch seg {
                case .text(let t): s += t
                case .index: s += "\(g.index(g.instances[k]))"
                case .variable(let v): guard let x = value(of: v, k) else { return nil }; s += x
                }
            }
            return s
        }

        // ExecStart=: absolute executable, then each argument as one pattern or a per-instance variable.
        var execs: [String] = []
        for c in g.instances {
            do { execs.append(try d.resolvedExecutable(for: c, parent: parent)) } catch {
                throw ExportError("\(c.id): \(error) (export resolves executables as `szgovernor up` does)")
            }
        }
        var execStart: String?
        if Set(execs).count == 1, Set(g.instances.map(\.arguments.count)).count == 1 {
            var words = [try execWord([.text(execs[0])], c: g.first)]
            for i in 0..<g.first.arguments.count {
                let values = g.instances.map { $0.arguments[i] }
                if let p = Generalize.pattern(values, tokens: execTokens, replicated: g.replicated, render: render) {
                    for case .variable(let v) in p { usedVariables.insert(v) }
                    words.append(try execWord(p, c: g.first))
                } else {
                    let v = "SZGOVERNOR_ARG\(i + 1)"
                    words.append("${\(v)}")
                    for k in 0..<n { dropIns[k].append(try environmentLine(v, [.text(values[k])], c: g.instances[k])) }
                }
            }
            execStart = words.joined(separator: " ")
        } else {
            for (k, c) in g.instances.enumerated() {
                let words = try ([execs[k]] + c.arguments).map { a throws(ExportError) in try execWord([.text(a)], c: c) }
                dropIns[k] += ["ExecStart=", "ExecStart=" + words.joined(separator: " ")]
            }
        }
        for v in usedVariables.sorted() {
            for k in 0..<n { dropIns[k].append(try environmentLine(v, [.text(value(of: v, k) ?? "")], c: g.instances[k])) }
        }

        // Environment=: the file's global and per-process variables (inherited names: PassEnvironment=).
        var environment: [String] = []
        let envs = g.instances.map { d.environment.merging($0.environment) { $1 }.merging(markers(d, $0)) { $1 } }
        let keys = envs.reduce(into: Set<String>()) { $0.formUnion($1.keys) }.sorted()
        for key in keys {
            let values = envs.compactMap { $0[key] }
            if values.count == n, let p = Generalize.pattern(values, tokens: plainTokens, replicated: g.replicated, render: render) {
                environment.append(try environmentLine(key, p, c: g.first))
            } else {
                for k in 0..<n { if let v = envs[k][key] { dropIns[k].append(try environmentLine(key, [.text(v)], c: g.instances[k])) } }
            }
        }
        let passed = d.inheritEnvironment.filter { !keys.contains($0) && $0 != "SZ_TEST_TMPDIR" }

        var workingDirectory: String?
        let dirs = g.instances.map { $0.workingDirectory }
        if dirs.allSatisfy({ $0 == nil }) {
            workingDirectory = nil
        } else if dirs.allSatisfy({ $0 != nil }),
                  let p = Generalize.pattern(dirs.map { $0! }, tokens: plainTokens, replicated: g.replicated, render: render) {
            workingDirectory = try specifierText(p, c: g.first)
        } else {
            for k in 0..<n { if let w = dirs[k] { dropIns[k].append("WorkingDirectory=" + (try specifierText([.text(w)], c: g.instances[k]))) } }
        }

        // The deployment folder, when the process's values name it (ipc sockets in run/, ready files).
        let everything = g.instances.flatMap { c in c.arguments + Array(c.environment.values) + [c.endpoint ?? ""] }
        let needsFolder = everything.contains { DeploymentFolder.isInside($0.replacingOccurrences(of: "ipc://", with: ""), deploymentDirectory) }

        let c = g.first
        let policy = c.restart
        var lines = header(d)
        if template {
            lines.append("# Template: instance N is replica \(g.replicated ? "\(g.name)-N" : g.name) of handler spec \"\(g.name)\" (exported: \(g.instances.map { "\(g.index($0))" }.joined(separator: ", "))).")
            if dropIns.contains(where: { !$0.isEmpty }) {
                lines.append("# What an instance needs beyond %i (its ${PORT}, ...) is in \(exportBaseName(d, g))@N.service.d/instance.conf.")
            }
        }
        lines += ["[Unit]", "Description=ScheduleZero \(d.name): \(template ? "handler \(g.name)\(g.replicated ? "-%i" : "") (instance %i)" : "server")",
                  "PartOf=\(target)"]
        if template, let serverUnit { lines += ["After=\(serverUnit)", "Wants=\(serverUnit)"] }
        lines += ["StartLimitIntervalSec=\(DurationText.format(policy.window))", "StartLimitBurst=\(policy.maxRestarts + 1)", "", "[Service]", "Type=exec"]
        if needsFolder {
            let mkdir = (try? ExecutableResolver.resolve("mkdir", relativeTo: nil, searchPath: "/usr/bin:/bin")) ?? "/bin/mkdir"
            let folders = [deploymentDirectory, deploymentDirectory + "/run", deploymentDirectory + "/logs"]
            lines.append("ExecStartPre=" + (try ([mkdir, "-p", "-m", "0700"] + folders).map { a throws(ExportError) in try execWord([.text(a)], c: c) }).joined(separator: " "))
        }
        if let execStart { lines.append("ExecStart=" + execStart) }
        if let workingDirectory { lines.append("WorkingDirectory=" + workingDirectory) }
        if !passed.isEmpty { lines.append("PassEnvironment=" + passed.joined(separator: " ")) }
        lines += environment
        lines += ["Restart=\(restartValue(policy.mode))", "RestartSec=\(DurationText.format(policy.backoff.initial))",
                  "TimeoutStopSec=\(DurationText.format(c.stopTimeout))", "KillMode=control-group", "KillSignal=SIGTERM", "SendSIGKILL=yes"]
        for note in notes(d, g) {
            lines.append("# " + note)
            out.notes.append(ExportNote(file: unit, text: note))
        }
        lines += ["", "[Install]", "WantedBy=\(target)"]
        out.files.append(ExportedFile(path: unit, contents: lines.joined(separator: "\n") + "\n"))
        for (k, dropIn) in dropIns.enumerated() where !dropIn.isEmpty {
            let name = instanceName(d, g, g.index(g.instances[k]))
            let text = ["# Instance \(g.index(g.instances[k])) of \(unit): replica \(g.instances[k].id) (written by `szgovernor export systemd`).",
                        "[Service]"] + dropIn
            out.files.append(ExportedFile(path: "\(name).d/instance.conf", contents: text.joined(separator: "\n") + "\n"))
        }
        return out
    }

    /// What the governor gives every child too (not its PID and folder markers: no governor runs here).
    static func markers(_ d: Deployment, _ c: HandlerConfig) -> [String: String] {
        ["SZGOVERNOR_DEPLOYMENT": d.name, "SZGOVERNOR_NAME": c.id]
    }

    static func restartValue(_ mode: RestartMode) -> String {
        switch mode {
        case .always: "always"
        case .onFailure: "on-failure"
        case .never: "no"
        }
    }

    /// What the group uses that systemd has no equivalent for (one line each).
    static func notes(_ d: Deployment, _ g: ProcessGroup) -> [String] {
        let c = g.first
        var out: [String] = []
        let who = g.instances.count > 1 ? "\(c.id)'s, " : ""
        if g.instances.contains(where: { d.interposersLeftOut.contains($0.id) }) {
            out.append("interpose: no systemd equivalent (the governor's message-level interposer on the link): the process binds its endpoint \(c.endpoint ?? "") itself; put `szchaos proxy` in front of it to keep one")
        }
        switch c.readiness {
        case .none: break
        case .readyFile(let path, let t):
            out.append("readiness ready_file \(path) (within \(DurationText.format(t))): no systemd equivalent (Type=notify needs sd_notify READY=1 from the service); Type=exec: started once the executable runs, units after it do not wait for the file")
        case .custom(let kind, let settings, let t):
            let what = PingProbe.kinds.contains(kind) ? "ping \(settings["ping"] ?? c.endpoint ?? "")" : kind == HTTPReadinessProbe.kind ? "http \(settings["http"] ?? "")" : kind
            out.append("readiness \(what) (\(who)within \(DurationText.format(t))): no systemd equivalent (Type=notify needs sd_notify READY=1 from the service); Type=exec: started once the executable runs, units after it do not wait for an answer")
        }
        if let l = c.liveness {
            out.append("liveness \(l.check) (\(who)every \(DurationText.format(l.period)), \(l.failures) failures): no systemd equivalent (WatchdogSec= needs sd_notify WATCHDOG=1 from the service): a hung process is not restarted")
        }
        let b = c.restart.backoff
        if c.restart.mode != .never, b.immediateRestarts > 0 || b.jitter > 0 || (b.multiplier != 1 && b.cap > b.initial) {
            out.append("restart backoff (\(b.immediateRestarts) at once, then \(DurationText.format(b.initial)) x \(b.multiplier)^n up to \(DurationText.format(b.cap)), jitter \(b.jitter), reset after a \(DurationText.format(c.restart.resetAfter)) run): systemd 252 waits a constant RestartSec=; RestartSteps=/RestartMaxDelaySec= (systemd >= 254) give the exponential part, without jitter")
        }
        return out
    }

    // MARK: quoting (systemd.syntax, systemd.service "Command lines")

    static func checkText(_ t: String, c: HandlerConfig) throws(ExportError) {
        if t.contains("\n") || t.contains("\r") || t.contains("\0") {
            throw ExportError("\(c.id): the value \(String(reflecting: t)) holds a line break or NUL, which a unit file cannot carry")
        }
    }

    /// One ExecStart= word: `%` and `$` doubled in literal text (no specifier, no variable), quoted when it
    /// holds a space, quote, backslash or `;`.
    static func execWord(_ segments: [Segment], c: HandlerConfig) throws(ExportError) -> String {
        var body = ""
        var quote = segments.isEmpty
        for s in segments {
            switch s {
            case .text(let t):
                try checkText(t, c: c)
                if t.isEmpty && segments.count == 1 { quote = true }
                for ch in t {
                    switch ch {
                    case "\\": body += "\\\\"; quote = true
                    case "\"": body += "\\\""; quote = true
                    case "%": body += "%%"
                    case "$": body += "$$"
                    case " ", "\t", "'", ";": body.append(ch); quote = true
                    default: body.append(ch)
                    }
                }
            case .index: body += "%i"
            case .variable(let v): body += "${\(v)}"
            }
        }
        return quote ? "\"\(body)\"" : body
    }

    /// `Environment="KEY=VALUE"`: specifiers expand (`%i`), variables do not.
    static func environmentLine(_ key: String, _ segments: [Segment], c: HandlerConfig) throws(ExportError) -> String {
        guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }), !key.first!.isNumber else {
            throw ExportError("\(c.id): environment variable name \"\(key)\" cannot be written in Environment= (letters, digits and _ only)")
        }
        var body = ""
        for s in segments {
            switch s {
            case .text(let t):
                try checkText(t, c: c)
                for ch in t {
                    switch ch {
                    case "\\": body += "\\\\"
                    case "\"": body += "\\\""
                    case "%": body += "%%"
                    default: body.append(ch)
                    }
                }
            case .index: body += "%i"
            case .variable: throw ExportError("\(c.id): \(key): internal error, a variable in Environment=")
            }
        }
        return "Environment=\"\(key)=\(body)\""
    }

    /// A path with specifiers (WorkingDirectory=).
    static func specifierText(_ segments: [Segment], c: HandlerConfig) throws(ExportError) -> String {
        var body = ""
        for s in segments {
            switch s {
            case .text(let t): try checkText(t, c: c); body += t.replacingOccurrences(of: "%", with: "%%")
            case .index: body += "%i"
            case .variable: throw ExportError("\(c.id): internal error, a variable in WorkingDirectory=")
            }
        }
        return body
    }
}

extension EngineExport {
    mutating func merge(_ other: EngineExport) {
        files += other.files
        notes += other.notes
    }
}
