import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

/// Leak checks need a process of their own: tests run in parallel, so /proc/self/fd of the test runner
/// moves with other tests. Exit tests run their body in a fresh child process.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_Stress {
    @Test(.tags(.slow)) func slow_thousandSpawnWaitCyclesLeakNothingAndNeverDeadlock() async throws {
        let report = await oneExitTestAtATime { await #expect(processExitsWith: .success) {
            exit(await StressBodies.spawnWaitCycles(count: 1000))
        } }
        print(report)
        #expect(report.contains("cycles=1000"), "\(report)")
    }

    /// The same through clone3 into a cgroup (ProcessTree): each cycle also waits for `populated 0` and
    /// removes the group. Skipped where no cgroup can be made.
    @Test(.tags(.slow)) func slow_thousandCgroupSpawnWaitCyclesLeakNothingAndNeverDeadlock() async throws {
        let report = await oneExitTestAtATime { await #expect(processExitsWith: .success) {
            exit(await StressBodies.cgroupSpawnWaitCycles(count: 1000))
        } }
        print(report)
        #expect(report.contains("cycles=1000") || report.contains("no cgroup"), "\(report)")
    }

    @Test func fiftyGovernorCyclesLeakNoFileDescriptor() async throws {
        let report = await oneExitTestAtATime { await #expect(processExitsWith: .success) {
            exit(await StressBodies.governorCycles(count: 50))
        } }
        print(report)
        #expect(report.contains("cycles=50"), "\(report)")
    }
}

enum StressBodies {
    /// `spawnWaitCycles` with every child in `<a test deployment group>/p`, made and removed per cycle.
    static func cgroupSpawnWaitCycles(count: Int) async -> Int32 {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        guard case .cgroup(let group) = ProcessTree.prepare(name: "stress", folder: dir.path, environment: [:]) else {
            ExitTestReport.line("no cgroup on this machine: skipped")
            return 0
        }
        defer { ProcessTree.removeDeploymentGroup(group) }
        let code = await spawnWaitCycles(count: count, cgroup: ProcessCgroup(path: group + "/p"))
        guard !FileManager.default.fileExists(atPath: group + "/p") else {
            ExitTestReport.line("the process cgroup was not removed after the last cycle"); return 1
        }
        return code
    }

    /// Spawns /bin/true `count` times, each awaited with a deadline. Exit code 0 on success.
    static func spawnWaitCycles(count: Int, cgroup: ProcessCgroup? = nil) async -> Int32 {
        // Warm up: the runtime opens its timer/event fds lazily on first use; they are not leaks.
        for _ in 0..<10 {
            guard let child = try? Spawner.spawn(SpawnRequest(executable: "/bin/true", cgroup: cgroup)),
                  await child.waitForExit(timeout: .seconds(30)) != nil else { return 3 }
        }
        let fdsBefore = LiveProcess.leakableDescriptors()
        let threadsBefore = LiveProcess.threadCount()
        var latencies: [Double] = []
        let started = ContinuousClock.now
        for i in 0..<count {
            let t0 = ContinuousClock.now
            guard let child = try? Spawner.spawn(SpawnRequest(executable: "/bin/true", cgroup: cgroup)) else {
                ExitTestReport.line("spawn failed at cycle \(i)"); return 3
            }
            guard await child.waitForExit(timeout: .seconds(30)) == .exited(code: 0) else {
                ExitTestReport.line("cycle \(i): no exit within 30 s (deadlock?)"); return 2
            }
            latencies.append((ContinuousClock.now - t0).inMilliseconds)
        }
        let total = (ContinuousClock.now - started).inMilliseconds
        // Monitor threads end right after their reap; give them a moment to be gone from /proc.
        let deadline = ContinuousClock.now + .seconds(10)
        while LiveProcess.threadCount() > threadsBefore + 2, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let settleBy = ContinuousClock.now + .seconds(10)
        while Set(LiveProcess.leakableDescriptors().keys) != Set(fdsBefore.keys) && ContinuousClock.now < settleBy { usleep(5_000) }
        let fdsAfter = LiveProcess.leakableDescriptors()
        let threadsAfter = LiveProcess.threadCount()
        latencies.sort()
        ExitTestReport.line(String(format: "cycles=%d total_ms=%.0f per_cycle_median_ms=%.3f p99_ms=%.3f max_ms=%.3f fds_before=%d fds_after=%d threads_before=%d threads_after=%d",
                     count, total, latencies[count / 2], latencies[count * 99 / 100], latencies.last!,
                     fdsBefore.count, fdsAfter.count, threadsBefore, threadsAfter))
        if Set(fdsAfter.keys) != Set(fdsBefore.keys) { ExitTestReport.line("fd leak: \(LiveProcess.descriptorChange(from: fdsBefore, to: fdsAfter))"); return 1 }
        if threadsAfter > threadsBefore + 2 { ExitTestReport.line("thread leak: \(threadsBefore) -> \(threadsAfter)"); return 1 }
        return 0
    }

    /// Starts and stops a two-process deployment `count` times; checks fds before and after.
    static func governorCycles(count: Int) async -> Int32 {
        // Progress on standard error, unbuffered: if the child ever stalls or ends early, the parent's
        // report shows how far it got.
        func progress(_ s: String) { ExitTestReport.line("governor-cycles: \(s)") }
        progress("start")
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let tracker = ProcessTracker()
        defer { tracker.killAll() }
        let options = GovernorOptions(eventObserver: { e in if e.event == .spawned, let p = e.pid { tracker.track(p) } })
        guard let gov = try? ProcessGovernor(deployment: Deployment(name: "s", handlers: [
            Harness.sleeper("h-1"), Harness.sleeper("h-2")]), directory: dir.url, options: options) else { return 3 }
        // One warm-up cycle opens what stays open (events.jsonl, lazily created runtime fds).
        do { try await gov.start() } catch { progress("warm-up: \(error)"); return 3 }
        await gov.stop()
        progress("warm-up cycle done")
        let fdsBefore = LiveProcess.leakableDescriptors()
        let started = ContinuousClock.now
        for i in 0..<count {
            do { try await gov.start() } catch { progress("cycle \(i): \(error)"); return 3 }
            await gov.stop()
            if !tracker.alive.isEmpty { progress("cycle \(i): survivors \(tracker.alive)"); return 1 }
            if i % 10 == 9 { progress("\(i + 1) cycles") }
        }
        let total = (ContinuousClock.now - started).inMilliseconds
        // Monitor threads close a child's pidfd just after they reap it, a moment after `stop` returns:
        // let the count settle, with a deadline, before comparing.
        let settleBy = ContinuousClock.now + .seconds(10)
        while Set(LiveProcess.leakableDescriptors().keys) != Set(fdsBefore.keys) && ContinuousClock.now < settleBy { usleep(5_000) }
        let fdsAfter = LiveProcess.leakableDescriptors()
        let line = String(format: "cycles=%d total_ms=%.0f per_cycle_ms=%.2f fds_before=%d fds_after=%d",
                          count, total, total / Double(count), fdsBefore.count, fdsAfter.count)
        progress(line)
        if Set(fdsAfter.keys) != Set(fdsBefore.keys) { progress("fd leak: \(LiveProcess.descriptorChange(from: fdsBefore, to: fdsAfter))") }
        return Set(fdsAfter.keys) == Set(fdsBefore.keys) ? 0 : 1
    }
}
