// Thin wrappers over Linux calls that Swift's Glibc module does not import.
//
// `syscall(2)` is variadic and glibc's `<sys/pidfd.h>` / `posix_spawn_file_actions_addclosefrom_np`
// are not in the Glibc module map, so they are looked up once with dlsym. On x86_64 and aarch64 Linux a
// variadic callee reads integer arguments from the same registers as a fixed-arity one, so calling
// `syscall` through a fixed-arity pointer is sound there (it is how Swift projects without a C shim do it).
#if canImport(Glibc)
import Glibc
#endif

public enum SystemCalls {
    private typealias SyscallFn = @convention(c) (CLong, CLong, CLong, CLong, CLong) -> CLong
    private typealias CloseFromFn = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, CInt) -> CInt

    nonisolated(unsafe) private static let handle = dlopen(nil, RTLD_NOW)  // immutable after first use

    private static let syscallFn: SyscallFn? = {
        guard let sym = dlsym(handle, "syscall") else { return nil }
        return unsafeBitCast(sym, to: SyscallFn.self)
    }()

    private static let closeFromFn: CloseFromFn? = {
        guard let sym = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(sym, to: CloseFromFn.self)
    }()

    private typealias ChdirFn = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> CInt

    private static let chdirFn: ChdirFn? = {
        guard let sym = dlsym(handle, "posix_spawn_file_actions_addchdir_np") else { return nil }
        return unsafeBitCast(sym, to: ChdirFn.self)
    }()

    /// Adds "chdir(path)" to the file actions (glibc >= 2.29). Returns false if unavailable.
    static func addChdir(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: String) -> Bool {
        guard let fn = chdirFn else { return false }
        return path.withCString { fn(actions, $0) } == 0
    }

    static let sysPidfdOpen: CLong = 434
    static let sysPidfdSendSignal: CLong = 424

    /// `pidfd_open(pid, 0)`: a file descriptor (close-on-exec) that refers to exactly this process,
    /// readable when it exits. Returns -1 and sets errno on failure.
    public static func pidfdOpen(_ pid: pid_t) -> CInt {
        guard let fn = syscallFn else { errno = ENOSYS; return -1 }
        return CInt(truncatingIfNeeded: fn(sysPidfdOpen, CLong(pid), 0, 0, 0))
    }

    /// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals the very process the pidfd names (no PID reuse race).
    public static func pidfdSendSignal(_ pidfd: CInt, _ signal: CInt) -> CInt {
        guard let fn = syscallFn else { errno = ENOSYS; return -1 }
        return CInt(truncatingIfNeeded: fn(sysPidfdSendSignal, CLong(pidfd), CLong(signal), 0, 0))
    }

    /// Adds "close every fd >= lowFd" to the file actions (glibc >= 2.34). Returns false if unavailable.
    static func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ lowFd: CInt) -> Bool {
        guard let fn = closeFromFn else { return false }
        return fn(actions, lowFd) == 0
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
