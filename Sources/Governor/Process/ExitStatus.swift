#if canImport(Glibc)
import Glibc
#endif

/// How a process ended: its exit code, or the signal that killed it.
public enum ExitStatus: Sendable, Hashable, CustomStringConvertible, Codable {
    case exited(code: Int32)
    case signaled(signal: Int32, coreDumped: Bool)

    /// Exit code 0.
    public var isSuccess: Bool { self == .exited(code: 0) }

    public var exitCode: Int32? {
        if case .exited(let code) = self { return code }
        return nil
    }

    public var signal: Int32? {
        if case .signaled(let signal, _) = self { return signal }
        return nil
    }

    public var description: String {
        switch self {
        case .exited(let code): return "exit code \(code)"
        case .signaled(let signal, let core):
            return "signal \(signal) (\(signalName(signal)))" + (core ? ", core dumped" : "")
        }
    }

    /// From the siginfo_t a waitid() filled in.
    init(siginfo info: siginfo_t) {
        let status = info._sifields._sigchld.si_status
        switch info.si_code {
        case CInt(CLD_EXITED): self = .exited(code: status)
        case CInt(CLD_DUMPED): self = .signaled(signal: status, coreDumped: true)
        default: self = .signaled(signal: status, coreDumped: false)
        }
    }
}

/// "SIGTERM" for 15, "SIG42" for anything unnamed.
public func signalName(_ signal: Int32) -> String {
    SignalName.table.first { $0.1 == signal }?.0 ?? "SIG\(signal)"
}

/// Signal names and numbers (`SIGKILL`, `KILL`, `9`).
public enum SignalName {
    public static let table: [(String, Int32)] = [
        ("SIGHUP", SIGHUP), ("SIGINT", SIGINT), ("SIGQUIT", SIGQUIT), ("SIGILL", SIGILL), ("SIGTRAP", SIGTRAP),
        ("SIGABRT", SIGABRT), ("SIGBUS", SIGBUS), ("SIGFPE", SIGFPE), ("SIGKILL", SIGKILL), ("SIGUSR1", SIGUSR1),
        ("SIGSEGV", SIGSEGV), ("SIGUSR2", SIGUSR2), ("SIGPIPE", SIGPIPE), ("SIGALRM", SIGALRM), ("SIGTERM", SIGTERM),
        ("SIGCHLD", SIGCHLD), ("SIGCONT", SIGCONT), ("SIGSTOP", SIGSTOP), ("SIGTSTP", SIGTSTP), ("SIGWINCH", SIGWINCH),
    ]

    /// The number of `text` (`SIGKILL`, `kill`, `9`), nil when unknown.
    public static func number(_ text: String) -> Int32? {
        if let n = Int32(text), table.contains(where: { $0.1 == n }) { return n }
        let up = text.uppercased()
        let full = up.hasPrefix("SIG") ? up : "SIG" + up
        return table.first { $0.0 == full }?.1
    }

    public static func name(_ n: Int32) -> String { table.first { $0.1 == n }?.0 ?? "signal \(n)" }

    public static var known: String { table.map(\.0).joined(separator: ", ") }
}
