import Foundation
import Governor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `@Suite(.tags(...), .leakChecked)`: when the suite's last test has finished, nothing the suite made may
/// be left: no temporary folder (with the PID files, ipc socket files and logs in it), no process a test of
/// the suite started or tracked, and no process still running in, or naming, one of the suite's folders
/// (the children of a detached `szgovernor`, which the test process never sees), and no cgroup under
/// `szgovernor/` made for a deployment folder inside one of the suite's folders. A leak fails the suite
/// with the names of what leaked, after a grace period for processes that are still exiting, and is then
/// cleaned up so it cannot spill into other suites. The run-level `LeakGuard` still checks everything at exit.
///
/// Resources register with the suite through a task-local scope, which child tasks inherit and `onThread`
/// carries to its thread; a resource made outside any scope is left to `LeakGuard`.
public struct LeakCheckedTrait: SuiteTrait, TestScoping {
    public var isRecursive: Bool { false }
    /// How long leftovers may take to go away before they count as leaks.
    public var grace: Duration

    public init(grace: Duration = .seconds(5)) { self.grace = grace }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        PoolWatchdog.startIfAsked()
        // The tests, and the leak check after them, run on the test executor (see TestExecutor).
        try await withTaskExecutorPreference(TestExecutor.shared) {
            let scope = SuiteLeakScope(name: test.name)
            var failure: (any Error)?
            do {
                try await SuiteLeakScope.$current.withValue(scope) { try await function() }
            } catch {
                failure = error
            }
            let left = await scope.leaks(grace: grace)
            if !left.isEmpty {
                scope.cleanUp()
                throw SuiteLeftResourcesBehind(suite: test.name, leaks: left)
            }
            if let failure { throw failure }
        }
    }
}

extension Trait where Self == LeakCheckedTrait {
    /// Fails the suite if it leaves a process, a temporary folder, a PID file or a socket file behind.
    public static var leakChecked: Self { LeakCheckedTrait() }
}

/// What a suite left behind, by name.
public struct SuiteLeftResourcesBehind: Error, CustomStringConvertible {
    public let suite: String
    public let leaks: [String]
    public var description: String {
        "suite \(suite) left these behind:\n" + leaks.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// The resources made while one suite ran.
public final class SuiteLeakScope: @unchecked Sendable {
    @TaskLocal public static var current: SuiteLeakScope?

    public let name: String
    private let lock = NSLock()
    private var folders: Set<String> = []
    private var processes: [Int32: (start: UInt64, name: String)] = [:]

    public init(name: String) { self.name = name }

    func track(folder path: String) { lock.withLock { _ = folders.insert(path) } }
    func track(pid: Int32, name: String) {
        guard let start = LiveProcess.startTime(of: pid) else { return }
        lock.withLock { processes[pid] = (start, name) }
    }

    /// What is left now; with a grace period, polls until it is empty or the period is over.
    public func leaks(grace: Duration = .zero) async -> [String] {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: grace)
        var left = leaksNow()
        while !left.isEmpty && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
            left = leaksNow()
        }
        return left
    }

    public func leaksNow() -> [String] {
        let (folders, processes) = lock.withLock { (self.folders, self.processes) }
        var out: [String] = []
        for f in folders.sorted() where FileManager.default.fileExists(atPath: f) {
            let inside = (try? FileManager.default.contentsOfDirectory(atPath: f))?.sorted() ?? []
            out.append("temporary folder \(f)" + (inside.isEmpty ? "" : " holding \(inside.prefix(8).joined(separator: ", "))"))
        }
        for (pid, p) in processes.sorted(by: { $0.key < $1.key }) where LiveProcess.startTime(of: pid) == p.start {
            out.append("process \(pid) (\(p.name))")
        }
        let known = Set(processes.keys)
        for (pid, why) in Self.processes(using: folders) where !known.contains(pid) {
            out.append("process \(pid) (\(LeakGuard.commandLine(of: pid))) \(why)")
        }
        out += Self.cgroups(of: folders).map { "cgroup \($0.group) (made for \($0.folder))" }
        return out
    }

    /// The governor cgroups (ProcessTree) whose deployment folder is inside one of `folders`.
    static func cgroups(of folders: Set<String>) -> [(group: String, folder: String)] {
        guard !folders.isEmpty else { return [] }
        return ProcessTree.deploymentGroups().compactMap { g in
            guard let folder = g.folder,
                  folders.contains(where: { folder == $0 || folder.hasPrefix($0 + "/") || folder.hasPrefix(ProcessTree.realPath($0) + "/") })
            else { return nil }
            return (g.group, folder)
        }
    }

    /// Kills what is left (process groups included) and removes the folders.
    func cleanUp() {
        let (folders, processes) = lock.withLock { (self.folders, self.processes) }
        var victims = processes.filter { LiveProcess.startTime(of: $0.key) == $0.value.start }.map(\.key)
        victims += Self.processes(using: folders).map(\.pid)
        for pid in victims {
            if LiveProcess.processGroup(of: pid) == pid { kill(-pid, SIGKILL) }
            kill(pid, SIGKILL)
        }
        for g in Self.cgroups(of: folders) { ProcessTree.removeDeploymentGroup(g.group, timeout: .seconds(5)) }
        for f in folders { try? FileManager.default.removeItem(atPath: f) }
    }

    /// Live processes (other than this one) whose working directory is inside one of `folders`, or whose
    /// command line names one of them.
    static func processes(using folders: Set<String>) -> [(pid: Int32, why: String)] {
        guard !folders.isEmpty else { return [] }
        let me = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var out: [(Int32, String)] = []
        for pid in entries.compactMap({ Int32($0) }).sorted() where pid != me && LiveProcess.isAlive(pid) {
            let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? ""
            let command = LeakGuard.commandLine(of: pid)
            for f in folders {
                if cwd == f || cwd.hasPrefix(f + "/") || cwd.hasPrefix(f + " ") {
                    out.append((pid, "running in \(f)")); break
                }
                if command.contains(f) { out.append((pid, "naming \(f)")); break }
            }
        }
        return out
    }
}
