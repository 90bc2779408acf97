// Before `up` starts anything: fixed TCP ports (`tcp://HOST:PORT` endpoints with a concrete port) must be
// unique within the deployment and free on this machine. A port held by another deployment (or any other
// program) is reported at once, naming the process and the port, instead of a handler that exits at bind
// and is restarted until its policy gives up. ipc endpoints live inside the deployment folder and cannot
// collide between deployments.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Interposer

public enum EndpointPreflight {
    public static func check(_ deployment: Deployment) throws {
        var seen: [String: String] = [:]
        for config in deployment.processes {
            guard let endpoint = config.endpoint, let (host, port) = tcpHostPort(endpoint) else { continue }
            let key = "\(host):\(port)"
            if let other = seen[key] {
                throw GovernorError.invalidConfig("deployment \"\(deployment.name)\": \(config.id) and \(other) both use \(endpoint)")
            }
            seen[key] = config.id
            if let priv = config.interposer?.privateEndpoint, let (ph, pp) = tcpHostPort(priv) {
                if let other = seen["\(ph):\(pp)"] ?? seen["\(host):\(pp)"] {
                    throw GovernorError.invalidConfig("deployment \"\(deployment.name)\": \(config.id)'s private endpoint \(priv) "
                        + "collides with \(other)'s endpoint: give it interpose.private_port_base")
                }
                seen["\(ph):\(pp)"] = config.id + " (private)"
            }
            if let reason = portInUse(host: host, port: port) {
                throw GovernorError.invalidConfig(
                    "deployment \"\(deployment.name)\": \(config.id)'s endpoint \(endpoint) is already in use (\(reason)): "
                    + "another deployment or program holds the port; nothing was started")
            }
        }
    }

    /// `tcp://127.0.0.1:4245` -> ("127.0.0.1", 4245); nil for other transports and wildcard ports.
    static func tcpHostPort(_ endpoint: String) -> (String, UInt16)? {
        guard let (host, port) = AddressRewriter.tcpHostPort(endpoint), let p = UInt16(exactly: port), p != 0 else { return nil }
        return (host, p)
    }

    /// nil when `host:port` can be bound now (IPv4 hosts only; others are not checked).
    static func portInUse(host: String, port: UInt16) -> String? {
        let address = (host == "*" || host == "0.0.0.0") ? "0.0.0.0" : host
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &addr.sin_addr) == 1 else { return nil }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var one: CInt = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0 ? nil : SystemCalls.describe(errno)
    }
}
