import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

/// The log pump with real children (Spawner with `logRotation`): rotation keeps lines whole and the kept
/// count, one thread serves every child, and nothing is left open once a child's pipe is drained.
@Suite(.tags(.integration, .governor), .leakChecked)
struct integration_governor_LogPump {
    let dir = TemporaryDirectory(prefix: "szpump")
    let tracker = ProcessTracker()

    func run(_ script: String, log: String, rotation: LogRotation) async throws {
        let child = try Spawner.spawn(SpawnRequest(executable: "/bin/sh", arguments: ["-c", script],
                                                   logPath: dir.file(log), logRotation: rotation))
        tracker.track(child.pid)
        #expect(await child.waitForExit(timeout: .seconds(30)) == .exited(code: 0))
        #expect(await LogPump.shared.waitDrained([dir.file(log)], timeout: .seconds(10)), "the pipe reached EOF")
    }

    func lines(_ name: String) -> [Substring] {
        ((try? String(contentsOfFile: dir.file(name), encoding: .utf8)) ?? "").split(separator: "\n", omittingEmptySubsequences: false)
    }

    @Test func rotationKeepsLinesWholeAndTheKeptCount() async throws {
        defer { tracker.killAll() }
        // 200 lines of 100 bytes (99 + newline) = 20000 bytes into 4 KiB files, 2 kept.
        let script = "i=0; while [ $i -lt 200 ]; do printf '%03d%096d\\n' $i 0; i=$((i+1)); done"
        try await run(script, log: "p.log", rotation: LogRotation(maxSize: 4096, backups: 2))
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("p.log") })
        #expect(names == ["p.log", "p.log.1", "p.log.2"], "\(names)")
        for name in names {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: dir.file(name))[.size] as? Int)
            #expect(size <= 4096 && size % 100 == 0, "\(name): \(size) bytes, whole lines only")
        }
        #expect(RotatedLog.tail(of: dir.file("p.log"), lines: 1) == [String(format: "199%096d", 0)])
        let all = RotatedLog.tail(of: dir.file("p.log"), lines: 1000)
        #expect(all.count > 80 && all.count < 130, "about 3 x 40 lines kept: \(all.count)")
        #expect(all == all.sorted(), "in order across the files")
    }

    @Test func noBackupsTruncatesInPlace() async throws {
        defer { tracker.killAll() }
        try await run("i=0; while [ $i -lt 100 ]; do echo line-$i-........................................; i=$((i+1)); done",
                      log: "t.log", rotation: LogRotation(maxSize: 4096, backups: 0))
        let size = try #require(try FileManager.default.attributesOfItem(atPath: dir.file("t.log"))[.size] as? Int)
        #expect(size > 0 && size <= 4096)
        #expect(!FileManager.default.fileExists(atPath: dir.file("t.log.1")))
        #expect(lines("t.log").dropLast().last?.hasPrefix("line-99-") == true)
    }

    @Test func oneThreadServesEveryChild() async throws {
        defer { tracker.killAll() }
        var children: [ChildProcess] = []
        for i in 0..<8 {
            let child = try Spawner.spawn(SpawnRequest(executable: "/bin/sh", arguments: ["-c", "echo hello-\(i); exec sleep 30"],
                                                       logPath: dir.file("c\(i).log"), logRotation: LogRotation()))
            tracker.track(child.pid)
            children.append(child)
        }
        try await waitUntil("every child's line in its log") {
            (0..<8).allSatisfy { lines("c\($0).log").first == "hello-\($0)" }
        }
        let pumps = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).filter {
            (try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8))?.hasPrefix("log-pump") == true
        }
        #expect(pumps.count == 1, "one log-pump thread for 8 children")
        let paths = Set((0..<8).map { dir.file("c\($0).log") })
        #expect(LogPump.shared.openPipes(for: paths) == 8)
        for c in children { c.signalGroup(SIGKILL) }
        for c in children { _ = await c.waitForExit(timeout: .seconds(30)) }
        #expect(await LogPump.shared.waitDrained(paths, timeout: .seconds(10)))
        #expect(LogPump.shared.openPipes(for: paths) == 0, "read ends and files closed once drained")
    }
}
