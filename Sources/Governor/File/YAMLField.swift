// The one reader of YAML nodes, for deployment files and experiment files alike: a node with its field
// path and file, so every validation error says file, line, column and field, worded the same way in both.
import Foundation
import ScheduleZeroWire
import Yams

public struct YAMLField {
    public let node: Node
    /// The field path, e.g. `handlers[0].restart.backoff` (empty for the document).
    public let path: String
    public let file: String

    public init(node: Node, path: String, file: String) {
        self.node = node
        self.path = path
        self.file = file
    }

    /// 1-based; 0 when the node has no position (`LocatedFileError` then prints no line).
    public var line: Int { node.mark?.line ?? 0 }
    public var column: Int { node.mark?.column ?? 0 }

    public func error(_ message: String) -> LocatedFileError {
        LocatedFileError(file: file, line: line, column: column, field: path, message: message)
    }

    public func child(_ key: String, _ node: Node) -> YAMLField {
        YAMLField(node: node, path: childPath(key), file: file)
    }

    func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The mapping's entries in file order, rejecting keys outside `allowed` (typos are errors, never
    /// ignored); `allowed` nil: any plain-text key (names chosen by the file, like `environment`'s).
    public func mapping(allowed: [String]? = nil) throws(LocatedFileError) -> YAMLMapping {
        guard case .mapping(let mapping) = node else { throw error("must be a mapping (key: value), got \(kind)") }
        var entries: [(key: String, value: YAMLField)] = []
        var index: [String: Int] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                throw YAMLField(node: keyNode, path: path, file: file).error("keys must be plain text")
            }
            if let allowed, !allowed.contains(key) {
                throw child(key, keyNode).error("unknown field (allowed: \(allowed.joined(separator: ", ")))")
            }
            guard index[key] == nil else { throw child(key, keyNode).error("appears twice") }
            index[key] = entries.count
            entries.append((key, child(key, value)))
        }
        return YAMLMapping(field: self, entries: entries, index: index)
    }

    /// A mapping of any plain-text keys to text values (`environment`, `settings`).
    public func stringMap() throws(LocatedFileError) -> YAMLMapping {
        let map = try mapping()
        for (_, value) in map {
            guard case .scalar = value.node else { throw value.error("must be text, got \(value.kind)") }
        }
        return map
    }

    public func sequence() throws(LocatedFileError) -> [YAMLField] {
        guard case .sequence(let seq) = node else { throw error("must be a list, got \(kind)") }
        return seq.enumerated().map { YAMLField(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    /// A list of texts; a single text is a list of one (`targets: h-1` or `targets: [h-1, h-2]`).
    public func stringList() throws(LocatedFileError) -> [String] {
        if case .scalar = node { return [try string()] }
        var out: [String] = []
        for item in try sequence() { out.append(try item.string()) }
        return out
    }

    public func string() throws(LocatedFileError) -> String {
        guard case .scalar(let s) = node else { throw error("must be text, got \(kind)") }
        return s.string
    }

    public func int(min: Int) throws(LocatedFileError) -> Int {
        let text = try string()
        guard let value = Int(text), value >= min else { throw error("must be an integer >= \(min) (got \"\(text)\")") }
        return value
    }

    /// Any unsigned 64-bit integer (seeds).
    public func uint64() throws(LocatedFileError) -> UInt64 {
        let text = try string()
        guard let value = UInt64(text) else { throw error("must be an integer in 0...\(UInt64.max) (got \"\(text)\")") }
        return value
    }

    /// A number in `range` (a probability is `double(in: 0...1)`); NaN and infinities are never in it.
    public func double(in range: ClosedRange<Double>) throws(LocatedFileError) -> Double {
        let text = try string()
        guard let value = Double(text), range.contains(value) else {
            throw error("must be a number in \(range.lowerBound)...\(range.upperBound) (got \"\(text)\")")
        }
        return value
    }

    /// `true`/`false` (also `yes`/`no`, `on`/`off`, in any case).
    public func bool() throws(LocatedFileError) -> Bool {
        let text = try string()
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("must be true or false (got \"\(text)\")")
        }
    }

    /// `250ms`, `1.5s`, `2m`, `1h` (a bare number is refused); at most `DurationText.maximumSeconds`.
    /// `positive`: zero is refused too (timeouts, intervals, windows).
    public func duration(positive: Bool = false) throws(LocatedFileError) -> Duration {
        let text = try string().trimmingCharacters(in: .whitespaces)
        switch DurationText.parse(text) {
        case .failure(let problem):
            throw error(DurationText.message(problem, text))
        case .success(let d):
            if positive && d <= .zero { throw error("must be longer than 0 (got \"\(text)\")") }
            return d
        }
    }

    /// Any YAML value as JSON (plain scalars typed by their look: numbers, booleans, null, else text;
    /// quoted scalars are text).
    public func json() throws(LocatedFileError) -> JSONValue {
        switch node {
        case .scalar(let s):
            if s.style != .plain { return .string(s.string) }
            let t = s.string
            if let i = Int64(t) { return .int(i) }
            if let d = Double(t), d.isFinite { return .double(d) }
            switch t.lowercased() {
            case "true", "yes": return .bool(true)
            case "false", "no": return .bool(false)
            case "null", "~", "": return .null
            default: return .string(t)
            }
        case .sequence:
            var out: [JSONValue] = []
            for item in try sequence() { out.append(try item.json()) }
            return .array(out)
        case .mapping(let m):
            var object: [String: JSONValue] = [:]
            for (k, v) in m {
                guard let key = k.scalar?.string else { throw error("keys must be plain text") }
                object[key] = try child(key, v).json()
            }
            return .object(object)
        case .alias:
            throw error("aliases are not supported here")
        }
    }

    /// What the node is, for messages: `text`, `a mapping`, `a list`, `an alias`.
    public var kind: String {
        switch node {
        case .scalar: return "text"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}

/// A mapping read by `YAMLField.mapping(allowed:)`: its entries in file order, looked up by key.
public struct YAMLMapping: Sequence {
    /// The mapping itself (where a missing key is reported).
    public let field: YAMLField
    public let entries: [(key: String, value: YAMLField)]
    /// Where each key is in `entries`.
    let index: [String: Int]

    public var keys: [String] { entries.map(\.key) }

    /// The value of `key`, nil when the file leaves it out.
    public subscript(key: String) -> YAMLField? { index[key].map { entries[$0].value } }

    /// The value of `key`; its absence is an error at the mapping, naming the field.
    public func required(_ key: String) throws(LocatedFileError) -> YAMLField {
        guard let value = self[key] else {
            throw LocatedFileError(file: field.file, line: field.line, column: field.column,
                                   field: field.childPath(key), message: "missing (required)")
        }
        return value
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: YAMLField)]> { entries.makeIterator() }
}
