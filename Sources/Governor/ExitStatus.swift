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
    let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
        SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1", SIGSEGV: "SIGSEGV",
        SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGCHLD: "SIGCHLD",
        SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP",
    ]
    return names[signal] ?? "SIG\(signal)"
}
