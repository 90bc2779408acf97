#if canImport(Glibc)
import Glibc
#endif

/// Errors of the governor's operations; each names what is wrong and, where it helps, what exists.
public enum GovernorError: Error, Equatable, CustomStringConvertible {
    case deploymentLocked(deployment: String, holderPid: pid_t?, lockPath: String)
    case lockFailed(path: String, reason: String)
    case unknownProcess(deployment: String, name: String, known: [String])
    case duplicateProcess(deployment: String, name: String)
    case noMatch(deployment: String, pattern: String, known: [String])
    case startFailed(name: String, reason: String)
    case notRunning(deployment: String)
    case invalidConfig(String)
    /// A path the governor would create, write or delete is unsafe (a symbolic link, not ours, outside).
    case unsafePath(path: String, reason: String)
    /// The lock is held, nothing answers, and `pids/governor.pid` does not name the lock's holder.
    case unverifiedGovernor(deployment: String, pid: pid_t?, lockPath: String, reason: String)

    public var description: String {
        switch self {
        case .deploymentLocked(let d, let holder, let path):
            let who = holder.map { "governor pid \($0)" } ?? "another governor (pid unknown)"
            return "deployment \"\(d)\" is already governed by \(who) (lock \(path)); run `szgovernor down --deployment \(d)` or stop that process first"
        case .lockFailed(let path, let reason):
            return "cannot take the deployment lock \(path): \(reason)"
        case .unknownProcess(let d, let name, let known):
            return "deployment \"\(d)\" has no process \"\(name)\" (known: \(known.isEmpty ? "none" : known.joined(separator: ", ")))"
        case .duplicateProcess(let d, let name):
            return "deployment \"\(d)\" already has a process \"\(name)\""
        case .noMatch(let d, let pattern, let known):
            return "no process of deployment \"\(d)\" matches \"\(pattern)\" (known: \(known.isEmpty ? "none" : known.joined(separator: ", ")))"
        case .startFailed(let name, let reason):
            return "\(name) failed to start: \(reason)"
        case .notRunning(let d):
            return "deployment \"\(d)\" is not running"
        case .invalidConfig(let text):
            return text
        case .unsafePath(let path, let reason):
            return "refusing \(path): \(reason)"
        case .unverifiedGovernor(let d, let pid, let lock, let reason):
            let who = pid.map { "pid \($0)" } ?? "no PID"
            return "deployment \"\(d)\" is locked (\(lock)) and its governor does not answer, but pids/governor.pid names \(who), which \(reason): nothing was signalled (find the lock's holder with `fuser \(lock)`)"
        }
    }
}
