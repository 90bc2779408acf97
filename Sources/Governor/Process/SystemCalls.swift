// Thin wrappers over Linux calls that Swift's Glibc module does not import: the pidfd system calls and glibc's
// GNU posix_spawn file actions, through the CSystem shim (fixed-arity C functions, no dlsym).
#if canImport(Glibc)
import Glibc
#endif
import CSystem

public enum SystemCalls {
    /// Adds "chdir(path)" to the file actions (glibc >= 2.29). Returns false if unavailable.
    static func addChdir(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: String) -> Bool {
        path.withCString { sz_spawn_add_chdir(actions, $0) } == 0
    }

    /// `pidfd_open(pid, 0)`: a file descriptor (close-on-exec) that refers to exactly this process,
    /// readable when it exits. Returns -1 and sets errno on failure.
    public static func pidfdOpen(_ pid: pid_t) -> CInt { sz_pidfd_open(pid) }

    /// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals the very process the pidfd names (no PID reuse race).
    public static func pidfdSendSignal(_ pidfd: CInt, _ signal: CInt) -> CInt { sz_pidfd_send_signal(pidfd, signal) }

    /// Adds "close every fd >= lowFd" to the file actions (glibc >= 2.34). Returns false if unavailable.
    public static func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ lowFd: CInt) -> Bool {
        sz_spawn_add_close_from(actions, lowFd) == 0
    }

    /// The text of an errno value.
    static func describe(_ code: CInt) -> String {
        String(cString: strerror(code)) + " (errno \(code))"
    }
}

/// glibc's posix_spawn flags (`<spawn.h>`); the GNU-only ones are not imported into Swift.
enum SpawnFlags {
    static let resetIDs: CShort = 0x01
    static let setProcessGroup: CShort = 0x02
    static let setSignalDefaults: CShort = 0x04
    static let setSignalMask: CShort = 0x08
    static let useVfork: CShort = 0x40
    static let setSession: CShort = 0x80
}
