import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_PidFile {
    let dir = TemporaryDirectory()
    var path: String { dir.appending("pids/x.pid").path }

    @Test(arguments: ["4242", "4242\n", "  4242 \n\n", "4242\r\n"])
    func upstreamBarePidFilesAreRead(text: String) throws {
        let record = try PidRecord.parse(text)
        #expect(record == PidRecord(pid: 4242))
        #expect(record.identity == nil)
    }

    @Test func identityLinesRoundTrip() throws {
        let record = PidRecord(pid: 77, startTime: 123456, executable: "/usr/bin/sleep", name: "h-1",
                               extra: ["deployment": "ci"])
        #expect(record.text == "77\nstart_time=123456\nexe=/usr/bin/sleep\nname=h-1\ndeployment=ci\n")
        #expect(try PidRecord.parse(record.text) == record)
    }

    @Test(arguments: [
        ("", "the file is empty"),
        ("   \n", "the file is empty"),
        ("abc", "the first line \"abc\" is not a positive PID"),
        ("-5", "the first line \"-5\" is not a positive PID"),
        ("0", "the first line \"0\" is not a positive PID"),
        ("12\nstart_time=soon", "start_time \"soon\" is not a number"),
        ("12\ngarbage", "line \"garbage\" is not key=value"),
    ])
    func malformedFilesNameTheProblem(text: String, reason: String) {
        #expect(throws: PidFileError.malformed(path: "f.pid", reason: reason)) {
            try PidRecord.parse(text, path: "f.pid")
        }
    }

    @Test func writeIsAtomicAndLeavesNoTemporaryFile() throws {
        try PidFile.write(PidRecord(pid: 5, startTime: 9, executable: "/x", name: "x"), to: path)
        try PidFile.write(PidRecord(pid: 6, startTime: 10, executable: "/x", name: "x"), to: path)
        #expect(try PidFile.read(path).pid == 6)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.appending("pids").path)
        #expect(files == ["x.pid"])
    }

    @Test func ownProcessVerifiesAsAlive() throws {
        let me = try #require(ProcessIdentity.of(pid: getpid()))
        try PidFile.write(PidRecord(identity: me, name: "self"), to: path)
        #expect(PidFile.verify(path) == .alive(me))
        #expect(PidFile.verify(path).isSafeToSignal)
    }

    @Test func aDifferentStartTimeIsAReusedPid() throws {
        let me = try #require(ProcessIdentity.of(pid: getpid()))
        let forged = PidRecord(pid: me.pid, startTime: me.startTime + 1, executable: me.executable, name: "x")
        try PidFile.write(forged, to: path)
        #expect(PidFile.verify(path) == .mismatch(recorded: forged, actual: me))
        #expect(!PidFile.verify(path).isSafeToSignal)
    }

    @Test func aDifferentExecutableIsAMismatch() throws {
        let me = try #require(ProcessIdentity.of(pid: getpid()))
        let forged = PidRecord(pid: me.pid, startTime: me.startTime, executable: "/usr/bin/sleep", name: "x")
        #expect(PidFile.verify(forged) == .mismatch(recorded: forged, actual: me))
    }

    @Test func aPidThatCannotExistIsDead() throws {
        try PidFile.write(PidRecord(pid: 2_000_000_000, startTime: 1, executable: "/x"), to: path)
        #expect(PidFile.verify(path) == .dead(pid: 2_000_000_000))
    }

    @Test func aBarePidFileIsNeverSafeToSignal() throws {
        try "\(getpid())".write(toFile: path.replacingOccurrences(of: "pids/", with: ""), atomically: true, encoding: .utf8)
        let verdict = PidFile.verify(path.replacingOccurrences(of: "pids/", with: ""))
        #expect(verdict == .noIdentity(pid: getpid(), alive: true))
        #expect(!verdict.isSafeToSignal)
    }

    @Test func garbageIsUnreadableNotSignalled() throws {
        try FileManager.default.createDirectory(atPath: dir.appending("pids").path, withIntermediateDirectories: true)
        try "kill me".write(toFile: path, atomically: true, encoding: .utf8)
        guard case .unreadable(let reason) = PidFile.verify(path) else {
            Issue.record("garbage must be unreadable"); return
        }
        #expect(reason.contains(path))
        #expect(PidFile.verify(dir.appending("none.pid").path) == .unreadable(
            reason: "cannot read PID file \(dir.appending("none.pid").path): no such file"))
    }

    @Test func procStatParsesCommandsWithSpacesAndParentheses() throws {
        let fields = (5...52).map(String.init).joined(separator: " ")
        let text = "123 (a b) c)) S 1 \(fields)"
        let stat = try #require(ProcStat.parse(text))
        #expect(stat.pid == 123)
        #expect(stat.command == "a b) c)")
        #expect(stat.state == "S")
        #expect(stat.parentPid == 1)
        #expect(stat.processGroup == 5)
        #expect(stat.startTime == 22)
    }
}

@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_DeploymentLock {
    let dir = TemporaryDirectory()

    @Test func aSecondGovernorIsRefusedWithTheHolderPid() throws {
        let first = try DeploymentLock.acquire(deployment: "ci", directory: dir.url)
        defer { first.release() }
        #expect(try PidFile.read(dir.appending("pids/governor.pid").path).pid == getpid())
        let error = #expect(throws: GovernorError.self) {
            try DeploymentLock.acquire(deployment: "ci", directory: dir.url)
        }
        #expect(error == .deploymentLocked(deployment: "ci", holderPid: getpid(),
                                           lockPath: dir.appending("governor.lock").path))
        #expect("\(error!)".contains("governor pid \(getpid())"))
    }

    /// `kill -9` of a governor, then `up`: the new governor said "already governed by governor pid N" of the
    /// dead one, whose last threads still held the lock's descriptor while its group leader was a zombie
    /// (seen in a fresh-clone CI run). The lock of a holder that is no longer running is waited for, briefly.
    @Test func theLockOfAGovernorThatIsDeadButStillExitingIsWaitedFor() async throws {
        let first = try DeploymentLock.acquire(deployment: "ci", directory: dir.url)
        // The PID file names a process that is not running (no such PID can exist), as after the kill.
        try PidFile.write(PidRecord(pid: Int32.max, name: "governor"), to: dir.appending("pids/governor.pid").path)
        let letGo = Task.detached { try await Task.sleep(for: .milliseconds(300)); first.release() }
        let second = try DeploymentLock.acquire(deployment: "ci", directory: dir.url)
        #expect(second.isHeld)
        second.release()
        try await letGo.value
    }

    @Test func releasingFreesTheLockAndRemovesTheGovernorPidFile() throws {
        let first = try DeploymentLock.acquire(deployment: "ci", directory: dir.url)
        first.release()
        #expect(!FileManager.default.fileExists(atPath: dir.appending("pids/governor.pid").path))
        let second = try DeploymentLock.acquire(deployment: "ci", directory: dir.url)
        #expect(second.isHeld)
        second.release()
        second.release()
    }
}
