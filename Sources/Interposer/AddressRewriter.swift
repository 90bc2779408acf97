import ScheduleZeroWire
import Synchronization

/// The server interposer's map from each interposed handler's private endpoint (what the handler binds and
/// registers) to its public one (what its own interposer binds), so that the server, which connects to the
/// `address` a handler registers, connects through the handler's interposer. Shared with the governor, which
/// adds and removes handlers while the link runs.
public final class AddressRewriter: Sendable {
    private let map = Mutex<[String: String]>([:])

    public init(_ initial: [String: String] = [:]) { map.withLock { $0 = initial } }

    public func set(private privateEndpoint: String, public publicEndpoint: String) {
        map.withLock { $0[privateEndpoint] = publicEndpoint }
    }

    public func remove(private privateEndpoint: String) { map.withLock { $0[privateEndpoint] = nil } }

    public var mappings: [String: String] { map.withLock { $0 } }

    /// The public endpoint for a registered address: the exact private endpoint, or for TCP the same port
    /// when the address names a wildcard or loopback host (a handler binding `*` registers `tcp://0.0.0.0:P`).
    public func publicEndpoint(for address: String) -> String? {
        map.withLock { m in
            if let exact = m[address] { return exact }
            guard let (host, port) = Self.tcpHostPort(address), Self.isLocal(host) else { return nil }
            for (priv, pub) in m {
                if let (h, p) = Self.tcpHostPort(priv), p == port, Self.isLocal(h) { return pub }
            }
            return nil
        }
    }

    /// A `register` request with its address rewritten, or nil when it is not one or names no private endpoint.
    func rewrite(_ body: [UInt8]) -> (body: [UInt8], from: String, to: String)? {
        guard body.count < 1 << 20, Self.contains(body, Self.registerNeedle),
              let req = try? Request.decode(body), req.method == "register",
              let from = req.params["address"]?.stringValue, let to = publicEndpoint(for: from), to != from else { return nil }
        var params = req.params
        params["address"] = .string(to)
        return (Request(method: req.method, params: params).encoded(), from, to)
    }

    /// `rewrite` for a body read in place (a received frame): an array only for a `register` request.
    func rewrite(_ body: UnsafeRawBufferPointer) -> (body: [UInt8], from: String, to: String)? {
        guard body.count < 1 << 20, Self.contains(body, Self.registerNeedle) else { return nil }
        return rewrite(Array(body))
    }

    static let registerNeedle = Array(#""register""#.utf8)

    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        hay.withUnsafeBytes { contains($0, needle) }
    }

    static func contains(_ hay: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard hay.count >= needle.count else { return false }
        var i = 0
        outer: while i + needle.count <= hay.count {
            for k in 0..<needle.count where hay[i + k] != needle[k] { i += 1; continue outer }
            return true
        }
        return false
    }

    /// `tcp://HOST:PORT` split, IPv6 brackets removed; nil for other transports.
    public static func tcpHostPort(_ endpoint: String) -> (String, Int)? {
        guard endpoint.hasPrefix("tcp://") else { return nil }
        let rest = endpoint.dropFirst(6)
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) else { return nil }
        var host = String(rest[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    static func isLocal(_ host: String) -> Bool {
        ["*", "0.0.0.0", "127.0.0.1", "localhost", "::", "::1"].contains(host)
    }
}
