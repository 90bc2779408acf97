// Whole process trees: a cgroup2 group per child where the machine lets the governor make one, the process
// group (with a warning) where it does not.
//
// Layout: `<cgroup2 mount>/szgovernor/<deployment id>/<process name>`, the deployment id being
// `<deployment name>-<12 hex digits of the FNV-1a of the folder's real path>`, so two folders with the same
// deployment name never share a group. Groups are made mode 0755 (root's), the deployment group carries the
// folder's path in the extended attribute `user.szgovernor.folder` (what the test leak checks read), a
// process group is removed (rmdir) once its tree is gone and the deployment group when the deployment stops.
// The cgroup2 mount is found in /proc/self/mountinfo, never assumed. Why clone3 and the rest:
// docs/ARCHITECTURE.md, "Spawning children".
#if canImport(Glibc)
import Glibc
#endif
import CSystem
import Foundation

/// How the governor tracks and stops each child's descendants.
public enum ProcessTreeMode: Sendable, Equatable, CustomStringConvertible {
    /// Every child is started inside its own cgroup2 group below this deployment group.
    case cgroup(deploymentGroup: String)
    /// Only the child's process group (its session): a descendant that calls setsid escapes it.
    case processGroup(reason: String)

    public var name: String {
        switch self {
        case .cgroup: return "cgroup"
        case .processGroup: return "process-group"
        }
    }

    public var description: String {
        switch self {
        case .cgroup(let path): return "cgroup \(path)"
        case .processGroup(let reason): return "process-group (\(reason))"
        }
    }

    /// `{"mode": "cgroup", "cgroup": PATH}` or `{"mode": "process-group", "reason": WHY}`.
    public var json: [String: String] {
        switch self {
        case .cgroup(let path): return ["mode": name, "cgroup": path]
        case .processGroup(let reason): return ["mode": name, "reason": reason]
        }
    }
}

public enum ProcessTree {
    /// `SZGOVERNOR_CGROUP=off` forces the process-group mode (anything else, or unset: cgroup when possible).
    public static let switchVariable = "SZGOVERNOR_CGROUP"
    /// The folder below the cgroup2 mount that holds every deployment group.
    public static let topGroup = "szgovernor"
    /// The extended attribute of a deployment group that names its deployment folder.
    public static let folderAttribute = "user.szgovernor.folder"

    /// The mount point of the cgroup2 hierarchy of this process, read once from /proc/self/mountinfo.
    public static func cgroup2Mount() -> String? { mountPoint }
    private static let mountPoint: String? = cgroup2Mount(
        mountinfo: (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")

    /// The mount point of the cgroup2 hierarchy in a mountinfo text (nil when none is mounted).
    public static func cgroup2Mount(mountinfo text: String) -> String? {
        for line in text.split(separator: "\n") {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count, fields.count > 4,
                  fields[dash + 1] == "cgroup2" else { continue }
            return unescapeMountField(String(fields[4]))
        }
        return nil
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    static func unescapeMountField(_ s: String) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else {
                out.append(b[i]); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `<name>-<12 hex digits>` of the folder's real path: unique per deployment folder.
    public static func deploymentID(name: String, folder: String) -> String {
        let real = realPath(folder)
        let hash = String(fnv1a(real), radix: 16)
        let padded = String(repeating: "0", count: max(0, 16 - hash.count)) + hash
        return "\(name)-\(padded.prefix(12))"
    }

    public static func realPath(_ path: String) -> String {
        guard let r = realpath(path, nil) else { return (path as NSString).standardizingPath }
        defer { free(r) }
        return String(cString: r)
    }

    /// Decides the mode for a deployment: makes its group (and `szgovernor/`) when it can. Never throws:
    /// whatever stands in the way is the reason of the process-group mode.
    /// `mount`: the cgroup2 mount to use (tests pass folders that are not one); default, this process's.
    public static func prepare(name: String, folder: String, environment: [String: String],
                               mount: String?? = .none) -> ProcessTreeMode {
        if let v = environment[switchVariable]?.lowercased(), ["off", "0", "no", "false"].contains(v) {
            return .processGroup(reason: "\(switchVariable)=\(environment[switchVariable]!)")
        }
        guard let mount = mount ?? cgroup2Mount() else { return .processGroup(reason: "no cgroup2 hierarchy is mounted") }
        guard sz_clone3_available() == 1 else { return .processGroup(reason: "the kernel has no clone3") }
        do {
            try Names.validateDeployment(name)
        } catch {
            return .processGroup(reason: "\(error)")
        }
        let top = (mount as NSString).appendingPathComponent(topGroup)
        let group = (top as NSString).appendingPathComponent(deploymentID(name: name, folder: folder))
        for dir in [top, group] {
            if let error = makeGroup(dir) { return .processGroup(reason: "cannot create cgroup \(dir): \(error)") }
        }
        // Not every kernel lets a group be made here and a process be moved into it (delegation, nsdelegate):
        // prove it with the file every cgroup2 group has before promising it.
        guard access(group + "/cgroup.procs", W_OK) == 0 else {
            let why = SystemCalls.describe(errno)
            rmdir(group)
            return .processGroup(reason: "cannot write \(group)/cgroup.procs: \(why)")
        }
        let real = realPath(folder)
        _ = sz_set_xattr(group, folderAttribute, real)
        return .cgroup(deploymentGroup: group)
    }

    /// mkdir 0755 (whatever the umask); nil when it exists or was made, else the reason.
    static func makeGroup(_ path: String) -> String? {
        if mkdir(path, 0o755) == 0 {
            chmod(path, 0o755)
            return nil
        }
        if errno == EEXIST {
            var st = stat()
            if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { return nil }
            return "it exists and is not a folder"
        }
        return SystemCalls.describe(errno)
    }

    /// Removes a deployment group: kills and waits out whatever is left in its process cgroups (ours: only the
    /// governor places processes there), removes them, then the group itself. Returns the names of the
    /// process groups that still held processes.
    @discardableResult
    public static func removeDeploymentGroup(_ group: String, timeout: Duration = .seconds(10)) -> [String] {
        var leftovers: [String] = []
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: group)) ?? []).sorted() {
            let path = (group as NSString).appendingPathComponent(name)
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            let cg = ProcessCgroup(path: path)
            if cg.isPopulated {
                leftovers.append(name)
                cg.kill()
                _ = cg.waitUntilEmpty(timeout: timeout)
            }
            cg.remove()
        }
        rmdir(group)
        return leftovers
    }

    /// Every deployment group under `szgovernor/` now, with the folder its `user.szgovernor.folder` names
    /// (nil when it has none): what the test leak checks compare with their temporary folders.
    public static func deploymentGroups() -> [(group: String, folder: String?)] {
        guard let mount = cgroup2Mount() else { return [] }
        let top = (mount as NSString).appendingPathComponent(topGroup)
        var out: [(String, String?)] = []
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: top)) ?? []).sorted() {
            let path = (top as NSString).appendingPathComponent(name)
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            var buffer = [CChar](repeating: 0, count: 4097)
            let n = sz_get_xattr(path, folderAttribute, &buffer, UInt(buffer.count))
            out.append((path, n >= 0 ? String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil))
        }
        return out
    }

    /// The deployment group of a folder when it exists (for `down` without a governor), else nil.
    public static func existingDeploymentGroup(name: String, folder: String) -> String? {
        guard let mount = cgroup2Mount() else { return nil }
        let group = ((mount as NSString).appendingPathComponent(topGroup) as NSString)
            .appendingPathComponent(deploymentID(name: name, folder: folder))
        var st = stat()
        return lstat(group, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR ? group : nil
    }

    /// The cgroup2 group of a live process (absolute path below the mount), from /proc/PID/cgroup.
    public static func cgroup(of pid: pid_t) -> String? {
        guard let mount = cgroup2Mount(),
              let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            let rel = String(line.dropFirst(3))
            return rel == "/" ? mount : mount + rel
        }
        return nil
    }

    /// The process's group when it is `<mount>/szgovernor/<id of this folder>/<name>`, else nil.
    public static func governorGroup(of pid: pid_t, deploymentName: String, folder: String) -> ProcessCgroup? {
        guard let mount = cgroup2Mount(), let path = cgroup(of: pid) else { return nil }
        let prefix = "\(mount)/\(topGroup)/\(deploymentID(name: deploymentName, folder: folder))/"
        guard path.hasPrefix(prefix), !path.dropFirst(prefix.count).contains("/") else { return nil }
        return ProcessCgroup(path: path)
    }
}

/// One process's cgroup2 group: the core files every group has (cgroup.procs, cgroup.kill, cgroup.freeze,
/// cgroup.events), no controller needed.
public struct ProcessCgroup: Sendable, Hashable, CustomStringConvertible {
    public let path: String
    public init(path: String) { self.path = path }
    public var description: String { path }

    /// Makes the group (mode 0755) if it does not exist. Throws the reason.
    public func create() throws(ProcessTreeError) {
        if let why = ProcessTree.makeGroup(path) { throw ProcessTreeError(description: "cannot create cgroup \(path): \(why)") }
    }

    /// An O_DIRECTORY | O_CLOEXEC descriptor of the group (for clone3's CLONE_INTO_CGROUP); -1 on failure.
    func openDirectory() -> CInt { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }

    /// The PIDs in the group now.
    public var processes: [pid_t] {
        read("cgroup.procs")?.split(separator: "\n").compactMap { pid_t($0) } ?? []
    }

    /// `populated 1` in cgroup.events (false when the group is gone).
    public var isPopulated: Bool { eventsField("populated") == 1 }
    /// `frozen 1` in cgroup.events.
    public var isFrozen: Bool { eventsField("frozen") == 1 }

    func eventsField(_ key: String) -> Int? {
        read("cgroup.events").flatMap { Self.field(key, in: $0) }
    }

    static func field(_ key: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key { return Int(parts[1]) }
        }
        return nil
    }

    /// Sends `signal` to every process in the group. Each PID is pinned by a pidfd and checked to be still
    /// in this group before the signal goes through the pidfd: a member that exited and whose PID was reused
    /// between the read of cgroup.procs and the signal is never hit.
    /// `exceptGroup`: leave out the members of that process group (they were signalled through it): each
    /// process gets a signal once. A second SIGTERM is the "stop now" of many programs (szgovernor's own
    /// included), and a Python peer whose handler was entered twice deadlocked on its own lock.
    public func signalAll(_ signal: CInt, exceptGroup group: pid_t? = nil) {
        let relative = path
        for pid in processes where pid > 0 {
            if let group, getpgid(pid) == group { continue }
            let fd = SystemCalls.pidfdOpen(pid)
            guard fd >= 0 else { continue }
            if ProcessTree.cgroup(of: pid) == relative { _ = SystemCalls.pidfdSendSignal(fd, signal) }
            close(fd)
        }
    }

    /// SIGKILL to the whole group through `cgroup.kill` (Linux 5.14+); on older kernels SIGKILL to each
    /// member until the group is empty or a second has passed.
    public func kill() {
        if write("cgroup.kill", "1") { return }
        let deadline = ContinuousClock.now + .seconds(1)
        while isPopulated && ContinuousClock.now < deadline {
            signalAll(SIGKILL)
            usleep(5_000)
        }
    }

    /// Freezes (`true`) or thaws the group and waits until cgroup.events agrees (at most `timeout`).
    /// Returns false when the write failed or the state did not come.
    @discardableResult
    public func freeze(_ on: Bool, timeout: Duration = .seconds(5)) -> Bool {
        guard write("cgroup.freeze", on ? "1" : "0") else { return false }
        return waitForEvents(timeout: timeout) { Self.field("frozen", in: $0) == (on ? 1 : 0) }
    }

    /// Blocks (a dedicated thread's call) until `populated 0` or `timeout`. True when the group is empty
    /// (or gone).
    public func waitUntilEmpty(timeout: Duration) -> Bool {
        waitForEvents(timeout: timeout) { Self.field("populated", in: $0) != 1 }
    }

    /// Waits on cgroup.events: read through one descriptor, then poll it for POLLPRI (kernfs wakes it on
    /// any change after that read, so none is missed), re-read at least every 50 ms all the same.
    func waitForEvents(timeout: Duration, until done: (String) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        let fd = open(path + "/cgroup.events", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return done("") }  // the group is gone
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let n = pread(fd, &buffer, buffer.count, 0)
            if done(n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : "") { return true }
            let left = deadline - ContinuousClock.now
            if left <= .zero { return false }
            var p = pollfd(fd: fd, events: Int16(POLLPRI), revents: 0)
            _ = poll(&p, 1, CInt(max(1, min(50, left.msDouble))))
        }
    }

    /// rmdir of the group (only an empty group goes). True when it is gone.
    @discardableResult
    public func remove() -> Bool { rmdir(path) == 0 || errno == ENOENT }

    public var exists: Bool { access(path, F_OK) == 0 }

    func read(_ file: String) -> String? {
        let fd = open(path + "/" + file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    func write(_ file: String, _ text: String) -> Bool {
        let fd = open(path + "/" + file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.withCString { Glibc.write(fd, $0, strlen($0)) } >= 0
    }
}

public struct ProcessTreeError: Error, CustomStringConvertible, Sendable {
    public let description: String
}
