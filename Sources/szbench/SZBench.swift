import ArgumentParser

/// Benchmarks that print ratios against a baseline measured in the same run. Build in release mode
/// (`scripts/bench.sh` does). Goals are printed next to the figures; nothing here asserts a time.
@main
struct SZBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "szbench",
        abstract: "Measure the harness against raw libzmq and bare-process floors, in one run.",
        subcommands: [ZMQBench.self, MockBench.self, GovernorBench.self, InterposerBench.self, ManagersBench.self]
    )
}

