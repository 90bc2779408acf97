#if canImport(Glibc)
import Glibc
#endif
import CSystem

/// Signals taken synchronously: blocked in every thread (call `install` before starting any thread, so
/// libzmq's I/O threads inherit the mask) and collected by `next(timeout:)` with `sigtimedwait`.
/// No work ever runs inside a signal handler.
public enum ProcessSignals {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    /// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and every thread it starts later) and
    /// ignores SIGPIPE.
    public static func install() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// When started by szgovernor (`SZGOVERNOR_PID` in the environment): stop gracefully, by SIGINT (SIGINT
    /// stops even with --ignore-sigterm), when that governor dies, even by SIGKILL. An event, not a poll:
    /// `PR_SET_PDEATHSIG` SIGINT, which Linux sends when the thread that spawned us ends; the governor
    /// spawns on its event loop's thread, which lives as long as the governor (docs/ARCHITECTURE.md). One
    /// getppid() check right after, against the race with a governor that died before the prctl.
    public static func watchParent(environment: [String: String]) {
        guard let text = environment["SZGOVERNOR_PID"], let governor = pid_t(text), governor > 1 else { return }
        _ = sz_set_parent_death_signal(SIGINT)
        if getppid() != governor { kill(getpid(), SIGINT) }
    }

    /// The next pending handled signal, or nil after `timeout`.
    public static func next(timeout: Duration) -> Int32? {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        let (sec, atto) = timeout.components
        var ts = timespec(tv_sec: Int(sec), tv_nsec: Int(atto / 1_000_000_000))
        let r = sigtimedwait(&set, nil, &ts)
        return r > 0 ? r : nil
    }

    public static func name(_ s: Int32) -> String {
        switch s {
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGHUP: "SIGHUP"
        default: "signal \(s)"
        }
    }

    /// Ends the process now the way a crash fault asks: `_exit(code)`, or the signal with its default action.
    public static func crash(_ mode: CrashMode) -> Never {
        switch mode {
        case .exit(let code):
            _exit(code)
        case .signal(let s):
            signal(s, SIG_DFL)
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, s)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            raise(s)
            if s == SIGABRT { abort() }
            _exit(128 + s)
        }
    }
}
