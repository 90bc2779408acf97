import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
#if canImport(Glibc)
import Glibc
#endif

/// Issue 11, findings 3 and 4: nothing outside the deployment folder is written or deleted (symbolic links
/// are refused, ready files stay inside), and a process cannot take the governor's own file names.
@Suite(.tags(.regression, .integration, .governor), .leakChecked)
struct regression_integration_governor_Containment {
    /// A deployment root with an `outside` folder next to it holding files that must survive.
    struct Layout {
        let dir = TemporaryDirectory(prefix: "szc")
        var root: String { dir.file("root") }
        var deployment: String { root + "/d" }
        var outside: String { dir.file("outside") }

        init() throws {
            try FileManager.default.createDirectory(atPath: root + "/d", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir.file("outside"), withIntermediateDirectories: true)
            try "4242\n".write(toFile: dir.file("outside") + "/victim.pid", atomically: true, encoding: .utf8)
            try "keep me\n".write(toFile: dir.file("outside") + "/keep.txt", atomically: true, encoding: .utf8)
        }

        var outsideFiles: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: outside)) ?? []).sorted() }
        var locator: DeploymentLocator { get throws { try DeploymentLocator(deployment: "d", root: root) } }
    }

    /// `pids/` a symbolic link to another folder: PID files were written into it, and `up`/`down` removed
    /// every `*.pid` there.
    @Test func symlinkedPidsFolderIsRefusedAndItsTargetUntouched() async throws {
        let l = try Layout()
        try FileManager.default.createSymbolicLink(atPath: l.deployment + "/pids", withDestinationPath: l.outside)
        let acquire = #expect(throws: (any Error).self) {
            let lock = try DeploymentLock.acquire(deployment: "d", directory: URL(fileURLWithPath: l.deployment))
            lock.release()
        }
        #expect("\(acquire.map { "\($0)" } ?? "")".contains("\(l.deployment)/pids"), "\(String(describing: acquire))")
        #expect("\(acquire.map { "\($0)" } ?? "")".contains("symbolic link"), "\(String(describing: acquire))")
        let locator = try l.locator
        await #expect(throws: (any Error).self) { _ = try await GovernorOffline.down(locator, stopTimeout: .seconds(1)) }
        #expect(l.outsideFiles == ["keep.txt", "victim.pid"], "nothing written or removed outside: \(l.outsideFiles)")
    }

    /// `governor.lock` a symbolic link: the lock was opened (and created) through it.
    @Test func symlinkedLockFileIsNeverOpenedThrough() throws {
        let l = try Layout()
        try FileManager.default.createSymbolicLink(atPath: l.deployment + "/governor.lock", withDestinationPath: l.outside + "/made.lock")
        let error = #expect(throws: (any Error).self) {
            let lock = try DeploymentLock.acquire(deployment: "d", directory: URL(fileURLWithPath: l.deployment))
            lock.release()
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("governor.lock"), "\(String(describing: error))")
        #expect(l.outsideFiles == ["keep.txt", "victim.pid"], "no lock file made outside: \(l.outsideFiles)")
    }

    /// The deployment folder itself a symbolic link.
    @Test func symlinkedDeploymentFolderIsRefused() throws {
        let l = try Layout()
        try FileManager.default.createSymbolicLink(atPath: l.root + "/e", withDestinationPath: l.outside)
        let error = #expect(throws: (any Error).self) {
            let lock = try DeploymentLock.acquire(deployment: "e", directory: URL(fileURLWithPath: l.root + "/e"))
            lock.release()
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("\(l.root)/e: it is a symbolic link"), "\(String(describing: error))")
        #expect(l.outsideFiles == ["keep.txt", "victim.pid"], "\(l.outsideFiles)")
    }

    /// `ready_file:` is unlinked before each start wherever it points: outside the folder it is a load error.
    @Test func readyFileOutsideTheDeploymentFolderIsALoadError() throws {
        let l = try Layout()
        let yaml = """
            deployment: d
            handlers:
              - id: h
                command: ["/bin/sleep", "300"]
                readiness: {ready_file: "\(l.outside)/keep.txt", timeout: 2s}
            """
        let error = #expect(throws: DeploymentFileError.self) {
            _ = try DeploymentFile.parse(yaml: yaml, file: "d.yaml", defaultName: "d", deploymentsRoot: l.root)
        }
        #expect(error?.line == 5, "\(String(describing: error))")
        #expect(error?.field == "handlers[0].readiness.ready_file", "\(String(describing: error))")
        #expect(error?.description.contains("outside the deployment folder") == true, "\(String(describing: error))")
        // `..` does not get out either; a path under ${RUN_DIR} is fine.
        let dotdot = yaml.replacingOccurrences(of: "\(l.outside)/keep.txt", with: "${RUN_DIR}/../../outside/keep.txt")
        #expect(throws: DeploymentFileError.self) {
            _ = try DeploymentFile.parse(yaml: dotdot, file: "d.yaml", defaultName: "d", deploymentsRoot: l.root)
        }
        let inside = yaml.replacingOccurrences(of: "\(l.outside)/keep.txt", with: "${RUN_DIR}/h.ready")
        _ = try DeploymentFile.parse(yaml: inside, file: "d.yaml", defaultName: "d", deploymentsRoot: l.root)
    }

    /// A handler named `governor` overwrote pids/governor.pid (and was leaked once the governor was killed).
    @Test func handlerNamedGovernorIsRefusedAtLoadAndOnAdd() async throws {
        let l = try Layout()
        let yaml = """
            deployment: d
            handlers:
              - id: h
                command: ["/bin/sleep", "300"]
              - id: governor
                command: ["/bin/sleep", "300"]
            """
        let error = #expect(throws: DeploymentFileError.self) {
            _ = try DeploymentFile.parse(yaml: yaml, file: "d.yaml", defaultName: "d", deploymentsRoot: l.root)
        }
        #expect(error.map { "\($0)" }?.hasPrefix("d.yaml:5:") == true, "\(String(describing: error))")
        #expect(error?.description.contains("reserved") == true, "\(String(describing: error))")
        let gov = try ProcessGovernor(deployment: Deployment(name: "d"), directory: URL(fileURLWithPath: l.deployment))
        await #expect(throws: (any Error).self) {
            try await gov.addHandler(HandlerConfig(id: "governor", executable: "/bin/sleep", arguments: ["300"]))
        }
        #expect(!FileManager.default.fileExists(atPath: l.deployment + "/pids/governor.pid"))
        await gov.stop()
    }
}
