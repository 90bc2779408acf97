import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A diagnostic for starved executors: with `SZ_POOL_WATCHDOG=SECONDS` in the environment, a thread of its
/// own enqueues a tiny task every 100 ms on Swift's cooperative pool and another on `TestExecutor.shared`,
/// and says on stderr when one has not started after SECONDS, and when it did. With
/// `SZ_POOL_WATCHDOG_STACKS=DIR` it also writes the stacks of every thread of the process (`gdb -batch`,
/// which stops the process while it reads them) to DIR; gdb attaches to its parent, which needs root or
/// `kernel.yama.ptrace_scope` 0. Started by `.leakChecked`. This is how flake 23 in docs/TESTING.md was found.
public enum PoolWatchdog {
    public static func startIfAsked() { _ = started }

    private static let started: Bool = {
        let env = ProcessInfo.processInfo.environment
        guard let text = env["SZ_POOL_WATCHDOG"], let limit = Double(text), limit > 0 else { return false }
        let stacks = env["SZ_POOL_WATCHDOG_STACKS"]
        let probes: [(String, TestExecutor?)] = [("the cooperative pool", nil), ("the test executor", TestExecutor.shared)]
        for (name, executor) in probes {
            let thread = Thread { watch(name, executor, limit: limit, stacks: stacks) }
            thread.start()
        }
        return true
    }()

    private static let dumpLock = NSLock()  // one gdb at a time
    nonisolated(unsafe) private static var dumps = 0

    private final class Stamp: @unchecked Sendable {
        private let lock = NSLock()
        private var ran = false
        func mark() { lock.withLock { ran = true } }
        var done: Bool { lock.withLock { ran } }
    }

    private static func say(_ text: String) {
        FileHandle.standardError.write(Data("pool watchdog: \(text)\n".utf8))
    }

    private static func watch(_ name: String, _ executor: TestExecutor?, limit: Double, stacks: String?) {
        while true {
            let stamp = Stamp()
            let clock = ContinuousClock()
            let sent = clock.now
            if let executor { Task(executorPreference: executor) { stamp.mark() } } else { Task.detached { stamp.mark() } }
            var late = false
            while !stamp.done {
                usleep(20_000)
                if !late && clock.now - sent >= .seconds(limit) {
                    late = true
                    var note = ""
                    if let stacks, let file = dump(into: stacks) { note = "; stacks in \(file)" }
                    say("a task has waited \(String(format: "%.1f", limit)) s for a thread of \(name)\(note)")
                }
            }
            if late {
                let waited = (clock.now - sent).components
                say("the task on \(name) started after \(String(format: "%.1f", Double(waited.seconds) + Double(waited.attoseconds) / 1e18)) s")
            }
            usleep(100_000)
        }
    }

    private static func dump(into dir: String) -> String? {
        dumpLock.lock()
        defer { dumpLock.unlock() }
        guard dumps < 20 else { return nil }
        dumps += 1
        let file = "\(dir)/pool-stall-\(getpid())-\(dumps).txt"
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?"
        guard FileManager.default.createFile(atPath: file, contents: Data("loadavg \(load)\n".utf8)),
              let out = FileHandle(forWritingAtPath: file) else { return nil }
        defer { try? out.close() }
        out.seekToEndOfFile()
        let gdb = Process()
        gdb.executableURL = URL(fileURLWithPath: "/usr/bin/gdb")
        gdb.arguments = ["-p", "\(getpid())", "-batch", "-nx", "-ex", "set pagination off", "-ex", "thread apply all bt 30"]
        gdb.standardOutput = out
        gdb.standardError = out
        gdb.standardInput = FileHandle.nullDevice
        do { try gdb.run(); gdb.waitUntilExit() } catch { out.write(Data("gdb: \(error)\n".utf8)) }
        return file
    }
}
