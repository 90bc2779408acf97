// The deployment folder's safety rules, whatever the umask: the folder and its subfolders (pids/, logs/,
// run/) are real directories (never symbolic links), owned by this user and owner-only (0700), made so
// before anything is created in them. With that, nothing the governor creates, writes or deletes can be
// redirected outside the folder by another user, and the files inside cannot be reached by one.
// Files are opened with O_NOFOLLOW (the lock, events.jsonl, logs) or created with O_EXCL and renamed
// (PID files); unlink(2) removes a link itself, never its target.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public enum DeploymentFolder {
    /// The mode of the deployment folder and of every subfolder the governor makes.
    public static let directoryMode: mode_t = 0o700
    /// The subfolders the governor owns.
    public static let subfolders = ["pids", "logs", "run"]

    /// Makes (or checks) `directory` and its subfolders: real directories, ours, mode 0700. Throws
    /// `GovernorError.unsafePath` naming the first one that is a symbolic link, not a directory, or not ours.
    public static func prepare(_ directory: String) throws(GovernorError) {
        let parent = (directory as NSString).deletingLastPathComponent
        if !parent.isEmpty, !FileManager.default.fileExists(atPath: parent) {
            do {
                try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            } catch {
                throw .unsafePath(path: parent, reason: "cannot create it: \(error)")
            }
        }
        try ensureDirectory(directory)
        for sub in subfolders { try ensureDirectory((directory as NSString).appendingPathComponent(sub)) }
    }

    /// Makes `path` (one level, mode 0700) or checks the one there: a directory (lstat: not a symbolic link)
    /// owned by this user; its mode is then set to 0700 (chmod: the umask plays no part).
    public static func ensureDirectory(_ path: String) throws(GovernorError) {
        if mkdir(path, directoryMode) != 0, errno != EEXIST {
            throw .unsafePath(path: path, reason: "cannot create it: \(SystemCalls.describe(errno))")
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { throw .unsafePath(path: path, reason: SystemCalls.describe(errno)) }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: break
        case S_IFLNK: throw .unsafePath(path: path, reason: symlinkReason)
        default: throw .unsafePath(path: path, reason: "it is not a directory")
        }
        guard st.st_uid == geteuid() else {
            throw .unsafePath(path: path, reason: "it belongs to uid \(st.st_uid), not to this user (uid \(geteuid()))")
        }
        if st.st_mode & 0o7777 != directoryMode, chmod(path, directoryMode) != 0 {
            throw .unsafePath(path: path, reason: "cannot make it owner-only (0700): \(SystemCalls.describe(errno))")
        }
    }

    /// Throws when a component of `path` below `directory` (the last one excluded) is a symbolic link, or
    /// when `path` is not inside `directory`; makes missing components (0700).
    public static func ensureParents(of path: String, inside directory: String) throws(GovernorError) {
        let base = normalized(directory), full = normalized(path)
        guard isInside(full, base) else {
            throw .unsafePath(path: path, reason: "it is outside the deployment folder \(directory)")
        }
        let rest = full.dropFirst(base.count).split(separator: "/").dropLast()
        var current = base
        for component in rest {
            current += "/" + component
            try ensureDirectory(current)
        }
    }

    static let symlinkReason = "it is a symbolic link (the governor never follows one for what it creates, writes or deletes)"

    /// `path` with `.` and `..` resolved lexically and repeated or trailing slashes removed (no file system
    /// access: symbolic links are not resolved).
    public static func normalized(_ path: String) -> String {
        var out: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == "..", let last = out.last, last != ".." { out.removeLast(); continue }
            if c == "..", path.hasPrefix("/") { continue }
            out.append(c)
        }
        return (path.hasPrefix("/") ? "/" : "") + out.joined(separator: "/")
    }

    /// Whether `path` lies strictly inside `directory` (both normalized the same way).
    public static func isInside(_ path: String, _ directory: String) -> Bool {
        let p = normalized(path), d = normalized(directory)
        return p.hasPrefix(d == "/" ? "/" : d + "/") && p.count > d.count + 1
    }
}
