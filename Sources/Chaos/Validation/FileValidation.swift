// `szgovernor validate FILE`: reads a deployment file or an experiment file as the tools would, and starts
// nothing. The kind is told by the top-level keys (an experiment has `faults:`, `steady_state:` or
// `checks:`), or given.
import Foundation
import Governor
import ScheduleZeroWire
import Yams

public enum ValidatedFileKind: String, Sendable, CaseIterable {
    case deployment, experiment
}

public enum FileValidation {
    /// What the file holds, said in one line; throws the located load error.
    public static func validate(_ path: String, kind: ValidatedFileKind? = nil, deploymentsRoot: String) throws -> String {
        let kind = try kind ?? detect(path)
        switch kind {
        case .deployment:
            let d = try DeploymentFile.load(path: path, variables: BuildVariables.variables(), deploymentsRoot: deploymentsRoot)
            let replicas = d.handlers.count
            return "\(path): a valid deployment file: deployment \"\(d.name)\", \(d.server == nil ? "no server" : "a server"), "
                + "\(replicas) handler process\(replicas == 1 ? "" : "es")"
                + (d.handlers.contains { $0.interposer != nil } || d.server?.interposer != nil ? ", interposed links" : "")
        case .experiment:
            let e = try Experiment.load(file: path)
            return "\(path): a valid experiment file: \"\(e.title)\", \(e.faults.count) fault\(e.faults.count == 1 ? "" : "s"), "
                + "duration \(DurationText.format(e.duration))"
                + (e.deployment.map { ", deployment \"\($0.name)\"" } ?? "")
        }
    }

    /// An experiment when its top level has `faults`, `steady_state` or `checks`; a deployment otherwise.
    public static func detect(_ path: String) throws -> ValidatedFileKind {
        let text = try YAMLSource.text(of: path, display: path)
        let keys = ((try? Yams.compose(yaml: text))??.mapping?.keys.compactMap(\.string)) ?? []
        return keys.contains(where: ["faults", "steady_state", "checks"].contains) ? .experiment : .deployment
    }
}
