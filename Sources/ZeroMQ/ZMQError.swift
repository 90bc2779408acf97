import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// A libzmq failure, named by its errno and carrying libzmq's own message.
///
/// `code` gives the errno a name (`.efsm`, `.eagain`, `.eterm`, ...) so callers can switch on it;
/// `description` reads like `zmq_send: EFSM (156384763): Operation cannot be accomplished in current state`.
public struct ZMQError: Error, Equatable, Hashable, CustomStringConvertible, Sendable {
    public enum Code: Equatable, Hashable, Sendable {
        case efsm, eagain, eterm, ehostunreach, enotsock, eintr, einval, eaddrinuse, eaddrnotavail
        case enodev, emthread, enocompatproto, eprotonosupport, enotsup, efault, emsgsize, enomem
        case econnrefused, enoent, emfile
        case other(Int32)

        public init(errno e: Int32) {
            switch e {
            case sz_zmq_efsm(): self = .efsm
            case EAGAIN: self = .eagain
            case sz_zmq_eterm(): self = .eterm
            case EHOSTUNREACH: self = .ehostunreach
            case ENOTSOCK: self = .enotsock
            case EINTR: self = .eintr
            case EINVAL: self = .einval
            case EADDRINUSE: self = .eaddrinuse
            case EADDRNOTAVAIL: self = .eaddrnotavail
            case ENODEV: self = .enodev
            case sz_zmq_emthread(): self = .emthread
            case sz_zmq_enocompatproto(): self = .enocompatproto
            case EPROTONOSUPPORT: self = .eprotonosupport
            case ENOTSUP: self = .enotsup
            case EFAULT: self = .efault
            case EMSGSIZE: self = .emsgsize
            case ENOMEM: self = .enomem
            case ECONNREFUSED: self = .econnrefused
            case ENOENT: self = .enoent
            case EMFILE: self = .emfile
            default: self = .other(e)
            }
        }

        /// The symbolic errno name, as in C.
        public var name: String {
            switch self {
            case .efsm: "EFSM"
            case .eagain: "EAGAIN"
            case .eterm: "ETERM"
            case .ehostunreach: "EHOSTUNREACH"
            case .enotsock: "ENOTSOCK"
            case .eintr: "EINTR"
            case .einval: "EINVAL"
            case .eaddrinuse: "EADDRINUSE"
            case .eaddrnotavail: "EADDRNOTAVAIL"
            case .enodev: "ENODEV"
            case .emthread: "EMTHREAD"
            case .enocompatproto: "ENOCOMPATPROTO"
            case .eprotonosupport: "EPROTONOSUPPORT"
            case .enotsup: "ENOTSUP"
            case .efault: "EFAULT"
            case .emsgsize: "EMSGSIZE"
            case .enomem: "ENOMEM"
            case .econnrefused: "ECONNREFUSED"
            case .enoent: "ENOENT"
            case .emfile: "EMFILE"
            case .other(let e): "errno \(e)"
            }
        }
    }

    public let errno: Int32
    /// The libzmq call (or binding operation) that failed, e.g. `zmq_send`.
    public let operation: String
    public var code: Code { Code(errno: errno) }
    /// libzmq's `zmq_strerror` text.
    public var message: String { String(cString: zmq_strerror(errno)) }

    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    /// The error of the last failed libzmq call on this thread.
    static func last(_ operation: String) -> ZMQError {
        ZMQError(errno: zmq_errno(), operation: operation)
    }

    public var description: String { "\(operation): \(code.name) (\(errno)): \(message)" }

    public static let efsmErrno: Int32 = sz_zmq_efsm()
    public static let etermErrno: Int32 = sz_zmq_eterm()
}

/// Misuse of the binding that libzmq would not report safely itself.
public enum ZMQUsageError: Error, Equatable, CustomStringConvertible, Sendable {
    /// Two threads tried to use one socket at the same time; the second call was refused, not run.
    case concurrentUse(socket: String, operation: String)
    /// The socket was closed (by its owner or by its context's termination).
    case closed(socket: String, operation: String)
    /// The context was terminated; no new sockets can be made from it.
    case contextTerminated
    /// Closing the context did not finish within its deadline.
    case terminationTimedOut(openSockets: Int, after: Duration)

    public var description: String {
        switch self {
        case .concurrentUse(let s, let op): "\(op) on socket \(s) refused: the socket is in use by another thread"
        case .closed(let s, let op): "\(op) on socket \(s) refused: the socket is closed"
        case .contextTerminated: "the ZeroMQ context is terminated"
        case .terminationTimedOut(let n, let d):
            n > 0 ? "context termination did not finish within \(d): \(n) socket(s) still open"
                : "context termination did not finish within \(d): zmq_ctx_term still running: a socket closed with infinite linger still holds messages for an absent peer (it finishes on a thread of its own)"
        }
    }
}
