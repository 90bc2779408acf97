import Foundation
import Governor
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// `systemd-analyze` (Debian's `systemd`; scripts/install-deps.sh installs it): verifies unit files without
/// a running systemd.
private let systemdAnalyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }
/// PyPI's kubernetes-validate (the Kubernetes object schemas, offline) in the venv scripts/install-deps.sh makes.
private let kubernetesValidate: String? = {
    let path = CLIHarness.fixtures.deletingLastPathComponent().appendingPathComponent(".build/k8s-validate-venv/bin/kubernetes-validate").path
    return FileManager.default.isExecutableFile(atPath: path) ? path : nil
}()

/// `szgovernor export systemd|kubernetes DIR` end to end: the built-in demo and every fixture deployment
/// exported, checked by the engines' own tools where they can run here, and read back value by value
/// against the deployment as the governor loads it.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_Export {
    /// schedulezero.yaml needs these set (it is exported, never run, here).
    static let schedulezeroEnvironment = ["SCHEDULEZERO_CHECKOUT": "/nonexistent/ScheduleZero", "SCHEDULEZERO_PYTHON": "/usr/bin/python3"]

    /// Every deployment the tests export: the built-in demo (no file given) and Fixtures/deployments/*.yaml.
    static func fixtureFiles() throws -> [String] {
        let dir = CLIHarness.fixtures.appendingPathComponent("deployments").path
        return try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted().map { dir + "/" + $0 }
    }

    static func mode(_ path: String) -> mode_t? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return st.st_mode
    }

    /// Every file below `dir`, relative, sorted.
    static func listing(_ dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).filter { p in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: dir + "/" + p, isDirectory: &isDir) && !isDir.boolValue
        }.sorted()
    }

    /// The deployment as `szgovernor export` loads it (this build's variables, interposers left out).
    static func loaded(_ file: String, root: String) throws -> Deployment {
        try DeploymentFile.load(path: file, variables: BuildVariables.variables(executableDirectory: builtProductsDirectory()),
                                deploymentsRoot: root, interposers: false)
    }

    @Test(.enabled(if: systemdAnalyze != nil, "systemd-analyze is not installed: `apt-get install systemd` (scripts/install-deps.sh does)"))
    func systemdUnitsOfTheDemoAndEveryFixturePassSystemdAnalyzeVerify() async throws {
        let h = CLIHarness()
        defer { _ = h.cleanup() }
        for file in [nil] + (try Self.fixtureFiles()) {
            let name = file.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension } ?? "demo"
            let out = h.dir.file("systemd-\(file == nil ? "builtin" : name)")
            let r = try await h.run(["export", "systemd", out] + (file.map { [$0] } ?? []), environment: Self.schedulezeroEnvironment)
            #expect(r.ok, "export systemd \(name): \(r)")
            #expect(Self.mode(out).map { $0 & 0o7777 } == 0o755, "\(out) is made 0755")
            let files = Self.listing(out)
            #expect(files.contains("\(name).target") && files.contains("\(name)-server.service"), "\(name): \(files)")
            for f in files { #expect(Self.mode(out + "/" + f).map { $0 & 0o7777 } == 0o644, "\(f) is 0644") }
            // The templates themselves, then each exported instance (the target wants them; each loads its drop-in).
            var units = files.filter { !$0.contains("/") }.map { out + "/" + $0 }
            let target = try String(contentsOfFile: out + "/\(name).target", encoding: .utf8)
            let wants = target.components(separatedBy: "\n").first { $0.hasPrefix("Wants=") }?.dropFirst(6).split(separator: " ") ?? []
            #expect(wants.count >= 2, "\(name).target wants its units: \(target)")
            units += wants.filter { $0.contains("@") }.map { out + "/" + $0 }
            let v = try await h.run(["verify", "--man=no"] + units, root: false, executable: systemdAnalyze!)
            // verify exits 0 on an unknown key but says so: a clean unit is silent.
            #expect(v.ok && v.stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty && v.stdout.isEmpty,
                    "systemd-analyze verify of \(name)'s units: \(v)")
        }
    }

    /// Each exported instance, read back the way systemd reads it (%i, ${VAR} from its Environment=, the
    /// drop-in over the template), runs exactly what the governor runs for that replica.
    @Test func systemdInstancesRunWhatTheGovernorRunsForEachReplica() async throws {
        let h = CLIHarness()
        defer { _ = h.cleanup() }
        let custom = try h.writeDeployment("custom", """
            deployment: custom
            environment: {GLOBAL: "50% off, $HOME stays"}
            defaults:
              working_dir: "../w/${NAME}"
            server:
              command: ["${SZMOCK}", "server", "--bind", "${ENDPOINT}"]
              endpoint: "tcp://127.0.0.1:4300"
              restart: {policy: never}
              working_dir: "../w"
            handlers:
              - id: worker
                replicas: 2
                port_base: 4310
                endpoint: "tcp://127.0.0.1:${PORT}"
                command: ["sh", "-c", "exec \\"$0\\" handler --id \\"$1\\" --bind \\"$2\\"", "${SZMOCK}", "${NAME}", "${ENDPOINT}"]
                environment: {LISTEN_PORT: "${PORT}", ROLE: "w-${INDEX}", REPLICA: "${INDEX}", QUOTED: "say \\"hi\\" \\\\ there"}
                liveness: {ping: "${ENDPOINT}", period: 2s, timeout: 1s, failures: 3}
                stop_timeout: 250ms
                restart: {policy: always, max_restarts: 2, window: 10s, backoff: {initial: 1s, multiplier: 1, max: 1s, jitter: 0, immediate: 0}}
              - id: solo
                command: ["${SZMOCK}", "handler", "--id", "${NAME}", "--bind", "ipc://${RUN_DIR}/${NAME}.sock"]
            """)
        for name in ["w/worker-1", "w/worker-2", "w/solo"] { try FileManager.default.createDirectory(atPath: h.dir.file("\(name)"), withIntermediateDirectories: true) }
        // schedulezero.yaml reads ${env:...}: exported in the other tests, not loaded here (no setenv in a
        // test process whose tests run in parallel).
        for file in (try Self.fixtureFiles()).filter({ !$0.hasSuffix("/schedulezero.yaml") }) + [custom] {
            let out = h.dir.file("read-\((file as NSString).lastPathComponent)")
            let r = try await h.run(["export", "systemd", out, file], environment: Self.schedulezeroEnvironment)
            #expect(r.ok, "export \(file): \(r)")
            let deployment = try Self.loaded(file, root: h.root)
            for config in deployment.processes {
                let unit: String
                let index = config.replicaIndex ?? 1
                if config.role == .server {
                    unit = "\(deployment.name)-server.service"
                } else {
                    unit = "\(deployment.name)-\(config.specID ?? config.id)@.service"
                }
                let template = try String(contentsOfFile: out + "/" + unit, encoding: .utf8)
                let dropInPath = out + "/" + unit.replacingOccurrences(of: "@.", with: "@\(index).") + ".d/instance.conf"
                let dropIn = (try? String(contentsOfFile: dropInPath, encoding: .utf8)) ?? ""
                let read = SystemdReading(template: template, dropIn: dropIn, instance: "\(index)")
                let exe = try deployment.resolvedExecutable(for: config, parent: ProcessInfo.processInfo.environment)
                #expect(read.execStart == [exe] + config.arguments, "\(unit) instance \(index) (\(config.id)) ExecStart")
                var env = deployment.environment.merging(config.environment) { $1 }
                env["SZGOVERNOR_DEPLOYMENT"] = deployment.name
                env["SZGOVERNOR_NAME"] = config.id
                #expect(read.environment.filter { !$0.key.hasPrefix("SZGOVERNOR_ARG") && !$0.key.hasSuffix("_PORT") || !$0.key.hasPrefix("SZGOVERNOR_") } == env,
                        "\(unit) instance \(index) (\(config.id)) Environment=")
                #expect(read.values["WorkingDirectory"] == config.workingDirectory, "\(unit) \(config.id) WorkingDirectory=")
                #expect(read.values["TimeoutStopSec"].flatMap(parseSpan) == config.stopTimeout, "\(unit) TimeoutStopSec=")
                #expect(read.values["RestartSec"].flatMap(parseSpan) == config.restart.backoff.initial, "\(unit) RestartSec=")
                #expect(read.values["StartLimitBurst"] == "\(config.restart.maxRestarts + 1)", "\(unit) StartLimitBurst=")
                #expect(read.values["StartLimitIntervalSec"].flatMap(parseSpan) == config.restart.window, "\(unit) StartLimitIntervalSec=")
                let restart = ["always": RestartMode.always, "on-failure": .onFailure, "no": .never][read.values["Restart"] ?? ""]
                #expect(restart == config.restart.mode, "\(unit) Restart=")
                #expect(read.values["KillMode"] == "control-group" && read.values["KillSignal"] == "SIGTERM", "\(unit) stop")
                if config.role == .handler, deployment.server != nil {
                    #expect(read.values["After"] == "\(deployment.name)-server.service" && read.values["Wants"] == read.values["After"], "\(unit) ordering")
                }
            }
        }
        // The custom file's mapping, key by key where the fixtures do not reach.
        let out = h.dir.file("read-custom.yaml")
        let worker = try String(contentsOfFile: out + "/custom-worker@.service", encoding: .utf8)
        #expect(worker.contains("WorkingDirectory=\(h.dir.path)/w/worker-%i\n"), "\(worker)")
        #expect(worker.contains("Environment=\"REPLICA=%i\"\n"), "INDEX as %i in Environment=: \(worker)")
        #expect(worker.contains("Environment=\"GLOBAL=50%% off, $HOME stays\"\n"), "% doubled, $ kept: \(worker)")
        #expect(worker.contains("\"exec \\\"$$0\\\" handler --id \\\"$$1\\\" --bind \\\"$$2\\\"\""), "quotes escaped, $ doubled: \(worker)")
        #expect(worker.contains("tcp://127.0.0.1:${SZGOVERNOR_PORT}") && worker.contains("RestartSec=1s\n") && worker.contains("TimeoutStopSec=250ms\n"), "\(worker)")
        #expect(worker.contains("# liveness ping") && !worker.contains("# restart backoff"), "a constant backoff maps exactly: \(worker)")
        let dropIn2 = try String(contentsOfFile: out + "/custom-worker@2.service.d/instance.conf", encoding: .utf8)
        // ${INDEX} inside a longer value stays per instance (a lone digit also occurs in 127.0.0.1).
        #expect(dropIn2.contains("Environment=\"LISTEN_PORT=4311\"") && dropIn2.contains("Environment=\"SZGOVERNOR_PORT=4311\"")
                && dropIn2.contains("Environment=\"ROLE=w-2\""), "\(dropIn2)")
        let solo = try String(contentsOfFile: out + "/custom-solo@.service", encoding: .utf8)
        #expect(solo.contains("--id solo ") && !FileManager.default.fileExists(atPath: out + "/custom-solo@1.service.d"), "\(solo)")
        let server = try String(contentsOfFile: out + "/custom-server.service", encoding: .utf8)
        #expect(server.contains("Restart=no\n") && !server.contains("After="), "\(server)")
        let target = try String(contentsOfFile: out + "/custom.target", encoding: .utf8)
        #expect(target.contains("Wants=custom-server.service custom-worker@1.service custom-worker@2.service custom-solo@1.service\n"), "\(target)")
    }

    @Test func systemdListsWhatHasNoEquivalentInTheUnitsAndOnStderr() async throws {
        let h = CLIHarness()
        defer { _ = h.cleanup() }
        let out = h.dir.file("foreign")
        let r = try await h.run(["export", "systemd", out, CLIHarness.fixture("foreign")])
        #expect(r.ok, "\(r)")
        let handler = try String(contentsOfFile: out + "/foreign-h@.service", encoding: .utf8)
        let server = try String(contentsOfFile: out + "/foreign-server.service", encoding: .utf8)
        for (unit, text, kinds) in [("foreign-h@.service", handler, ["interpose", "readiness ping", "liveness ping", "restart backoff"]),
                                    ("foreign-server.service", server, ["interpose", "readiness http", "liveness GET", "restart backoff"])] {
            for kind in kinds {
                #expect(text.contains("\n# \(kind)"), "\(unit) comments \(kind)")
                #expect(r.stderr.contains("szgovernor: export systemd: \(unit): \(kind)"), "stderr lists \(unit)'s \(kind): \(r.stderr)")
            }
        }
        // Interposers left out: each process binds its public endpoint, as the deployment's clients expect.
        let drop = try String(contentsOfFile: out + "/foreign-h@2.service.d/instance.conf", encoding: .utf8)
        #expect(drop.contains("Environment=\"SCHEDULEZERO_HANDLER_PORT=4266\""), "\(drop)")
        #expect(server.contains("Environment=\"SCHEDULEZERO_ZMQ_PORT=4264\""), "\(server)")
        let ci = h.dir.file("ci")
        let c = try await h.run(["export", "systemd", ci, CLIHarness.fixture("ci")])
        #expect(c.ok && c.stderr.contains("ci-h@.service: readiness ready_file"), "\(c)")
        // ipc endpoints and ready files need no per-instance value: the template alone starts any replica.
        #expect(!Self.listing(ci).contains { $0.contains(".d/") }, "\(Self.listing(ci))")
    }

    @Test(.enabled(if: kubernetesValidate != nil, "kubernetes-validate is not installed: scripts/install-deps.sh makes .build/k8s-validate-venv (pip install kubernetes-validate)"))
    func kubernetesManifestsOfTheDemoAndEveryFixturePassTheObjectSchema() async throws {
        let h = CLIHarness()
        defer { _ = h.cleanup() }
        var all: [String] = []
        var objects = 0
        for file in [nil] + (try Self.fixtureFiles()) {
            let name = file.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension } ?? "demo"
            let out = h.dir.file("k8s-\(file == nil ? "builtin" : name)")
            let r = try await h.run(["export", "kubernetes", out] + (file.map { [$0] } ?? []), environment: Self.schedulezeroEnvironment)
            #expect(r.ok, "export kubernetes \(name): \(r)")
            let files = Self.listing(out)
            #expect(files == ["\(name)-h.yaml", "\(name)-server.yaml"], "\(name): \(files)")
            for f in files { #expect(Self.mode(out + "/" + f).map { $0 & 0o7777 } == 0o644, "\(f) is 0644") }
            all += files.map { out + "/" + $0 }
            objects += name == "ci" ? 2 : 4  // a Deployment per group, a Service where it listens on TCP (ci: ipc)
        }
        let v = try await h.run(["--strict"] + all, root: false, timeout: .seconds(120), executable: kubernetesValidate!)
        #expect(v.ok, "kubernetes-validate --strict: \(v)")
        let passed = v.stdout.components(separatedBy: "\n").filter { $0.contains(" passed for resource ") }
        #expect(passed.count == objects, "every object checked: \(v.stdout)")
    }

    @Test func kubernetesManifestsMapReplicasProbesAndStopTimeouts() async throws {
        let h = CLIHarness()
        defer { _ = h.cleanup() }
        let out = h.dir.file("k")
        let r = try await h.run(["export", "kubernetes", out, "--image", "example.org/sz:1"])
        #expect(r.ok, "\(r)")
        let handler = try String(contentsOfFile: out + "/demo-h.yaml", encoding: .utf8)
        for piece in ["kind: \"Deployment\"", "replicas: 3", "terminationGracePeriodSeconds: 3", "image: \"example.org/sz:1\"",
                      "- \"$(SZGOVERNOR_NAME)\"", "fieldPath: \"metadata.name\"", "- \"tcp://0.0.0.0:4245\"",
                      "- \"tcp://demo-server:4242\"", "tcpSocket:\n            port: 4245", "kind: \"Service\"", "clusterIP: \"None\"",
                      "containerPort: 4245", "resources: {}", "value: \"info\""] {
            #expect(handler.contains(piece), "demo-h.yaml has \(piece)")
        }
        #expect(r.stderr.contains("demo-server.yaml: restart on-failure"), "\(r.stderr)")
        let f = h.dir.file("kf")
        let fr = try await h.run(["export", "kubernetes", f, CLIHarness.fixture("foreign")])
        #expect(fr.ok, "\(fr)")
        let server = try String(contentsOfFile: f + "/foreign-server.yaml", encoding: .utf8)
        #expect(server.contains("httpGet:\n            path: \"/api/health\"\n            port: 4263"), "\(server)")
        #expect(server.contains("failureThreshold: 10"), "the readiness deadline as the startup probe's: \(server)")
        let fh = try String(contentsOfFile: f + "/foreign-h.yaml", encoding: .utf8)
        #expect(fh.contains("livenessProbe:\n          exec:\n            command:\n            - \"\(builtExecutable("szmock"))\"\n            - \"call\""), "\(fh)")
        #expect(fr.stderr.contains("foreign-h.yaml: interpose: no Kubernetes equivalent"), "\(fr.stderr)")
        let c = h.dir.file("kc")
        let cr = try await h.run(["export", "kubernetes", c, CLIHarness.fixture("ci")])
        #expect(cr.ok && cr.stderr.contains("ci-h.yaml: endpoint ipc://"), "\(cr)")
        let ch = try String(contentsOfFile: c + "/ci-h.yaml", encoding: .utf8)
        #expect(ch.contains("- \"exec 'test' '-e' '\(h.root)/ci/run/'\\\"$SZGOVERNOR_NAME\\\"'.ready'\""), "ready file per pod: \(ch)")
    }

    @Test func badInputFailsNamingTheProblemAndWritesNothing() async throws {
        let h = CLIHarness()
        defer { _ = h.cleanup() }
        let out = h.dir.file("none")
        let unknown = try await h.run(["export", "systemd", out, "--deployment", "nosuch"])
        #expect(unknown.status == .exited(1) && unknown.stderr.contains("no deployment file for \"nosuch\""), "\(unknown)")
        let badFile = try await h.run(["export", "kubernetes", out, CLIHarness.bad("unknown-variable.yaml")])
        #expect(badFile.status == .exited(1) && badFile.stderr.contains("unknown-variable.yaml:4:"), "\(badFile)")
        let mismatch = try await h.run(["export", "systemd", out, CLIHarness.fixture("ci"), "--deployment", "demo"])
        #expect(mismatch.status == .exited(1) && mismatch.stderr.contains("is deployment \"ci\", not \"demo\""), "\(mismatch)")
        #expect(!FileManager.default.fileExists(atPath: out), "nothing made for a refused export")

        let target = h.dir.file("elsewhere")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        let link = h.dir.file("link")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let linked = try await h.run(["export", "systemd", link])
        #expect(linked.status == .exited(1) && linked.stderr.contains("refusing export directory \(link): it is a symbolic link"), "\(linked)")
        let plain = try h.dir.write("x", to: "plain").path
        let file = try await h.run(["export", "kubernetes", plain])
        #expect(file.status == .exited(1) && file.stderr.contains("\(plain) exists and is not a directory"), "\(file)")
        let readOnly = try await h.run(["export", "systemd", "/proc/sys"])
        #expect(readOnly.status == .exited(1) && readOnly.stderr.contains("export directory /proc/sys is not writable"), "\(readOnly)")
        // A link planted at a unit's name inside DIR is refused before any file is written.
        let dir = h.dir.file("planted")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: dir + "/demo.target", withDestinationPath: target + "/stolen")
        let planted = try await h.run(["export", "systemd", dir])
        #expect(planted.status == .exited(1) && planted.stderr.contains("refusing \(dir)/demo.target: it is a symbolic link"), "\(planted)")
        #expect(Self.listing(target).isEmpty && Self.listing(dir).isEmpty, "nothing written: \(Self.listing(dir)), \(Self.listing(target))")

        // Modes whatever the umask.
        let masked = h.dir.file("masked")
        let m = try await h.run(["-c", "umask 077; exec \"$0\" \"$@\"", h.szgovernor, "export", "systemd", masked, "--root", h.root],
                                root: false, executable: "/bin/sh")
        #expect(m.ok, "\(m)")
        #expect(Self.mode(masked).map { $0 & 0o7777 } == 0o755 && Self.mode(masked + "/demo-h@1.service.d").map { $0 & 0o7777 } == 0o755)
        #expect(Self.listing(masked).allSatisfy { Self.mode(masked + "/" + $0).map { $0 & 0o7777 } == 0o644 }, "\(Self.listing(masked))")
    }
}

/// A unit file read as systemd reads the keys these tests check: the drop-in after the template (an empty
/// `ExecStart=` resets it), `%i` and `%%`, and `${VAR}` / `$$` in ExecStart= from the unit's Environment=.
struct SystemdReading {
    var values: [String: String] = [:]
    var environment: [String: String] = [:]
    var execStart: [String] = []

    init(template: String, dropIn: String, instance: String) {
        var exec: String?
        for line in (template + "\n" + dropIn).components(separatedBy: "\n") where !line.hasPrefix("#") && line.contains("=") {
            let key = String(line[..<line.firstIndex(of: "=")!])
            let value = String(line[line.index(after: line.firstIndex(of: "=")!)...])
            switch key {
            case "Environment":
                for word in Self.words(value, instance: instance, environment: [:]) {
                    let kv = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    environment[String(kv[0])] = kv.count > 1 ? String(kv[1]) : ""
                }
            case "ExecStart": exec = value.isEmpty ? nil : value
            default: values[key] = Self.words(value, instance: instance, environment: [:], split: false).first ?? ""
            }
        }
        execStart = exec.map { Self.words($0, instance: instance, environment: environment) } ?? []
    }

    static func words(_ text: String, instance: String, environment: [String: String], split: Bool = true) -> [String] {
        var out: [String] = []
        var word = ""
        var inWord = false
        var quoted = false
        var chars = Array(text)[...]
        while let c = chars.popFirst() {
            switch c {
            case "\"": quoted.toggle(); inWord = true
            case "\\":
                let n = chars.popFirst() ?? "\\"
                word.append(n == "n" ? "\n" : n == "t" ? "\t" : n)
            case "%":
                let n = chars.popFirst()
                word += n == "i" ? instance : n == "%" ? "%" : "%\(n.map(String.init) ?? "")"
                inWord = true
            case "$" where chars.first == "$": chars.removeFirst(); word.append("$"); inWord = true
            case "$" where chars.first == "{":
                let name = String(chars.dropFirst().prefix { $0 != "}" })
                chars = chars.dropFirst(name.count + 2)
                word += environment[name] ?? ""
                inWord = true
            case " " where split && !quoted, "\t" where split && !quoted:
                if inWord { out.append(word) }
                word = ""; inWord = false
            default: word.append(c); inWord = true
            }
        }
        if inWord { out.append(word) }
        return out
    }
}

/// `250ms`, `5s`: the time spans export writes.
private func parseSpan(_ text: String) -> Duration? {
    if text.hasSuffix("ms"), let n = Int(text.dropLast(2)) { return .milliseconds(n) }
    if text.hasSuffix("s"), let n = Int(text.dropLast()) { return .seconds(n) }
    return nil
}
