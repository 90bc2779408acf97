// Limits checked when a deployment or experiment file is loaded, before anything starts (docs/GOVERNOR.md,
// "Limits"): TCP ports in 1...65535, ipc paths that fit sockaddr_un, and a ceiling on the processes of one
// deployment.

public enum EndpointLimits {
    /// sockaddr_un's sun_path is 108 bytes on Linux, one of them the terminating NUL.
    public static let maxIPCPathBytes = 107

    /// Why `endpoint` can never be bound or connected, or nil. Only what is certain is refused: a `tcp://`
    /// port that is a number outside 1...65535 (`*` and `0` pick a port), an `ipc://` path longer than
    /// sun_path holds.
    public static func problem(_ endpoint: String) -> String? {
        if endpoint.hasPrefix("ipc://") {
            let path = endpoint.dropFirst(6)
            let bytes = path.utf8.count
            if bytes > maxIPCPathBytes {
                return "the ipc path of \(endpoint) is \(bytes) bytes; a Unix socket path holds at most \(maxIPCPathBytes) (sockaddr_un); use a shorter root or name"
            }
        } else if endpoint.hasPrefix("tcp://") {
            let rest = endpoint.dropFirst(6)
            guard let colon = rest.lastIndex(of: ":") else { return nil }
            let portText = rest[rest.index(after: colon)...]
            guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber) else { return nil }
            guard let port = Int(portText), (0...65535).contains(port) else {
                return "port \(portText) of \(endpoint) is outside 1...65535"
            }
        }
        return nil
    }
}

public enum ProcessLimits {
    /// Processes (server + handler instances) one deployment may have unless its file sets `max_processes:`.
    public static let defaultMaxProcesses = 1000
    /// The highest `max_processes:` a file may set.
    public static let maxMaxProcesses = 100_000
}
