import Foundation

/// What a progress line shows.
public struct ProgressSnapshot: Sendable, Equatable {
    public var elapsed: Duration
    public var total: Duration?
    public var faultsApplied: Int
    public var faultsPlanned: Int
    public var ok: Int
    public var retried: Int
    public var failed: Int
    public init(elapsed: Duration, total: Duration? = nil, faultsApplied: Int = 0, faultsPlanned: Int = 0,
                ok: Int = 0, retried: Int = 0, failed: Int = 0) {
        self.elapsed = elapsed
        self.total = total
        self.faultsApplied = faultsApplied
        self.faultsPlanned = faultsPlanned
        self.ok = ok
        self.retried = retried
        self.failed = failed
    }

    public var text: String {
        let e = String(format: "%.1f", elapsed.secondsValue)
        let t = total.map { String(format: "/%.0f", $0.secondsValue) } ?? ""
        return "[\(e)\(t) s] faults \(faultsApplied)/\(faultsPlanned) | requests ok \(ok), retried \(retried), failed \(failed)"
    }
}

/// Shows a long run's progress: on a terminal one line updated in place (carriage return, erase line); when
/// the output is not a terminal (CI logs, pipes), a plain line every `plainInterval`.
public final class ProgressReporter: @unchecked Sendable {
    public let isTerminal: Bool
    public let plainInterval: Duration
    private let write: @Sendable (String) -> Void
    private let lock = NSLock()
    private var lastPlain: Duration?
    private var drewLine = false

    /// - Parameters:
    ///   - isTerminal: `nil` asks `isatty` of `fd`.
    ///   - write: where text goes (default: the file descriptor `fd`, stderr).
    public init(fd: Int32 = 2, isTerminal: Bool? = nil, plainInterval: Duration = .seconds(5),
                write: (@Sendable (String) -> Void)? = nil) {
        self.isTerminal = isTerminal ?? (isatty(fd) == 1)
        self.plainInterval = plainInterval
        self.write = write ?? { text in
            var t = text
            t.withUTF8 { buf in _ = Foundation.write(fd, buf.baseAddress, buf.count) }
        }
    }

    /// Shows `s`: redraws the terminal line, or prints a plain line when `plainInterval` has passed since
    /// the last one (the first update always prints).
    public func update(_ s: ProgressSnapshot) {
        lock.withLock {
            if isTerminal {
                write("\r\u{1B}[2K" + s.text)
                drewLine = true
            } else if lastPlain.map({ s.elapsed - $0 >= plainInterval }) ?? true {
                write("progress: " + s.text + "\n")
                lastPlain = s.elapsed
            }
        }
    }

    /// Ends the line (terminal) or prints the final state (plain).
    public func finish(_ s: ProgressSnapshot) {
        lock.withLock {
            if isTerminal {
                write("\r\u{1B}[2K" + s.text + "\n")
            } else {
                write("progress: " + s.text + " (done)\n")
            }
            drewLine = false
        }
    }

    /// Prints a line of its own (a fault starting), without breaking the updating line.
    public func note(_ line: String) {
        lock.withLock {
            write(isTerminal && drewLine ? "\r\u{1B}[2K" + line + "\n" : line + "\n")
        }
    }
}
