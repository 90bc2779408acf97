import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor
import ScheduleZeroWire

/// Issue 11, finding 7: values that were accepted (and failed later, or never) or that crashed the loader.
/// Each is refused at load with `file:line:col: field: message`, before anything starts.
@Suite(.tags(.regression, .unit, .governor), .leakChecked)
struct regression_unit_governor_FileLimits {
    func parse(_ yaml: String, root: String = "/d") throws(DeploymentFileError) -> Deployment {
        try DeploymentFile.parse(yaml: yaml, file: "t.yaml", defaultName: "t", deploymentsRoot: root)
    }

    func error(_ yaml: String, root: String = "/d") -> DeploymentFileError? {
        do { _ = try parse(yaml, root: root); return nil } catch { return error }
    }

    /// `stop_timeout: 999999999999999999999m` trapped ("Overflow in multiplication") in Duration.milliseconds.
    @Test func hugeDurationIsALocatedErrorNotACrash() throws {
        let e = try #require(error("""
            handlers:
              - id: h
                command: [/bin/true]
                stop_timeout: 999999999999999999999m
            """))
        #expect(e.description == "t.yaml:4:19: handlers[0].stop_timeout: must be at most 7 days (604800s) (got \"999999999999999999999m\")")
        #expect(error("defaults: {restart: {backoff: {max: 1e300s}}}\nhandlers: []\n")?.field == "defaults.restart.backoff.max")
        #expect(error("defaults: {stop_timeout: 7d}\nhandlers: []\n")?.message.contains("must be a duration") == true)
        #expect(try parse("defaults: {stop_timeout: 168h}\nhandlers: []\n").name == "t", "exactly the maximum is accepted")
        // Every other parser of durations goes through the same rule.
        #expect(DurationText.parse("999999999999999999999m") == .failure(.tooLong))
        #expect(DurationText.parse("1e400s") == .failure(.tooLong))
        #expect(DurationText.value("999999999999999999999m") == nil)
        #expect(DurationText.parse("250ms") == .success(.milliseconds(250)))
        #expect(DurationText.parse("1.5s") == .success(.milliseconds(1500)))
        #expect(DurationText.parse("250") == .failure(.bareNumber))
        #expect(DurationText.parse("ms") == .failure(.malformed))
    }

    /// `port_base: 65534` with 3 replicas gave port 65536, and the processes started.
    @Test func portsOutsideTheTCPRangeAreRefused() throws {
        let e = try #require(error("""
            handlers:
              - id: h
                replicas: 3
                port_base: 65534
                endpoint: "tcp://127.0.0.1:${PORT}"
                command: [/bin/true]
            """))
        #expect(e.description == "t.yaml:4:16: handlers[0].port_base: ports must be in 1...65535: port_base 65534 with 3 replica(s) gives ports up to 65536")
        #expect(try parse("handlers:\n  - {id: h, replicas: 2, port_base: 65534, command: [/bin/true]}\n").handlers.count == 2)
        let direct = try #require(error("server: {command: [/bin/true], endpoint: \"tcp://127.0.0.1:70000\"}\n"))
        #expect(direct.field == "server.endpoint" && direct.line == 1)
        #expect(direct.message == "port 70000 of tcp://127.0.0.1:70000 is outside 1...65535")
    }

    /// An ipc path longer than sun_path holds was accepted and failed only after the 10 s readiness wait.
    @Test func ipcPathsLongerThanSunPathAreRefusedAtLoad() throws {
        let root = "/tmp/" + String(repeating: "r", count: 80)
        let e = try #require(error("""
            handlers:
              - id: handler-with-a-long-name
                endpoint: "ipc://${RUN_DIR}/${NAME}.sock"
                command: [/bin/true]
            """, root: root))
        #expect(e.line == 3 && e.column == 15 && e.field == "handlers[0].endpoint")
        #expect(e.message.contains("ipc://\(root)/t/run/handler-with-a-long-name.sock is 121 bytes"), "\(e)")
        #expect(e.message.contains("at most 107"))
        let ping = try #require(error("server: {command: [/bin/true], readiness: {ping: \"ipc://\(root)/\(String(repeating: "p", count: 30))\"}}\n"))
        #expect(ping.field == "server.readiness.ping")
        let control = try #require(error("""
            handlers:
              - id: h
                command: ["/bin/szmock", "handler", "--control", "ipc://${RUN_DIR}/${NAME}-with-a-much-longer-name.control"]
            """, root: root))
        #expect(control.field == "handlers[0].command[3]" && control.line == 3 && control.message.contains("at most 107"), "\(control)")
        #expect(EndpointLimits.problem("ipc://" + String(repeating: "a", count: 107)) == nil)
        #expect(EndpointLimits.problem("ipc://" + String(repeating: "a", count: 108)) != nil)
    }

    /// 10,000 replicas would really have been spawned.
    @Test func processCeilingIsEnforcedAndConfigurable() throws {
        let e = try #require(error("""
            server: {command: [/bin/true]}
            handlers:
              - id: a
                replicas: 999
                command: [/bin/true]
              - id: b
                replicas: 10000
                command: [/bin/true]
            """))
        #expect(e.description.hasPrefix("t.yaml:7:15: handlers[1].replicas: would make 11000 processes, more than max_processes (1000, the default)"), "\(e)")
        #expect(try parse("max_processes: 1\nhandlers:\n  - {id: a, command: [/bin/true]}\n").maxProcesses == 1)
        #expect(error("max_processes: 1\nhandlers:\n  - {id: a, replicas: 2, command: [/bin/true]}\n")?.line == 3)
        #expect(try parse("max_processes: 2000\nhandlers:\n  - {id: a, replicas: 1500, command: [/bin/true]}\n").handlers.count == 1500)
        #expect(error("max_processes: 0\n")?.field == "max_processes")
        #expect(error("handlers:\n  - {id: a, replicas: 9223372036854775807, command: [/bin/true]}\n")?.field == "handlers[0].replicas",
                "no overflow")
        #expect(error("handlers:\n  - {id: a, port_base: 9223372036854775807, command: [/bin/true]}\n")?.field == "handlers[0].port_base",
                "no overflow")
        #expect(throws: DeploymentFileError.self) {
            _ = try DeploymentFile.parse(yaml: "handlers:\n  - {id: a, replicas: 2, command: [/bin/true]}\n", file: "t.yaml",
                                         defaultName: "t", deploymentsRoot: "/d", replicas: ["a": Int.max])
        }
        #expect(error("max_processes: 1000000\n")?.message == "must be at most 100000 (got 1000000)")
    }

    /// `within: 0ms` failed only at start, with neither file nor line; so did other zero timeouts.
    @Test func zeroTimeoutsAndIntervalsAreLocatedErrors() throws {
        let within = try #require(error("server: {command: [/bin/true], readiness: {ping: \"tcp://127.0.0.1:9\", within: 0ms}}\n"))
        #expect(within.description == "t.yaml:1:79: server.readiness.within: must be longer than 0 (got \"0ms\")", "\(within)")
        #expect(error("server: {command: [/bin/true], readiness: {ping: \"tcp://127.0.0.1:9\", timeout: 0}}\n")?.field == "server.readiness.timeout")
        #expect(error("server: {command: [/bin/true], readiness: {ready_file: /tmp/x, timeout: 0s}}\n")?.field == "server.readiness.timeout")
        #expect(error("defaults: {stop_timeout: 0s}\n")?.field == "defaults.stop_timeout")
        #expect(error("handlers:\n  - {id: h, command: [/bin/true], stop_timeout: 0}\n")?.field == "handlers[0].stop_timeout")
        #expect(error("defaults: {restart: {window: 0s}}\n")?.field == "defaults.restart.window")
        #expect(error("defaults: {restart: {reset_after: 0s, backoff: {initial: 0ms, max: 0ms}}}\n") == nil,
                "zero backoff (restart at once) and reset_after stay allowed")
    }

    /// A duplicate key said nothing about where it was.
    @Test func duplicateKeyNamesTheLinesOfBothOccurrences() throws {
        let e = try #require(error("""
            deployment: t
            handlers:
              - id: h
                command: [/bin/true]
                stop_timeout: 1s
                readiness: none
                stop_timeout: 2s
            """))
        #expect(e.description == "t.yaml:7:5: stop_timeout: given twice in one mapping (at line 5 and line 7)", "\(e)")
        let flow = try #require(error("server: {command: [/bin/true], \"command\": [/bin/false]}\n"))
        #expect(flow.message == "given twice in one mapping (at line 1 and line 1)" && flow.field == "command", "\(flow)")
    }

    /// A file that is not UTF-8 was only "cannot read the file".
    @Test func nonUTF8FileNamesTheOffsetAndLineOfTheFirstBadByte() throws {
        let dir = TemporaryDirectory(prefix: "szlim")
        var bytes = Array("deployment: t\nhandlers:\n  - id: h\u{E9}\n".utf8)
        bytes.append(contentsOf: [0x20, 0x20, 0x20, 0x20, 0x63, 0xFF, 0x0A])  // "    c\xFF\n"
        let path = dir.file("bad.yaml")
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        do {
            _ = try DeploymentFile.load(path: path, deploymentsRoot: dir.file("d"))
            Issue.record("a non-UTF-8 file was accepted")
        } catch {
            #expect(error.description == "bad.yaml:4:6: not UTF-8: byte 0xFF at offset 41 (line 4, column 6); the file must be UTF-8 text", "\(error)")
        }
    }
}

/// Issue 11, finding 5: logs grew without bound. The rotation is configured per process and under
/// `defaults` (sizes need a unit), and `logs` reads across the rotated files.
@Suite(.tags(.regression, .unit, .governor), .leakChecked)
struct regression_unit_governor_LogRotation {
    func parse(_ yaml: String) throws(DeploymentFileError) -> Deployment {
        try DeploymentFile.parse(yaml: yaml, file: "t.yaml", defaultName: "t", deploymentsRoot: "/d")
    }

    @Test func rotationIsConfiguredPerProcessAndUnderDefaults() throws {
        let d = try parse("""
            defaults: {log: {max_size: 2MiB}}
            server: {command: [/bin/true]}
            handlers:
              - {id: a, command: [/bin/true], log: {backups: 3}}
              - {id: b, command: [/bin/true], log: {max_size: 512KiB, backups: 0}}
            """)
        #expect(d.server?.log == LogRotation(maxSize: 2 << 20, backups: 10), "backups from supervisord's default")
        #expect(d.handlers[0].log == LogRotation(maxSize: 2 << 20, backups: 3))
        #expect(d.handlers[1].log == LogRotation(maxSize: 512 << 10, backups: 0))
        #expect(try parse("handlers:\n  - {id: a, command: [/bin/true]}\n").handlers[0].log == LogRotation(maxSize: 50 << 20, backups: 10))
        do {
            _ = try parse("handlers:\n  - {id: a, command: [/bin/true], log: {max_size: 1048576}}\n")
            Issue.record("a bare number was accepted as a size")
        } catch {
            #expect(error.description == "t.yaml:2:51: handlers[0].log.max_size: must be a size with a unit, like 50MiB, 512KiB or 1GiB (got \"1048576\")", "\(error)")
        }
        #expect(throws: DeploymentFileError.self) { try parse("defaults: {log: {max_size: 1KiB}}\n") }
        #expect(throws: DeploymentFileError.self) { try parse("defaults: {log: {backups: -1}}\n") }
        #expect(throws: DeploymentFileError.self) { try parse("defaults: {log: {size: 1MiB}}\n") }
        #expect(LogRotation.parseSize("1.5KiB") == 1536 && LogRotation.parseSize("2MB") == 2_000_000)
    }

    @Test func tailReadsAcrossTheRotationNewestLast() throws {
        let dir = TemporaryDirectory(prefix: "szrot")
        let log = dir.file("p.log")
        try "c1\nc2\n".write(toFile: log, atomically: false, encoding: .utf8)
        try "b1\nb2\nb3\n".write(toFile: log + ".1", atomically: false, encoding: .utf8)
        try "a1\na2\n".write(toFile: log + ".2", atomically: false, encoding: .utf8)
        #expect(RotatedLog.tail(of: log, lines: 2) == ["c1", "c2"])
        #expect(RotatedLog.tail(of: log, lines: 4) == ["b2", "b3", "c1", "c2"])
        #expect(RotatedLog.tail(of: log, lines: 100) == ["a1", "a2", "b1", "b2", "b3", "c1", "c2"])
        #expect(RotatedLog.files(of: log) == [log, log + ".1", log + ".2"])
        let long = (0..<30_000).map { "line \($0)" }.joined(separator: "\n") + "\n"
        try long.write(toFile: log, atomically: false, encoding: .utf8)
        #expect(RotatedLog.tail(of: log, lines: 20_000).first == "line 10000", "more than one 64 KiB block")
    }
}

@Suite(.tags(.regression, .unit, .governor), .leakChecked)
struct regression_unit_governor_BareNumberDurations {
    /// A bare number once meant milliseconds in deployment files and seconds in experiment files: `stop_timeout: 2`
    /// was 2 ms, an experiment's `duration: 2` 2 s. Refused now, saying why and what to write.
    @Test func aBareNumberIsRefusedInADeploymentFile() throws {
        do {
            _ = try DeploymentFile.parse(yaml: "defaults: {stop_timeout: 2}\nhandlers: []\n", file: "t.yaml", defaultName: "t", deploymentsRoot: "/d")
            Issue.record("stop_timeout: 2 was accepted")
        } catch {
            #expect(error.description == "t.yaml:1:26: defaults.stop_timeout: must be a duration with a unit: 250ms, 2s, 1m or 1h: a number without a unit is refused (got \"2\"; write 2ms or 2s)", "\(error)")
        }
    }
}
