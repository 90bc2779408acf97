// `szgovernor export systemd|kubernetes DIR`: the deployment file as the governor loads it, written as
// units or manifests for the engines production runs on (docs/GOVERNOR.md, docs/DISTRIBUTED.md).
import ArgumentParser
import Foundation
import Governor

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a deployment as systemd units or Kubernetes manifests (docs/DISTRIBUTED.md).",
        subcommands: [ExportSystemd.self, ExportKubernetes.self])
}

struct ExportOptions: ParsableArguments {
    @Argument(help: "The folder to write into (made 0755 when absent; never a symbolic link).") var dir: String
    @Argument(help: ArgumentHelp("The deployment file (instead of --file; the deployment's name is then the file's).", valueName: "file"))
    var fileArgument: String?
    @Option(name: [.customShort("d"), .long], help: "Deployment name (default: the file's `deployment:`, else demo).") var deployment: String?
    @Option(help: "Deployments root: where ${DEPLOYMENT_DIR} and ${RUN_DIR} point (default: $SZ_DEPLOYMENTS_ROOT, else the nearest deployments/ at or above this folder).")
    var root: String?
    @Option(help: "Deployment file (default: Fixtures/deployments/<deployment>.yaml here, in the project above, else in this build's package).")
    var file: String?

    func validate() throws {
        if fileArgument != nil && file != nil { throw ValidationError("give the deployment file once: as FILE or as --file") }
    }

    /// The deployment loaded as `up` would, without its interposers (no engine has them), and its folder.
    func load() throws -> (Deployment, DeploymentLocator) {
        let path = fileArgument ?? file
        var name = deployment ?? "demo"
        if deployment == nil, let path {
            // The file names its deployment: read it first (a bad file fails below with its located error).
            if let d = try? DeploymentFile.load(path: path, variables: BuildVariables.variables(), deploymentsRoot: "/nonexistent",
                                                interposers: false) {
                name = d.name
            }
        }
        let locator: DeploymentLocator
        do { locator = try DeploymentLocator(deployment: name, root: root, file: path) } catch { throw Failure(error) }
        let loaded: Deployment
        do {
            loaded = try DeploymentFile.load(path: locator.file, variables: BuildVariables.variables(), deploymentsRoot: locator.root,
                                             interposers: false)
        } catch { throw Failure(error) }
        guard loaded.name == locator.deploymentName else {
            throw Failure("\((locator.file as NSString).lastPathComponent) is deployment \"\(loaded.name)\", not \"\(locator.deploymentName)\"")
        }
        return (loaded, locator)
    }

    /// Writes the export, then says what was written (stdout) and what the engine has no equivalent for (stderr).
    func write(_ export: EngineExport, engine: String) throws {
        let written: [String]
        do { written = try ExportWriter.write(export, to: dir) } catch { throw Failure(error) }
        for note in export.notes { printErr("szgovernor: export \(engine): \(note)") }
        for path in written { print(path) }
        print("szgovernor: wrote \(written.count) file(s) for \(engine)" + (export.notes.isEmpty ? "" : "; \(export.notes.count) thing(s) not mapped (stderr, and comments in the files)"))
    }
}

struct ExportSystemd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "systemd",
        abstract: "Write systemd units: <d>-server.service, a template <d>-<spec>@.service per handler spec, <d>.target.")
    @OptionGroup var options: ExportOptions

    func run() throws {
        let (deployment, locator) = try options.load()
        let export: EngineExport
        do {
            export = try SystemdExport.export(deployment, deploymentDirectory: locator.directory.path,
                                              parentEnvironment: Foundation.ProcessInfo.processInfo.environment)
        } catch { throw Failure(error) }
        try options.write(export, engine: "systemd")
    }
}

struct ExportKubernetes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kubernetes",
        abstract: "Write Kubernetes manifests: a Deployment (and a Service where it listens on TCP) per process group.")
    @OptionGroup var options: ExportOptions
    @Option(help: "The container image every Deployment runs (it must hold the executables at the paths written).")
    var image = KubernetesExport.defaultImage

    func run() throws {
        let (deployment, _) = try options.load()
        let export: EngineExport
        do {
            export = try KubernetesExport.export(deployment, image: image, variables: BuildVariables.variables(),
                                                 parentEnvironment: Foundation.ProcessInfo.processInfo.environment)
        } catch { throw Failure(error) }
        try options.write(export, engine: "kubernetes")
    }
}
