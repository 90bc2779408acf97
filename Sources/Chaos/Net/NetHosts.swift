import Foundation

/// A host of the network faults: a network namespace (`ip netns`), e.g. one of `scripts/testbed.sh`'s.
/// Its addresses and interface are read from the namespace itself, so any namespace on a bridge works.
public struct NetHost: Sendable, Equatable {
    /// The namespace's name (`szh1`).
    public var name: String
    /// Its IPv4 addresses of global scope (`10.77.0.1`), without the prefix length.
    public var addresses: [String]
    /// The interface that carries them inside the namespace (`eth0`).
    public var interface: String?
    /// The other end of that interface when it is a veth in the initial namespace (`szh1-v`): where traffic
    /// towards the host is shaped.
    public var peer: String?

    public init(name: String, addresses: [String], interface: String?, peer: String?) {
        self.name = name
        self.addresses = addresses
        self.interface = interface
        self.peer = peer
    }
}

public enum NetHosts {
    /// The network namespaces there are (`ip netns list`), by name.
    public static func names() throws(HostCommand.Failure) -> [String] {
        let out = try HostCommand.check(["ip", "netns", "list"])
        return out.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }.sorted()
    }

    /// Whether a namespace of this name exists.
    public static func exists(_ name: String) -> Bool {
        var st = stat()
        return !name.isEmpty && !name.contains("/") && stat("/run/netns/\(name)", &st) == 0
    }

    /// Reads a host's addresses, interface and veth peer.
    public static func host(_ name: String) throws(NetFaultError) -> NetHost {
        guard exists(name) else { throw .unknownHost(name, known: (try? names()) ?? []) }
        let out: String
        do { out = try HostCommand.check(["ip", "-n", name, "-4", "-o", "addr", "show", "scope", "global"]) } catch {
            throw .command("\(error)")
        }
        var host = NetHost(name: name, addresses: [], interface: nil, peer: nil)
        // `2: eth0    inet 10.77.0.1/24 brd 10.77.0.255 scope global eth0\       valid_lft ...`
        for line in out.split(separator: "\n") {
            let w = line.split(separator: " ", omittingEmptySubsequences: true)
            guard w.count >= 4, let i = w.firstIndex(of: "inet"), i + 1 < w.count else { continue }
            host.addresses.append(String(w[i + 1].split(separator: "/")[0]))
            if host.interface == nil { host.interface = String(w[1]) }
        }
        if let dev = host.interface { host.peer = peer(of: dev, in: name) }
        return host
    }

    /// The interface in the initial namespace whose index `dev@ifN` names, when it is there.
    static func peer(of dev: String, in ns: String) -> String? {
        guard let out = try? HostCommand.check(["ip", "-n", ns, "-o", "link", "show", "dev", dev]),
              let at = out.range(of: "@if") else { return nil }
        let index = out[at.upperBound...].prefix { $0.isNumber }
        guard !index.isEmpty, out.contains("link-netnsid 0") || out.contains("link-netns") else { return nil }
        guard let all = try? HostCommand.check(["ip", "-o", "link", "show"]) else { return nil }
        for line in all.split(separator: "\n") where line.hasPrefix("\(index): ") {
            let name = line.dropFirst("\(index): ".count).prefix { $0 != ":" && $0 != "@" }
            return String(name)
        }
        return nil
    }
}
