// Where a deployment's files are, and the variables that name "this build's" executables. Shared by
// `szgovernor`, the tests and the chaos tool, so all of them find the same deployment the same way.
//
//   deployments root:  --root DIR, else $SZ_DEPLOYMENTS_ROOT, else found the way git finds a repository:
//                      the nearest folder at or above the current one that holds `deployments/` or
//                      `Fixtures/deployments/` (a project), its `deployments/`; else ./deployments
//   deployment file:   --file PATH, else Fixtures/deployments/<name>.yaml in the current directory, in
//                      the project found upwards, else relative to the package root of the running
//                      executable (.build/<triple>/debug/szgovernor -> the folder holding Package.swift)
//   ${SZMOCK}:         $SZMOCK when set, else `szmock` next to the running executable (this build)
//   ${BIN_DIR}:        the running executable's folder
//   ${PACKAGE_DIR}:    the package root of the running executable (the nearest folder at or above
//                      ${BIN_DIR} holding Package.swift); not defined for an executable outside a package
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public enum LocatorError: Error, Equatable, CustomStringConvertible {
    case fileNotFound(deployment: String, searched: [String])

    public var description: String {
        switch self {
        case .fileNotFound(let d, let searched):
            return "no deployment file for \"\(d)\" (looked for \(searched.joined(separator: ", "))); pass --file PATH"
        }
    }
}

public struct DeploymentLocator: Sendable {
    public var deploymentName: String
    /// The deployments root (holding `<name>/`), absolute.
    public var root: String
    /// The deployment file, absolute.
    public var file: String
    /// Where the root came from (`--root`, `$SZ_DEPLOYMENTS_ROOT`, found upwards from a folder, or the
    /// fallback), said by every "not found".
    public var rootOrigin: String

    /// Validates the name and resolves the root and the file. Throws `NameError` or `LocatorError`.
    public init(deployment: String, root: String? = nil, file: String? = nil,
                environment: [String: String] = Foundation.ProcessInfo.processInfo.environment,
                currentDirectory: String = FileManager.default.currentDirectoryPath,
                executableDirectory: String = BuildVariables.executableDirectory()) throws {
        try Names.validateDeployment(deployment)
        deploymentName = deployment
        (self.root, rootOrigin) = Self.discoverRoot(option: root, environment: environment, currentDirectory: currentDirectory)
        if let file {
            self.file = Self.absolute(file, in: currentDirectory)
        } else {
            var candidates = Self.defaultFileCandidates(deployment: deployment, currentDirectory: currentDirectory,
                                                        executableDirectory: executableDirectory)
            if let project = Self.projectAbove(currentDirectory) {
                let p = URL(fileURLWithPath: project).appendingPathComponent("Fixtures/deployments/\(deployment).yaml").path
                if !candidates.contains(p) { candidates.insert(p, at: 1) }
            }
            guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw LocatorError.fileNotFound(deployment: deployment, searched: candidates)
            }
            self.file = found
        }
    }

    /// Only the folder (no file needed): for `down`, `status`, `logs`.
    public init(deployment: String, root: String?, environment: [String: String] = Foundation.ProcessInfo.processInfo.environment,
                currentDirectory: String = FileManager.default.currentDirectoryPath) throws {
        try Names.validateDeployment(deployment)
        deploymentName = deployment
        (self.root, rootOrigin) = Self.discoverRoot(option: root, environment: environment, currentDirectory: currentDirectory)
        file = ""
    }

    /// `<root>/<deployment>`.
    public var directory: URL { URL(fileURLWithPath: root).appendingPathComponent(deploymentName) }
    public func path(_ component: String) -> String { directory.appendingPathComponent(component).path }
    /// The governor's control endpoint: `ipc://<root>/<d>/run/governor.control`.
    public var controlEndpoint: String { "ipc://" + path("run/governor.control") }
    public var governorPidFile: String { path("pids/governor.pid") }

    /// The deployments root, absolute, and where it came from (see the top of this file).
    public static func discoverRoot(option: String?, environment: [String: String],
                                    currentDirectory: String) -> (root: String, origin: String) {
        if let option, !option.isEmpty { return (absolute(option, in: currentDirectory), "--root") }
        if let env = environment["SZ_DEPLOYMENTS_ROOT"], !env.isEmpty {
            return (absolute(env, in: currentDirectory), "$SZ_DEPLOYMENTS_ROOT")
        }
        let here = absolute(".", in: currentDirectory)
        if let project = projectAbove(here) {
            return (URL(fileURLWithPath: project).appendingPathComponent("deployments").path, "found upwards from \(here)")
        }
        return (URL(fileURLWithPath: here).appendingPathComponent("deployments").path,
                "no deployments/ or Fixtures/deployments/ at or above \(here); --root or $SZ_DEPLOYMENTS_ROOT name another")
    }

    /// The nearest folder at or above `directory` holding `deployments/` or `Fixtures/deployments/`.
    public static func projectAbove(_ directory: String) -> String? {
        var url = URL(fileURLWithPath: directory).standardized
        while true {
            for marker in ["deployments", "Fixtures/deployments"] {
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: url.appendingPathComponent(marker).path, isDirectory: &isDir),
                   isDir.boolValue { return url.path }
            }
            if url.path == "/" { return nil }
            url.deleteLastPathComponent()
        }
    }

    public static func defaultFileCandidates(deployment: String, currentDirectory: String,
                                             executableDirectory: String) -> [String] {
        let relative = "Fixtures/deployments/\(deployment).yaml"
        var out = [URL(fileURLWithPath: currentDirectory).appendingPathComponent(relative).path]
        if let package = packageRoot(from: executableDirectory) {
            let p = URL(fileURLWithPath: package).appendingPathComponent(relative).path
            if !out.contains(p) { out.append(p) }
        }
        return out
    }

    /// The nearest folder at or above `directory` that holds Package.swift.
    public static func packageRoot(from directory: String) -> String? {
        var url = URL(fileURLWithPath: directory).standardized
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
            url.deleteLastPathComponent()
        }
        return nil
    }

    static func absolute(_ path: String, in directory: String) -> String {
        path.hasPrefix("/") ? URL(fileURLWithPath: path).standardized.path
            : URL(fileURLWithPath: directory).appendingPathComponent(path).standardized.path
    }
}

public enum BuildVariables {
    /// The running executable's folder (readlink /proc/self/exe).
    public static func executableDirectory() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().path
    }

    /// `SZMOCK` (env override, else `<executableDirectory>/szmock`), `BIN_DIR` and, when the executable sits
    /// inside a package (`.build/...`), `PACKAGE_DIR`.
    public static func variables(executableDirectory: String = executableDirectory(),
                                 environment: [String: String] = Foundation.ProcessInfo.processInfo.environment) -> [String: String] {
        var vars = ["BIN_DIR": executableDirectory]
        if let package = DeploymentLocator.packageRoot(from: executableDirectory) { vars["PACKAGE_DIR"] = package }
        if let s = environment["SZMOCK"], !s.isEmpty {
            vars["SZMOCK"] = s
        } else {
            vars["SZMOCK"] = URL(fileURLWithPath: executableDirectory).appendingPathComponent("szmock").path
        }
        return vars
    }

    /// What is wrong with a `${...}` reference.
    public enum Problem: Error, Equatable {
        case unterminated
        case unknown(name: String, known: [String])
        case unsetEnvironment(name: String)

        /// The message, after which a caller may add where (`in "text"`).
        public func message(in text: String) -> String {
            switch self {
            case .unterminated: return "unterminated ${ in \"\(text)\""
            case .unknown(let name, let known): return "unknown variable ${\(name)} (known: \(known.joined(separator: ", ")))"
            case .unsetEnvironment(let name): return "${env:\(name)}: the environment variable \(name) is not set"
            }
        }
    }

    /// The one `${...}` expansion: `${NAME}` from `vars`, `${env:NAME}` from `environment` (a variable of the
    /// governor's own environment, a checkout path say). Deployment files and `szgovernor add` both use it.
    public static func substitute(_ text: String, _ vars: [String: String],
                                  environment: [String: String] = Foundation.ProcessInfo.processInfo.environment) -> Result<String, Problem> {
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { return .failure(.unterminated) }
            let name = String(rest[start.upperBound..<end])
            if name.hasPrefix("env:") {
                let envName = String(name.dropFirst(4))
                guard let value = environment[envName] else { return .failure(.unsetEnvironment(name: envName)) }
                out += value
            } else {
                guard let value = vars[name] else { return .failure(.unknown(name: name, known: vars.keys.sorted())) }
                out += value
            }
            rest = rest[rest.index(after: end)...]
        }
        return .success(out + rest)
    }

    /// `substitute` for the command line (`szgovernor add`): a problem is an invalid configuration naming the text.
    public static func expand(_ text: String, _ vars: [String: String]) throws -> String {
        switch substitute(text, vars) {
        case .success(let s): return s
        case .failure(.unterminated): throw GovernorError.invalidConfig(Problem.unterminated.message(in: text))
        case .failure(let p): throw GovernorError.invalidConfig("\(p.message(in: text)) in \"\(text)\"")
        }
    }
}
