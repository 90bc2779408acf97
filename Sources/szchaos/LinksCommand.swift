import ArgumentParser
import Chaos
import Foundation
import Governor
import Interposer
import ScheduleZeroWire

/// `szchaos links`: what each interposed link of a deployment saw, from its journal (`links/<name>.jsonl`).
struct Links: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise the interposed links of a deployment: requests, lost, late, duplicate executions, latency.",
        discussion: """
        Reads <root>/<deployment>/links/<name>.jsonl, which the governor's interposers write (`interpose: true` in the
        deployment file). By default each journal from its interposer's last start (the deployment's current run);
        --all reads the whole file. A running interposer is asked to write what it holds first, so every message it
        forwarded before this command is counted. A duplicate execution is a request that reached the handler again after an earlier
        copy ran there without its reply reaching the requester.
        """
    )
    @OptionGroup var deployment: DeploymentOptions
    @Argument(help: "Link names or globs (default: every link).") var names: [String] = []
    @Flag(help: "Print one JSON record instead of a table.") var json = false
    @Flag(help: "Read each journal whole, not from its interposer's last start.") var all = false

    func run() throws {
        let paths = try deployment.paths()
        let journals = LinkSummary.journals(inDeployment: paths.directory)
        var chosen = journals.keys.sorted()
        if !names.isEmpty {
            chosen = chosen.filter { link in names.contains { TargetSelector.matches(link, $0) } }
            if let missing = names.first(where: { n in !journals.keys.contains { TargetSelector.matches($0, n) } }) {
                let known = journals.keys.sorted().joined(separator: ", ")
                FileHandle.standardError.write(Data("szchaos links: no link matches \"\(missing)\" (links: \(known.isEmpty ? "none" : known))\n".utf8))
                throw ExitCode(1)
            }
        }
        guard !chosen.isEmpty else {
            FileHandle.standardError.write(Data(("szchaos links: deployment \"\(paths.name)\" has no interposed link "
                + "(no journal in \(paths.directory)/links): set `interpose: true` in its deployment file\n").utf8))
            throw ExitCode(1)
        }
        // A running interposer writes its journal when idle or every 100 ms: asked to flush first, what it
        // forwarded before this command is in the summary. One that does not answer (stopped, or gone) has
        // nothing buffered that it could still write.
        for link in chosen {
            _ = ControlClient.call(paths.linkControlEndpoint(link), "flush", timeout: .seconds(1))
        }
        let summaries = chosen.map { LinkSummary.read(journals[$0]!, link: $0, lastStart: !all) }
        if json {
            print(JSON.string(.object(["deployment": .string(paths.name), "root": .string(paths.root), "success": true,
                                        "links": .array(summaries.map(\.json))])))
        } else {
            print(LinkSummary.table(summaries))
        }
    }
}
