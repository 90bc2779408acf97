// SIGTERM, SIGINT and SIGQUIT for a governor: blocked in every thread (call `block()` first thing in
// `main`, before any thread exists, so every later thread inherits the mask) and read from a signalfd by
// the governor's event loop (EventLoop.swift): no thread of their own, no code in a signal handler. The
// first signal asks for a graceful stop, every later one for a forced stop.
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

    /// Watches the handled signals on the event loop: `onFirst(signal)` for the first signal, `onForce(signal)`
    /// for each later one, both called on the loop thread (they must not block: start a Task for the stop).
    /// False when no signalfd could be made.
    @discardableResult
    public static func watch(onFirst: @escaping @Sendable (Int32) -> Void, onForce: @escaping @Sendable (Int32) -> Void) -> Bool {
        let fd = Epoll.signalFD(signalSet())
        guard fd >= 0 else { return false }
        nonisolated(unsafe) var count = 0  // the loop thread's only
        let token = EventLoop.shared.watch(fd, events: Epoll.inEvent) { _ in
            var info = [UInt8](repeating: 0, count: Epoll.signalInfoSize)
            while info.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) == Epoll.signalInfoSize {
                let sig = Int32(info.withUnsafeBytes { $0.load(as: UInt32.self) })
                count += 1
                if count == 1 { onFirst(sig) } else { onForce(sig) }
            }
        }
        if token == nil { close(fd) }
        return token != nil
    }

    static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        return set
    }
}
