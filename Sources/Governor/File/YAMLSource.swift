// Reading a YAML file into a Node with located errors, for deployment and experiment files alike:
// bytes that are not UTF-8 are named by offset, line and column; a key given twice in one mapping is
// named at both of its lines (Yams reports only the first).
import Foundation
import Yams

public enum YAMLSource {
    /// The file's text, or an error naming the first byte that is not UTF-8.
    public static func text(of path: String, display: String) throws(LocatedFileError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LocatedFileError(file: path, line: 0, column: 0, field: "", message: "cannot read the file")
        }
        return try decode(Array(data), file: display)
    }

    public static func decode(_ bytes: [UInt8], file: String) throws(LocatedFileError) -> String {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        loop: while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .emptyInput: break loop
            case .error(let length):
                var line = 1
                var lineStart = 0
                for (i, b) in bytes[..<offset].enumerated() where b == 0x0A { line += 1; lineStart = i + 1 }
                let column = String(decoding: bytes[lineStart..<offset], as: UTF8.self).count + 1
                let shown = bytes[offset..<min(offset + max(length, 1), bytes.count)]
                    .map { "0x" + String($0, radix: 16, uppercase: true) }.joined(separator: " ")
                throw LocatedFileError(file: file, line: line, column: column, field: "",
                                       message: "not UTF-8: byte \(shown) at offset \(offset) (line \(line), column \(column)); the file must be UTF-8 text")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Yams.compose, with a duplicate key reported at both of its lines and a syntax error at its
    /// position (`YAML syntax: ...`). nil for an empty document.
    public static func compose(_ yaml: String, file: String) throws(LocatedFileError) -> Node? {
        do {
            return try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            if case .duplicatedKeysInMapping(let keys, let context) = error {
                throw duplicate(keys: keys, first: context.mark, yaml: yaml, file: file)
            }
            throw syntaxError(error, file: file)
        } catch {
            throw LocatedFileError(file: file, line: 0, column: 0, field: "", message: "YAML: \(error)")
        }
    }

    static func syntaxError(_ error: YamlError, file: String) -> LocatedFileError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return LocatedFileError(file: file, line: mark.line, column: mark.column, field: "", message: "YAML syntax: \(problem)")
        default:
            return LocatedFileError(file: file, line: 0, column: 0, field: "", message: "YAML: \(error)")
        }
    }

    /// Finds the second occurrence: renames the first (at the mark Yams gave) and composes again, then
    /// looks for the mapping that holds both names.
    static func duplicate(keys: [String], first: Mark, yaml: String, file: String) -> LocatedFileError {
        let key = keys.sorted().first ?? ""
        var second: Mark?
        var lines = yaml.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let marker = "\(key)__szdup_first"
        if first.line >= 1, first.line <= lines.count {
            let line = Array(lines[first.line - 1])
            let start = max(0, first.column - 1)
            // The key may be quoted: its text starts at the mark or one character after it.
            for s in [start, start + 1] where s + key.count <= line.count && String(line[s..<(s + key.count)]) == key {
                lines[first.line - 1] = String(line[..<s]) + marker + String(line[(s + key.count)...])
                if let node = try? Yams.compose(yaml: lines.joined(separator: "\n")) {
                    second = find(key: key, besides: marker, in: node)
                }
                break
            }
        }
        let where_ = second.map { "line \(first.line) and line \($0.line)" } ?? "line \(first.line) and again later"
        return LocatedFileError(file: file, line: second?.line ?? first.line, column: second?.column ?? first.column,
                                field: key, message: "given twice in one mapping (at \(where_))")
    }

    static func find(key: String, besides marker: String, in node: Node) -> Mark? {
        switch node {
        case .mapping(let m):
            let keys = m.map(\.key)
            if keys.contains(where: { $0.string == marker }), let other = keys.first(where: { $0.string == key }) {
                return other.mark
            }
            for (_, v) in m { if let found = find(key: key, besides: marker, in: v) { return found } }
        case .sequence(let s):
            for v in s { if let found = find(key: key, besides: marker, in: v) { return found } }
        default: break
        }
        return nil
    }
}
