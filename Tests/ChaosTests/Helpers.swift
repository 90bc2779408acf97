import Chaos
import Foundation
import ScheduleZeroWire
import ScheduleZeroTesting
import ZMQClient
import Interposer

/// A proxy in front of a `TestPeer`, both on free ports, stopped together.
final class ProxyRig: @unchecked Sendable {
    let peer: TestPeer
    let proxy: ChaosProxy
    var endpoint: String { proxy.listenEndpoint }

    init(faults: ProxyFaults = .none, seed: UInt64 = 42, control: Bool = false, journalPath: String? = nil,
         pollInterval: Duration = .milliseconds(20), journalWriteInterval: Duration = .milliseconds(100),
         handler: @escaping @Sendable (Request?, [[UInt8]]) -> TestPeer.Action = TestPeer.echo) throws {
        peer = try TestPeer(handler: handler)
        var configuration = ChaosProxyConfiguration(
            listen: "tcp://127.0.0.1:*", upstream: peer.endpoint, control: control ? "tcp://127.0.0.1:*" : nil,
            seed: seed, faults: faults, name: "test-proxy", pollInterval: pollInterval, journalPath: journalPath)
        configuration.journalWriteInterval = journalWriteInterval
        proxy = try ChaosProxy(configuration)
    }

    func stop() {
        proxy.stop()
        peer.stop()
    }

    /// A client of the proxy. The default timeout leaves room for a saturated machine: tests that expect a
    /// timeout say so with a shorter one.
    func client(timeout: Duration = .seconds(3), attempts: Int = 3) throws -> SyncClient {
        try SyncClient(endpoint: endpoint, configuration: ClientConfiguration(timeout: timeout, attempts: attempts, seed: 7))
    }
}

enum Fixtures {
    /// The repository's `Fixtures/` folder.
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures")
    }
    static func path(_ rel: String) -> String { root.appendingPathComponent(rel).path }
}
