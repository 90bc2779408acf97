import ArgumentParser
import Chaos
import Foundation
import ScheduleZeroWire

/// `szchaos conform`: the wire-conformance catalogue against a live peer (the work is in `ConformanceProbe`).
struct Conform: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a live ScheduleZero handler or server against the wire protocol.",
        discussion: """
        Runs the catalogue of wire checks (docs/CHAOS.md, "Conformance probes") against ENDPOINT, each on a fresh
        socket: ping shape, error texts, malformed, multipart, empty, oversized and non-UTF-8 requests, the reply
        shape; for a server also register validation, re-registration and report_status (its probe id is
        reported offline at the end). Exit status 0 when nothing at error severity was found, 1 otherwise, 2 usage.
        """
    )
    @Argument(help: "The peer's endpoint, e.g. tcp://127.0.0.1:4245.") var endpoint: String
    @Option(help: "handler or server.") var role: String
    @Flag(help: "Print one JSON record instead of a table.") var json = false
    @Option(help: "Also write JUnit XML (one testcase per check) to this file.") var junit: String?
    @Option(help: "How long each check waits for a reply (default 2s).") var timeout: String = "2s"

    func validate() throws {
        guard ConformanceRole(rawValue: role) != nil else { throw ValidationError("--role takes handler or server, not '\(role)'") }
        _ = try unitDuration(timeout, option: "--timeout")
        guard ["tcp://", "ipc://", "inproc://"].contains(where: endpoint.hasPrefix) else {
            throw ValidationError("ENDPOINT must start with tcp://, ipc:// or inproc://, not '\(endpoint)'")
        }
    }

    func run() throws {
        let report: ConformanceReport
        do {
            let probe = try ConformanceProbe(endpoint: endpoint, role: ConformanceRole(rawValue: role)!, timeout: DurationText.value(timeout)!)
            report = probe.run()
        } catch { throw Failure("szchaos conform: \(error)") }
        if let junit {
            do { try Data(report.junit().utf8).write(to: URL(fileURLWithPath: junit)) } catch {
                throw Failure("szchaos conform: cannot write \(junit): \(error)")
            }
        }
        print(json ? JSON.string(report.json) : report.table, terminator: json ? "\n" : "")
        fflush(nil)
        if !report.passed { throw ExitCode(1) }
    }
}
