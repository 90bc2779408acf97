// SIGTERM, SIGINT and SIGQUIT for a governor: blocked in every thread (call `block()` first thing in
// `main`, before any thread exists, so every later thread inherits the mask) and taken synchronously by
// one dedicated thread with sigtimedwait(2). No code runs in a signal handler. The first signal asks for a
// graceful stop, every later one for a forced stop.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public enum GovernorSignals {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGQUIT]

    /// Blocks the handled signals in the calling thread (and the threads it starts later); ignores SIGPIPE.
    public static func block() {
        var set = signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Starts the watcher thread: `onFirst(signal)` for the first signal, `onForce(signal)` for each later one.
    public static func watch(onFirst: @escaping @Sendable (Int32) -> Void, onForce: @escaping @Sendable (Int32) -> Void) {
        let thread = Thread {
            var count = 0
            while true {
                var set = signalSet()
                let sig = sigwaitinfo(&set, nil)
                guard sig > 0 else { continue }
                count += 1
                if count == 1 { onFirst(sig) } else { onForce(sig) }
            }
        }
        thread.name = "governor-signals"
        thread.stackSize = 256 * 1024
        thread.start()
    }

    static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        return set
    }
}
