import Governor
import ScheduleZeroWire
import Yams

/// Why an experiment file is refused: the file, the line and column, the field (a path like
/// `faults[1].schedule.interval`) and what is wrong with it. The same type as the governor's deployment
/// file errors, so both read alike.
public typealias ExperimentError = LocatedFileError

/// A position in a YAML document with the path that led there, for typed reads that fail naming both.
struct YAMLCursor {
    let node: Node
    let path: String
    let file: String

    var line: Int { node.mark?.line ?? 1 }
    var column: Int { node.mark?.column ?? 1 }

    func fail(_ message: String) -> ExperimentError {
        ExperimentError(file: file, line: line, column: column, field: path, message: message)
    }

    private var shown: String {
        if case .scalar(let s) = node { return "\"\(s.string)\"" }
        if case .mapping = node { return "a mapping" }
        if case .sequence = node { return "a list" }
        return "an alias"
    }

    /// Reads a mapping, refusing keys outside `allowed` (typos are errors, not silently ignored).
    func mapping(allowed: [String]) throws(ExperimentError) -> YAMLMap {
        guard case .mapping(let m) = node else { throw fail("expected a mapping with keys \(allowed.joined(separator: ", ")), got \(shown)") }
        var entries: [(key: String, keyNode: Node, value: Node)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                throw YAMLCursor(node: k, path: path, file: file).fail("keys must be plain names")
            }
            let key = ks.string
            let child = path.isEmpty ? key : "\(path).\(key)"
            guard allowed.contains(key) else {
                throw YAMLCursor(node: k, path: child, file: file)
                    .fail("unknown field (known here: \(allowed.joined(separator: ", ")))")
            }
            if entries.contains(where: { $0.key == key }) {
                throw YAMLCursor(node: k, path: child, file: file).fail("given twice")
            }
            entries.append((key, k, v))
        }
        return YAMLMap(cursor: self, entries: entries)
    }

    func list() throws(ExperimentError) -> [YAMLCursor] {
        guard case .sequence(let s) = node else { throw fail("expected a list, got \(shown)") }
        return s.enumerated().map { YAMLCursor(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    /// A list of strings; a single string is a list of one.
    func stringList() throws(ExperimentError) -> [String] {
        if case .scalar = node { return [try string()] }
        var out: [String] = []
        for c in try list() { out.append(try c.string()) }
        return out
    }

    func string() throws(ExperimentError) -> String {
        guard case .scalar(let s) = node else { throw fail("expected a text value, got \(shown)") }
        return s.string
    }

    func int(min: Int? = nil) throws(ExperimentError) -> Int {
        guard case .scalar(let s) = node, let v = Int(s.string) else { throw fail("expected a whole number, got \(shown)") }
        if let min, v < min { throw fail("must be at least \(min), got \(v)") }
        return v
    }

    func uint64() throws(ExperimentError) -> UInt64 {
        guard case .scalar(let s) = node, let v = UInt64(s.string) else {
            throw fail("expected a seed (a whole number from 0 to \(UInt64.max)), got \(shown)")
        }
        return v
    }

    func double(min: Double? = nil, max: Double? = nil) throws(ExperimentError) -> Double {
        guard case .scalar(let s) = node, let v = Double(s.string), v.isFinite else { throw fail("expected a number, got \(shown)") }
        if let min, v < min { throw fail("must be at least \(min), got \(v)") }
        if let max, v > max { throw fail("must be at most \(max), got \(v)") }
        return v
    }

    func probability() throws(ExperimentError) -> Double {
        guard case .scalar(let s) = node, let v = Double(s.string), v >= 0, v <= 1 else {
            throw fail("expected a probability from 0 to 1, got \(shown)")
        }
        return v
    }

    func bool() throws(ExperimentError) -> Bool {
        guard case .scalar(let s) = node else { throw fail("expected true or false, got \(shown)") }
        switch s.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail("expected true or false, got \(shown)")
        }
    }

    /// `250ms`, `2s`, `1.5s`, `1m`, `1h`, or a bare number of seconds; at most `DurationText.maximumSeconds`.
    /// `positive`: zero is refused too.
    /// `requireUnit`: a bare number is refused (the network faults' `start`, `stop`, `delay`, `jitter`).
    func duration(positive: Bool = false, requireUnit: Bool = false) throws(ExperimentError) -> Duration {
        guard case .scalar(let s) = node else { throw fail("expected a duration like 500ms, 2s or 1m, got \(shown)") }
        switch DurationText.parse(s.string, bareUnitSeconds: requireUnit ? nil : 1) {
        case .failure(.malformed): throw fail("expected a duration like 500ms, 2s or 1m, got \(shown)")
        case .failure(.tooLong): throw fail("must be at most \(DurationText.maximumDescription), got \(shown)")
        case .success(let d):
            if positive && d <= .zero { throw fail("must be longer than 0, got \(shown)") }
            return d
        }
    }

    static func parseDuration(_ text: String) -> Duration? {
        DurationText.value(text, bareUnitSeconds: 1)
    }

    /// Any YAML value as JSON (scalars typed by their look: numbers, booleans, null, else text).
    func json() throws(ExperimentError) -> JSONValue {
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
            for c in try list() { out.append(try c.json()) }
            return .array(out)
        case .mapping(let m):
            var o: [String: JSONValue] = [:]
            for (k, v) in m {
                guard case .scalar(let ks) = k else { throw fail("keys must be plain names") }
                o[ks.string] = try YAMLCursor(node: v, path: "\(path).\(ks.string)", file: file).json()
            }
            return .object(o)
        case .alias:
            throw fail("aliases are not supported here")
        }
    }
}

struct YAMLMap {
    let cursor: YAMLCursor
    let entries: [(key: String, keyNode: Node, value: Node)]

    func optional(_ key: String) -> YAMLCursor? {
        guard let e = entries.first(where: { $0.key == key }) else { return nil }
        return YAMLCursor(node: e.value, path: cursor.path.isEmpty ? key : "\(cursor.path).\(key)", file: cursor.file)
    }

    func required(_ key: String) throws(ExperimentError) -> YAMLCursor {
        guard let c = optional(key) else {
            throw ExperimentError(file: cursor.file, line: cursor.line, column: cursor.column,
                                  field: cursor.path.isEmpty ? key : "\(cursor.path).\(key)", message: "missing (required)")
        }
        return c
    }

    func has(_ key: String) -> Bool { optional(key) != nil }
}

extension String {
    fileprivate func trimmingCharacters(in _: CharacterSetLite) -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in c: CharacterSetLite) -> String { String(self).trimmingCharacters(in: c) }
}

fileprivate enum CharacterSetLite { case whitespaces }
