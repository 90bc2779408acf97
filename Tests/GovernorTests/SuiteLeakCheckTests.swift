import Foundation
import Governor
import Testing
import ScheduleZeroTesting
#if canImport(Glibc)
import Glibc
#endif

/// The per-suite leak check (`.leakChecked`) itself: a suite that leaves a folder with a PID file in it, a
/// process it started, and a grandchild running in its folder fails with all three named, and they are gone
/// afterwards.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_SuiteLeakCheck {
    final class Kept: @unchecked Sendable {
        var folder: TemporaryDirectory?
        var process: TestProcess?
        var group: String?
    }

    @Test func aSuiteThatLeavesThingsBehindFailsNamingThemAndTheyAreCleanedUp() async throws {
        let test = try #require(Test.current)
        let kept = Kept()
        let error = await #expect(throws: SuiteLeftResourcesBehind.self) {
            try await LeakCheckedTrait(grace: .milliseconds(300)).provideScope(for: test, testCase: nil) {
                let dir = TemporaryDirectory(prefix: "leak-probe")
                try dir.write("123\n", to: "h-1.pid")
                kept.folder = dir
                // A child, and a grandchild the test process never sees that runs in the suite's folder.
                let p = try TestProcess("/bin/sh", ["-c", "cd '\(dir.path)' && sleep 30 & echo started; wait"])
                kept.process = p
                try await waitUntil("the grandchild in the folder", timeout: .seconds(20)) {
                    p.lines.contains("started") && !LiveProcess.children(of: p.pid).isEmpty
                }
            }
        }
        let folder = try #require(kept.folder?.path)
        let child = try #require(kept.process?.pid)
        let text = try #require(error).description
        #expect(text.contains("temporary folder \(folder) holding h-1.pid"), "\(text)")
        #expect(text.contains("process \(child) (sh -c"), "\(text)")
        #expect(text.contains("sleep 30) running in \(folder)"), "\(text)")
        // Cleaned up by the check, so nothing spills into other suites.
        #expect(!FileManager.default.fileExists(atPath: folder))
        try await waitUntil("the leaked processes gone", timeout: .seconds(10)) {
            !LiveProcess.isAlive(child) && LiveProcess.children(of: child).isEmpty
        }
    }

    /// A governor cgroup (`szgovernor/<id>`, ProcessTree) made for a deployment folder inside the suite's
    /// folder and left behind fails the suite, named, and is removed with the process in it.
    @Test func aLeftoverGovernorCgroupFailsTheSuiteNamingItAndIsRemoved() async throws {
        let test = try #require(Test.current)
        struct NoCgroup: Error {}
        let kept = Kept()
        let error = await #expect(throws: (any Error).self) {
            try await LeakCheckedTrait(grace: .milliseconds(300)).provideScope(for: test, testCase: nil) {
                let dir = TemporaryDirectory(prefix: "leak-probe")
                defer { dir.remove() }
                let folder = dir.file("probe")
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                guard case .cgroup(let group) = ProcessTree.prepare(name: "probe", folder: folder, environment: [:]) else {
                    throw NoCgroup()
                }
                kept.group = group
                try ProcessCgroup(path: group + "/h").create()
            }
        }
        guard let group = kept.group, !(error is NoCgroup) else { return }  // no cgroup here: nothing to leave
        let text = try #require(error as? SuiteLeftResourcesBehind).description
        #expect(text.contains("cgroup \(group) (made for /"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: group), "removed by the check")
    }

    @Test func aSuiteThatCleansUpPasses() async throws {
        let test = try #require(Test.current)
        try await LeakCheckedTrait(grace: .seconds(10)).provideScope(for: test, testCase: nil) {
            let dir = TemporaryDirectory(prefix: "leak-probe")
            let p = try TestProcess("/bin/sh", ["-c", "cd '\(dir.path)' && exec sleep 30"])
            p.stop()
            dir.remove()
        }
    }
}
