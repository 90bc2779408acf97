/// A problem in a file, located: `ci.yaml:12:5: handlers[0].replicas: must be ...`. Deployment files and
/// chaos experiments both report their errors with it.
public typealias DeploymentFileError = LocatedFileError

public struct LocatedFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    /// 1-based; 0 when the problem has no position (e.g. the file cannot be read).
    public var line: Int
    public var column: Int
    /// The field path, e.g. `handlers[0].replicas` (empty for the whole document).
    public var field: String
    public var message: String

    public init(file: String, line: Int, column: Int, field: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    public var description: String {
        let position = line > 0 ? "\(file):\(line):\(column)" : file
        return field.isEmpty ? "\(position): \(message)" : "\(position): \(field): \(message)"
    }
}
