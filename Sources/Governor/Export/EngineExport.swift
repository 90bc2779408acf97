// What `szgovernor export systemd|kubernetes DIR` shares: the deployment as loaded by DeploymentFile (no
// second expander: every value here is one the governor would use), grouped by handler spec; values that
// differ between the replicas of a spec turned back into the per-replica variables they came from; the
// notes on what an engine has no equivalent for; and the writing of DIR (docs/DISTRIBUTED.md).
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One file of an export, `path` relative to DIR (at most one folder deep: `x@1.service.d/instance.conf`).
public struct ExportedFile: Sendable, Hashable {
    public var path: String
    public var contents: String
}

/// Something of the deployment the engine has no equivalent for: a comment in `file`, and a line on stderr.
public struct ExportNote: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var text: String
    public var description: String { "\(file): \(text)" }
}

public struct EngineExport: Sendable {
    public var files: [ExportedFile] = []
    public var notes: [ExportNote] = []
}

public struct ExportError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The processes of one unit of export: the server, or every replica of one handler spec (file order).
struct ProcessGroup {
    /// `server`, or the handler spec's id.
    var name: String
    var role: ProcessRole
    var instances: [HandlerConfig]
    /// True for a spec with `replicas:` (instances named `<spec>-<index>`).
    var replicated: Bool
    var first: HandlerConfig { instances[0] }

    static func groups(of deployment: Deployment) -> [ProcessGroup] {
        var out: [ProcessGroup] = []
        if let s = deployment.server { out.append(ProcessGroup(name: "server", role: .server, instances: [s], replicated: false)) }
        for h in deployment.handlers {
            let spec = h.specID ?? h.id
            if let i = out.firstIndex(where: { $0.role == .handler && $0.name == spec }) {
                out[i].instances.append(h)
            } else {
                out.append(ProcessGroup(name: spec, role: .handler, instances: [h], replicated: h.replicaIndex != nil))
            }
        }
        return out
    }

    func index(_ config: HandlerConfig) -> Int { config.replicaIndex ?? 1 }
}

/// A value written back in terms of what varies per instance: literal text, the instance index, or a
/// variable the engine expands (systemd `${V}` from Environment=, Kubernetes `$(V)` from env).
enum Segment: Hashable {
    case text(String)
    case index
    case variable(String)
}

/// How one instance's per-replica values are written in one engine context.
struct InstanceTokens {
    /// Longest value first: (the instance's value, what it is written as).
    var table: [(value: String, segments: [Segment])]
    /// Values matched only as a whole (INDEX: a digit that occurs everywhere).
    var whole: [(value: String, segments: [Segment])]

    /// `value` split into literal text and tokens at every occurrence of a per-instance value that stands
    /// on its own (not inside a longer word or number: `h-1` is not found in `h-12`, `4245` not in `14245`).
    func tokenize(_ value: String) -> [Segment] {
        if let w = whole.first(where: { $0.value == value }) { return w.segments }
        let chars = Array(value)
        var out: [Segment] = []
        var literal = ""
        var i = 0
        func boundary(_ c: Character?) -> Bool { c.map { !($0.isLetter || $0.isNumber) } ?? true }
        outer: while i < chars.count {
            for entry in table where !entry.value.isEmpty {
                let v = Array(entry.value)
                guard i + v.count <= chars.count, Array(chars[i..<(i + v.count)]) == v else { continue }
                let before = i > 0 ? chars[i - 1] : nil
                let after = i + v.count < chars.count ? chars[i + v.count] : nil
                let firstAlnum = v.first!.isLetter || v.first!.isNumber
                let lastAlnum = v.last!.isLetter || v.last!.isNumber
                guard !firstAlnum || boundary(before), !lastAlnum || boundary(after) else { continue }
                if !literal.isEmpty { out.append(.text(literal)); literal = "" }
                out += entry.segments
                i += v.count
                continue outer
            }
            literal.append(chars[i])
            i += 1
        }
        if !literal.isEmpty { out.append(.text(literal)) }
        return merged(out)
    }

    func merged(_ segments: [Segment]) -> [Segment] {
        var out: [Segment] = []
        for s in segments {
            if case .text(let t) = s, case .text(let prev)? = out.last { out[out.count - 1] = .text(prev + t) } else { out.append(s) }
        }
        return out
    }
}

enum Generalize {
    /// One pattern that, with each instance's index and variables, gives back each instance's own value;
    /// nil when the instances differ in a way their per-replica variables do not explain.
    /// A lone instance of a replicated spec is tokenized all the same (so `h@2` started later gets its own
    /// name); values equal in every one of several instances stay literal.
    static func pattern(_ values: [String], tokens: [InstanceTokens], replicated: Bool,
                        render: (_ segments: [Segment], _ instance: Int) -> String?) -> [Segment]? {
        guard let first = values.first else { return nil }
        if values.allSatisfy({ $0 == first }) && (values.count > 1 || !replicated) { return [.text(first)] }
        let patterns = zip(values, tokens).map { $1.tokenize($0) }
        guard patterns.allSatisfy({ $0 == patterns[0] }) else { return nil }
        // The pattern is built from each value exactly, so it renders back to it; checked all the same.
        for (k, v) in values.enumerated() where render(patterns[0], k) != v { return nil }
        return patterns[0]
    }
}

/// Engine names: `<deployment>-<group>`.
func exportBaseName(_ deployment: Deployment, _ group: ProcessGroup) -> String { "\(deployment.name)-\(group.name)" }

extension Duration {
    /// Whole seconds, rounded up, at least `minimum` (Kubernetes takes integer seconds).
    func ceilSeconds(minimum: Int = 1) -> Int { max(minimum, Int((msDouble / 1000).rounded(.up))) }
}


/// Writes an export into DIR: made 0755 if absent (its parent must exist), refused when it is a symbolic
/// link or not a directory; every file 0644 (subfolders 0755), created or truncated without following a
/// link; nothing outside DIR (file names come from validated process names, checked again here).
public enum ExportWriter {
    public static func write(_ export: EngineExport, to dir: String) throws(ExportError) -> [String] {
        let dir = dir.hasPrefix("/") ? dir : FileManager.default.currentDirectoryPath + "/" + dir
        // Everything that can be refused is refused before the first file is written.
        try prepareDirectory(dir, what: "export directory", create: false)
        var dst = stat()
        for file in export.files where lstat(dir, &dst) == 0 {
            let parts = file.path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
                throw ExportError("refusing to write \"\(file.path)\": not a plain name inside \(dir)")
            }
            if parts.count == 2 { try prepareDirectory(dir + "/" + parts[0], what: "folder", create: false) }
            var st = stat()
            if lstat(dir + "/" + file.path, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG {
                throw ExportError("refusing \(dir)/\(file.path): it is \((st.st_mode & S_IFMT) == S_IFLNK ? "a symbolic link (export never writes through one)" : "not a regular file")")
            }
        }
        try prepareDirectory(dir, what: "export directory")
        var written: [String] = []
        for file in export.files {
            if file.path.contains("/") { try prepareDirectory(dir + "/" + String(file.path.split(separator: "/")[0]), what: "folder") }
            let path = dir + "/" + file.path
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                let e = errno
                if e == ELOOP { throw ExportError("refusing \(path): it is a symbolic link (export never writes through one)") }
                throw ExportError("cannot write \(path): \(String(cString: strerror(e)))")
            }
            defer { close(fd) }
            guard fchmod(fd, 0o644) == 0 else { throw ExportError("cannot chmod \(path): \(String(cString: strerror(errno)))") }
            let bytes = Array(file.contents.utf8)
            var off = 0
            while off < bytes.count {
                let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw ExportError("cannot write \(path): \(String(cString: strerror(errno)))") }
                off += n
            }
            written.append(path)
        }
        return written
    }

    /// Checks `path` (a real, writable directory) and, with `create`, makes it 0755 when absent.
    static func prepareDirectory(_ path: String, what: String, create: Bool = true) throws(ExportError) {
        var st = stat()
        if lstat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFLNK {
                throw ExportError("refusing \(what) \(path): it is a symbolic link (export never writes through one)")
            }
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw ExportError("\(what) \(path) exists and is not a directory") }
            guard access(path, W_OK | X_OK) == 0 else { throw ExportError("\(what) \(path) is not writable") }
            return
        }
        guard errno == ENOENT else { throw ExportError("cannot use \(what) \(path): \(String(cString: strerror(errno)))") }
        guard create else {
            // Absent: its parent must let it be made.
            let parent = (path as NSString).deletingLastPathComponent
            var pst = stat()
            guard lstat(parent, &pst) == 0, (pst.st_mode & S_IFMT) == S_IFDIR else {
                throw ExportError("cannot create \(what) \(path): \(parent) is not a directory")
            }
            guard access(parent, W_OK | X_OK) == 0 else { throw ExportError("cannot create \(what) \(path): \(parent) is not writable") }
            return
        }
        guard mkdir(path, 0o755) == 0 else {
            throw ExportError("cannot create \(what) \(path): \(String(cString: strerror(errno)))")
        }
        guard chmod(path, 0o755) == 0 else { throw ExportError("cannot chmod \(path): \(String(cString: strerror(errno)))") }
    }
}
