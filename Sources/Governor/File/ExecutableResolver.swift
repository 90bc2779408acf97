// Which program a process runs is decided once, explicitly: an absolute path is used as is; a relative
// path ("./bin/szmock", "bin/szmock") is taken relative to the deployment file's folder; a bare name
// ("sleep") is looked up in the search path the config gives (never implicitly the governor's PATH when
// the config gives one) and the resolved absolute path is what gets spawned and recorded.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public enum ExecutableError: Error, Equatable, CustomStringConvertible {
    case notFound(name: String, searched: [String])
    case notExecutable(path: String)

    public var description: String {
        switch self {
        case .notFound(let name, let searched):
            return "executable \"\(name)\" not found in \(searched.isEmpty ? "an empty PATH" : searched.joined(separator: ":"))"
        case .notExecutable(let path): return "\"\(path)\" does not exist or is not executable"
        }
    }
}

public enum ExecutableResolver {
    public static func resolve(_ executable: String, relativeTo baseDirectory: String?,
                               searchPath: String?) throws(ExecutableError) -> String {
        if executable.hasPrefix("/") {
            guard isExecutableFile(executable) else { throw .notExecutable(path: executable) }
            return executable
        }
        if executable.contains("/") {
            let base = baseDirectory ?? FileManager.default.currentDirectoryPath
            let path = URL(fileURLWithPath: base).appendingPathComponent(executable).standardized.path
            guard isExecutableFile(path) else { throw .notExecutable(path: path) }
            return path
        }
        let dirs = (searchPath ?? "").split(separator: ":").map(String.init).filter { !$0.isEmpty }
        for dir in dirs {
            let candidate = (dir as NSString).appendingPathComponent(executable)
            if candidate.hasPrefix("/"), isExecutableFile(candidate) { return candidate }
        }
        throw .notFound(name: executable, searched: dirs)
    }

    static func isExecutableFile(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        return access(path, X_OK) == 0
    }
}
