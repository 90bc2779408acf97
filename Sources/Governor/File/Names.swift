// Names that become path components (deployment folders, PID and log files) are checked before use.
import Foundation

public enum NameError: Error, Equatable, CustomStringConvertible {
    case empty(kind: String)
    case tooLong(kind: String, name: String, max: Int)
    case pathSeparator(kind: String, name: String)
    case dotDot(kind: String, name: String)
    case leadingDot(kind: String, name: String)
    case badCharacter(kind: String, name: String, character: Character)
    case reserved(kind: String, name: String, reason: String)

    public var description: String {
        switch self {
        case .empty(let kind): return "\(kind) name is empty"
        case .tooLong(let kind, let name, let max): return "\(kind) name \"\(name.prefix(40))…\" is longer than \(max) characters"
        case .pathSeparator(let kind, let name): return "\(kind) name \"\(name)\" contains \"/\" (it must be a single folder name)"
        case .dotDot(let kind, let name): return "\(kind) name \"\(name)\" contains \"..\""
        case .leadingDot(let kind, let name): return "\(kind) name \"\(name)\" starts with \".\""
        case .badCharacter(let kind, let name, let c):
            return "\(kind) name \"\(name)\" contains \"\(c)\" (allowed: letters, digits, \"-\", \"_\", \".\")"
        case .reserved(let kind, let name, let reason):
            return "\(kind) name \"\(name)\" is reserved: \(reason)"
        }
    }
}

public enum Names {
    public static let maxLength = 64

    /// Checks a deployment name: not empty, no "/", no "..", no leading ".", only [A-Za-z0-9._-], <= 64.
    public static func validateDeployment(_ name: String) throws(NameError) { try validate(name, kind: "deployment") }

    /// Same rules for process names (handler ids, `server`), and none of `reservedProcessNames`.
    public static func validateProcess(_ name: String) throws(NameError) {
        try validate(name, kind: "process")
        if let reason = reservedProcessNames[name] { throw .reserved(kind: "process", name: name, reason: reason) }
    }

    /// Process names whose files would be the governor's own: a process's files are `pids/NAME.pid`,
    /// `logs/NAME.log`, `run/NAME.sock` and `run/NAME.ready`; the governor's are `pids/governor.pid`,
    /// `logs/governor.log` (`szgovernor logs governor`) and `run/governor.control`, so only `governor`
    /// collides (`governor.control` would give `run/governor.control.sock`, another file).
    public static let reservedProcessNames: [String: String] = [
        "governor": "pids/governor.pid and logs/governor.log are the governor's own files",
    ]

    static func validate(_ name: String, kind: String) throws(NameError) {
        if name.isEmpty { throw .empty(kind: kind) }
        if name.contains("/") { throw .pathSeparator(kind: kind, name: name) }
        if name.contains("..") { throw .dotDot(kind: kind, name: name) }
        if name.hasPrefix(".") { throw .leadingDot(kind: kind, name: name) }
        if name.count > maxLength { throw .tooLong(kind: kind, name: name, max: maxLength) }
        if let bad = name.first(where: { !($0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0))) }) {
            throw .badCharacter(kind: kind, name: name, character: bad)
        }
    }

    /// fnmatch(3) glob matching (`h-*`, `h-[12]`, `server`).
    public static func matches(_ name: String, glob: String) -> Bool {
        fnmatch(glob, name, 0) == 0
    }
}
