import Foundation
import ScheduleZeroWire

// What the runner leaves in the output directory for the HTML report besides the journal: the command that
// reproduces the run (in `experiment_start`) and the governor's events of the run's window (`events.jsonl`).

extension ExperimentRunner {
    /// `szchaos run FILE --seed S --output DIR`, each word shell-quoted when it needs it.
    public static func reproduceCommand(file: String, seed: UInt64, output: String?, root: String? = nil,
                                        deploymentFile: String? = nil) -> String {
        var words = ["szchaos", "run", file, "--seed", String(seed)]
        if let output { words += ["--output", output] }
        if let root { words += ["--root", root] }
        if let deploymentFile { words += ["--file", deploymentFile] }
        return words.map(shellQuoted).joined(separator: " ")
    }

    public static func shellQuoted(_ word: String) -> String {
        let plain = word.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "-_./=:,+@%".unicodeScalars.contains($0) }
        return plain && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    func reproduceCommand() -> String {
        Self.reproduceCommand(file: experiment.file, seed: seed, output: outputDirectory)
    }

    /// Copies the lines of the deployment's `events.jsonl` from the run's start until now into the output
    /// directory's `events.jsonl` (the report's governor row). Best effort: a deployment without an event
    /// log, or one that cannot be read, leaves no file.
    func copyDeploymentEvents() async {
        guard let d = experiment.deployment, let driver = environment.deployment,
              let path = try? await driver.eventLog(d.name) else { return }
        let lines = GovernorEventsWindow.lines(ofFile: path, from: wallStart, to: Date())
        guard !lines.isEmpty else { return }
        let out = (outputDirectory as NSString).appendingPathComponent("events.jsonl")
        try? (lines.joined(separator: "\n") + "\n").write(toFile: out, atomically: true, encoding: .utf8)
    }
}

/// Lines of a governor event log (`{"time": ISO 8601, ...}` per line) within a window of wall-clock time.
public enum GovernorEventsWindow {
    nonisolated(unsafe) static let formatter: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
    nonisolated(unsafe) static let plainFormatter = ISO8601DateFormatter()
    static let lock = NSLock()

    public static func date(_ iso: String) -> Date? {
        lock.lock()
        defer { lock.unlock() }
        return formatter.date(from: iso) ?? plainFormatter.date(from: iso)
    }

    public static func lines(ofFile path: String, from: Date, to: Date) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        // Ten milliseconds of slack: the log's times have millisecond resolution.
        let lo = from.addingTimeInterval(-0.01), hi = to.addingTimeInterval(0.01)
        return text.split(separator: "\n").compactMap { line -> String? in
            guard let v = try? JSON.parse(String(line)), let t = v["time"]?.stringValue, let d = date(t) else { return nil }
            return d >= lo && d <= hi ? String(line) : nil
        }
    }
}
