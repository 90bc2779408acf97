// The deployment-file keys for real services (docs/GOVERNOR.md, "Real services"): `working_dir`,
// `readiness: {http: URL}` and `liveness`, each parsed here so DeploymentFile.swift only calls in.
import Foundation
import Yams
import ScheduleZeroWire

extension DeploymentFile {
    static let realServiceKeys = ["working_dir", "liveness"]
    static let httpReadinessKeys = ["http", "timeout", "interval", "within"]
    static let livenessKeys = ["ping", "http", "period", "timeout", "failures"]

    /// `working_dir` and `liveness` of one process (its own, else those under `defaults`).
    static func applyRealServiceKeys(_ f: YAMLMapping, defaults: ProcessDefaults, vars: [String: String],
                                     to config: inout HandlerConfig) throws(DeploymentFileError) {
        if let w = f["working_dir"] ?? defaults.workingDir {
            config.workingDirectory = try workingDirectory(w, vars, base: defaults.baseDirectory)
        }
        if let l = f["liveness"] ?? defaults.liveness {
            // `${ENDPOINT}` is where the process itself answers (the private endpoint when interposed).
            let own = vars["ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? config.endpoint
            config.liveness = try livenessSpec(l, vars, endpoint: own)
        }
    }

    /// Variables expanded; relative to the deployment file's folder (the current directory when parsed
    /// from text); must exist and be a directory now.
    static func workingDirectory(_ field: YAMLField, _ vars: [String: String], base: String?) throws(DeploymentFileError) -> String {
        let text = try substitute(try field.string(), vars, field)
        guard !text.isEmpty else { throw field.error("must name a directory (got an empty string)") }
        var path = text
        if !path.hasPrefix("/") {
            let root = base.flatMap { $0.isEmpty ? nil : $0 } ?? FileManager.default.currentDirectoryPath
            path = ((root.hasPrefix("/") ? root : FileManager.default.currentDirectoryPath + "/" + root) as NSString)
                .appendingPathComponent(path)
        }
        path = (path as NSString).standardizingPath
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw field.error("directory \(path) does not exist")
        }
        guard isDirectory.boolValue else { throw field.error("\(path) is not a directory") }
        guard access(path, X_OK) == 0 else { throw field.error("directory \(path) cannot be entered (no search permission)") }
        return path
    }

    /// `readiness: {http: URL, timeout: 10s, interval: 100ms, within: 1s}`.
    static func httpReadinessSpec(_ http: YAMLField, _ all: YAMLMapping, _ vars: [String: String],
                                  timeout: Duration) throws(DeploymentFileError) -> ReadinessSpec {
        for (k, v) in all where !httpReadinessKeys.contains(k) {
            throw v.error("unknown field (allowed with http: \(httpReadinessKeys.joined(separator: ", ")))")
        }
        let url = try httpURL(http, vars)
        var settings = ["http": url.description]
        for key in ["interval", "within"] {
            guard let v = all[key] else { continue }
            guard let d = DurationText.value(try v.string()), d > .zero else {
                throw v.error("must be a duration > 0 like 100ms (got \"\(try v.string())\")")
            }
            settings[key] = "\(Int(d.msDouble.rounded()))ms"
        }
        return .custom(kind: HTTPReadinessProbe.kind, settings: settings, timeout: timeout)
    }

    static func httpURL(_ field: YAMLField, _ vars: [String: String]) throws(DeploymentFileError) -> HTTPURL {
        let text = try substitute(try field.string(), vars, field)
        do { return try HTTPURL(parsing: text) } catch { throw field.error(error.description) }
    }

    /// `liveness: ping | none | {ping: ENDPOINT | http: URL, period: 2s, timeout: 1s, failures: 3}`;
    /// nil for `none`.
    static func livenessSpec(_ field: YAMLField, _ vars: [String: String], endpoint: String?) throws(DeploymentFileError) -> LivenessSpec? {
        let noEndpoint = "needs an endpoint to ping: give the process an `endpoint` or write {ping: ENDPOINT}"
        if case .scalar(let s) = field.node {
            switch s.string {
            case "none": return nil
            case "ping":
                guard endpoint?.isEmpty == false else { throw field.error(noEndpoint) }
                return LivenessSpec(check: .ping(endpoint: nil))
            default:
                throw field.error("must be none, ping, {ping: ENDPOINT, period: 2s, timeout: 1s, failures: 3} or {http: URL, ...} (got \"\(s.string)\")")
            }
        }
        guard case .mapping = field.node else { throw field.error("must be ping, none or a mapping, got \(field.kind)") }
        let all = try field.mapping(allowed: livenessKeys)
        var spec: LivenessSpec
        switch (all["ping"], all["http"]) {
        case (let p?, nil):
            let address = try substitute(try p.string(), vars, p)
            if address.isEmpty { guard endpoint?.isEmpty == false else { throw p.error(noEndpoint) } }
            spec = LivenessSpec(check: .ping(endpoint: address.isEmpty ? nil : address))
        case (nil, let h?):
            spec = LivenessSpec(check: .http(try httpURL(h, vars)))
        case (_?, let h?):
            throw h.error("give either ping or http, not both")
        case (nil, nil):
            throw field.error("needs ping: ENDPOINT or http: URL")
        }
        if let p = all["period"] {
            spec.period = try p.duration()
            guard spec.period > .zero else { throw p.error("must be a duration > 0") }
        }
        if let t = all["timeout"] {
            spec.timeout = try t.duration()
            guard spec.timeout > .zero else { throw t.error("must be a duration > 0") }
        }
        if let n = all["failures"] { spec.failures = try n.int(min: 1) }
        return spec
    }
}
