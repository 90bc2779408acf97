// PID files: `<deploymentDir>/pids/<name>.pid`.
//
// Format (first line is what upstream ScheduleZero writes and reads; the rest is ours):
//     12345
//     start_time=987654
//     exe=/usr/bin/sleep
//     name=h-1
// Readers strip white space around the PID (upstream writes it with and without a newline) and accept a
// bare-PID file. Written atomically: a temporary file in the same folder, then rename(2).
// `verify` answers "is this the very process the file was written for?", which the governor's
// reconciliation and the chaos tool ask before they signal anything: only `.alive` allows a signal.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public struct PidRecord: Sendable, Hashable {
    public var pid: pid_t
    public var startTime: UInt64?
    public var executable: String?
    public var name: String?
    /// Other key=value lines, kept as read.
    public var extra: [String: String]

    public init(pid: pid_t, startTime: UInt64? = nil, executable: String? = nil, name: String? = nil,
                extra: [String: String] = [:]) {
        self.pid = pid
        self.startTime = startTime
        self.executable = executable
        self.name = name
        self.extra = extra
    }

    /// A record for a live identity.
    public init(identity: ProcessIdentity, name: String?, extra: [String: String] = [:]) {
        self.init(pid: identity.pid, startTime: identity.startTime, executable: identity.executable,
                  name: name, extra: extra)
    }

    /// The recorded identity, nil for a bare-PID (upstream) file.
    public var identity: ProcessIdentity? {
        guard let startTime else { return nil }
        return ProcessIdentity(pid: pid, startTime: startTime, executable: executable)
    }

    /// The file's text.
    public var text: String {
        var lines = ["\(pid)"]
        if let startTime { lines.append("start_time=\(startTime)") }
        if let executable { lines.append("exe=\(executable)") }
        if let name { lines.append("name=\(name)") }
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) { lines.append("\(k)=\(v)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Parses a PID file's text. Throws `PidFileError.malformed` with the reason.
    public static func parse(_ text: String, path: String = "<text>") throws(PidFileError) -> PidRecord {
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard let first = lines.first(where: { !$0.isEmpty }) else {
            throw .malformed(path: path, reason: "the file is empty")
        }
        guard let pid = pid_t(first), pid > 0 else {
            throw .malformed(path: path, reason: "the first line \"\(first.prefix(40))\" is not a positive PID")
        }
        var record = PidRecord(pid: pid)
        for line in lines.drop(while: { $0 != first }).dropFirst() where !line.isEmpty {
            guard let eq = line.firstIndex(of: "=") else {
                throw .malformed(path: path, reason: "line \"\(line.prefix(40))\" is not key=value")
            }
            let key = String(line[..<eq]), value = String(line[line.index(after: eq)...])
            switch key {
            case "start_time":
                guard let t = UInt64(value) else {
                    throw .malformed(path: path, reason: "start_time \"\(value.prefix(40))\" is not a number")
                }
                record.startTime = t
            case "exe": record.executable = value
            case "name": record.name = value
            default: record.extra[key] = value
            }
        }
        return record
    }
}

public enum PidFileError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case malformed(path: String, reason: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let p, let r): return "cannot read PID file \(p): \(r)"
        case .malformed(let p, let r): return "PID file \(p) is malformed: \(r)"
        case .writeFailed(let p, let r): return "cannot write PID file \(p): \(r)"
        }
    }
}

/// The answer of `PidFile.verify`.
public enum PidVerdict: Sendable, Equatable, CustomStringConvertible {
    /// The recorded process is alive and its identity matches: safe to signal.
    case alive(ProcessIdentity)
    /// No process has the recorded PID any more (or only a zombie).
    case dead(pid: pid_t)
    /// A process has the PID but it is not the recorded one (PID reused, or a forged file).
    case mismatch(recorded: PidRecord, actual: ProcessIdentity)
    /// A bare-PID file: no identity to check. `alive` says whether the PID exists. Never signal on this.
    case noIdentity(pid: pid_t, alive: Bool)
    /// The file cannot be read or parsed.
    case unreadable(reason: String)

    /// Only a matching live identity allows a signal.
    public var isSafeToSignal: Bool {
        if case .alive = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .alive(let id): return "alive and matching: \(id)"
        case .dead(let pid): return "pid \(pid) is dead"
        case .mismatch(let rec, let actual):
            return "pid \(rec.pid) now belongs to another process (recorded start \(rec.startTime.map(String.init) ?? "?"),"
                + " exe \(rec.executable ?? "?"); actual \(actual))"
        case .noIdentity(let pid, let alive): return "pid \(pid) has no recorded identity (\(alive ? "alive" : "dead"))"
        case .unreadable(let reason): return "unreadable: \(reason)"
        }
    }
}

public enum PidFile {
    /// The mode of every PID file: written by its owner only, read by anyone (upstream tools read them).
    public static let fileMode: mode_t = 0o644

    /// Writes `record` to `path` atomically (temporary file + rename), creating the folder if needed.
    public static func write(_ record: PidRecord, to path: String) throws(PidFileError) {
        let dir = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw .writeFailed(path: path, reason: "\(error)")
        }
        let temp = "\(path).tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        // O_EXCL never follows a symbolic link; rename(2) replaces a link at `path`, never its target.
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, fileMode)
        guard fd >= 0 else { throw .writeFailed(path: path, reason: SystemCalls.describe(errno)) }
        fchmod(fd, fileMode)  // whatever the umask: readable by all, writable by the owner only
        let bytes = Array(record.text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let writeErrno = errno
        close(fd)
        guard written == bytes.count else {
            unlink(temp)
            throw .writeFailed(path: path, reason: SystemCalls.describe(writeErrno))
        }
        guard rename(temp, path) == 0 else {
            let e = errno
            unlink(temp)
            throw .writeFailed(path: path, reason: SystemCalls.describe(e))
        }
    }

    /// Reads and parses a PID file (bare-PID upstream files included).
    public static func read(_ path: String) throws(PidFileError) -> PidRecord {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .unreadable(path: path, reason: FileManager.default.fileExists(atPath: path)
                              ? "permission denied or not a file" : "no such file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .malformed(path: path, reason: "not UTF-8 text")
        }
        return try PidRecord.parse(text, path: path)
    }

    /// Compares a record with the live process that has its PID.
    public static func verify(_ record: PidRecord) -> PidVerdict {
        guard let actual = ProcessIdentity.of(pid: record.pid) else { return .dead(pid: record.pid) }
        guard let recorded = record.identity else { return .noIdentity(pid: record.pid, alive: true) }
        return recorded.matches(actual) ? .alive(actual) : .mismatch(recorded: record, actual: actual)
    }

    /// Reads the file at `path` and verifies it.
    public static func verify(_ path: String) -> PidVerdict {
        do {
            let record = try read(path)
            if record.identity == nil, ProcessIdentity.of(pid: record.pid) == nil {
                return .noIdentity(pid: record.pid, alive: false)
            }
            return verify(record)
        } catch {
            return .unreadable(reason: error.description)
        }
    }

    /// Removes the file; a missing file is fine.
    public static func remove(_ path: String) {
        unlink(path)
    }
}
