// A YAML node with its field path and file, so every validation error can say file, line and field.
import ScheduleZeroWire
import Yams

struct YAMLField {
    let node: Node
    let path: String
    let file: String

    var line: Int { node.mark?.line ?? 0 }
    var column: Int { node.mark?.column ?? 0 }

    func error(_ message: String) -> DeploymentFileError {
        DeploymentFileError(file: file, line: line, column: column, field: path, message: message)
    }

    func child(_ key: String, _ node: Node) -> YAMLField {
        YAMLField(node: node, path: path.isEmpty ? key : "\(path).\(key)", file: file)
    }

    /// The mapping's entries, rejecting keys outside `allowed`.
    func mapping(allowed: [String]) throws(DeploymentFileError) -> [String: YAMLField] {
        guard case .mapping(let mapping) = node else { throw error("must be a mapping (key: value), got \(kind)") }
        var result: [String: YAMLField] = [:]
        for (keyNode, value) in mapping {
            let keyField = YAMLField(node: keyNode, path: path, file: file)
            guard let key = keyNode.scalar?.string else { throw keyField.error("keys must be plain text") }
            guard allowed.contains(key) else {
                throw child(key, keyNode).error("unknown field (allowed: \(allowed.joined(separator: ", ")))")
            }
            guard result[key] == nil else { throw child(key, keyNode).error("appears twice") }
            result[key] = child(key, value)
        }
        return result
    }

    func sequence() throws(DeploymentFileError) -> [YAMLField] {
        guard case .sequence(let seq) = node else { throw error("must be a list, got \(kind)") }
        return seq.enumerated().map { YAMLField(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    func string() throws(DeploymentFileError) -> String {
        guard case .scalar(let s) = node else { throw error("must be text, got \(kind)") }
        return s.string
    }

    func int(min: Int) throws(DeploymentFileError) -> Int {
        let text = try string()
        guard let value = Int(text), value >= min else { throw error("must be an integer >= \(min) (got \"\(text)\")") }
        return value
    }

    func double(in range: ClosedRange<Double>) throws(DeploymentFileError) -> Double {
        let text = try string()
        guard let value = Double(text), range.contains(value) else {
            throw error("must be a number in \(range.lowerBound)...\(range.upperBound) (got \"\(text)\")")
        }
        return value
    }

    /// `250ms`, `1.5s`, `2m`, `1h` (a bare number is refused); at most `DurationText.maximumSeconds`.
    /// `positive`: zero is refused too (timeouts, intervals, windows).
    func duration(positive: Bool = false) throws(DeploymentFileError) -> Duration {
        let text = try string().trimmingCharacters(in: .whitespaces)
        switch DurationText.parse(text) {
        case .failure(let problem):
            throw error(DurationText.message(problem, text))
        case .success(let d):
            if positive && d <= .zero { throw error("must be longer than 0 (got \"\(text)\")") }
            return d
        }
    }

    func stringMap() throws(DeploymentFileError) -> [String: YAMLField] {
        guard case .mapping(let mapping) = node else { throw error("must be a mapping (key: value), got \(kind)") }
        var result: [String: YAMLField] = [:]
        for (k, v) in mapping {
            guard let key = k.scalar?.string else { throw YAMLField(node: k, path: path, file: file).error("keys must be plain text") }
            let f = child(key, v)
            guard case .scalar = v else { throw f.error("must be text, got \(f.kind)") }
            result[key] = f
        }
        return result
    }

    var kind: String {
        switch node {
        case .scalar: return "text"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}
