import ArgumentParser
import Chaos
import Foundation

/// `szchaos report DIR...`: the HTML report of one run, or several runs compared.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write the HTML report of experiment runs: one directory -> its report.html; several -> comparison.html.",
        discussion: """
        Each DIR is an experiment's output directory (journal.jsonl; events.jsonl when the run had a deployment).
        With one DIR (and no --compare) writes DIR/report.html again. With several (or --compare) writes a comparison
        (checks, times to recovery, lost and duplicate counts side by side, and a trend plot across the runs in the
        order given) to --output (default: comparison.html in the current directory). Self-contained HTML:
        inline CSS and SVG, nothing fetched. Exit status 0 written, 1 a directory without a journal or an
        unwritable output, 2 usage.
        """
    )
    @Argument(help: "Experiment output directories, in the order to compare them.") var directories: [String]
    @Option(help: "Where to write the comparison (default: ./comparison.html).") var output: String?
    @Flag(help: "Compare even a single run (writes the comparison, not report.html).") var compare = false

    func validate() throws {
        if directories.isEmpty { throw ValidationError("szchaos report needs at least one experiment output directory") }
    }

    func run() throws {
        do {
            if directories.count == 1 && !compare && output == nil {
                print("report: \(try HTMLReport.write(directory: directories[0]))")
            } else {
                print("comparison: \(try ComparisonReport.write(directories: directories, output: output))")
            }
        } catch {
            throw Failure("szchaos report: \(error)")
        }
    }
}
