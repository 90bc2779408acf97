import ScheduleZeroWire

/// The random part of the proxy, apart from its sockets: one seeded generator per direction, and a fixed
/// number of draws per message whatever the settings, so the decision for "request N" depends only on the
/// seed, N and the settings in force, never on timing or on the other direction's traffic.
public struct FaultDecider: Sendable {
    public let seed: UInt64
    private var requestRNG: SeededGenerator
    private var replyRNG: SeededGenerator
    private var counts: [MessageDirection: Int] = [:]

    public init(seed: UInt64) {
        self.seed = seed
        requestRNG = SeededGenerator(seed: seed)
        replyRNG = SeededGenerator(seed: seed ^ 0x5EED_0F_2E_91_1E5)
    }

    /// Draws this many values per message.
    public static let drawsPerMessage = 7

    public mutating func decide(_ direction: MessageDirection, bodySize: Int, faults f: ProxyFaults) -> ProxyDecision {
        var u = [Double](repeating: 0, count: Self.drawsPerMessage)
        switch direction {
        case .request: for i in u.indices { u[i] = requestRNG.unit() }
        case .reply: for i in u.indices { u[i] = replyRNG.unit() }
        }
        counts[direction, default: 0] += 1
        var d = ProxyDecision(direction: direction, index: counts[direction]!)
        guard f.direction.covers(direction) else { return d }
        if f.blackhole {
            d.blackholed = true
            return d
        }
        if u[0] < f.drop {
            d.dropped = true
            return d
        }
        if bodySize > 0 && u[5] < f.corrupt { d.corruptedByte = min(bodySize - 1, Int(u[6] * Double(bodySize))) }
        if u[3] < f.duplicate { d.duplicated = true }
        if u[4] < f.reorder { d.held = true }
        if (f.delayMs > 0 || f.jitterMs > 0) && u[1] < f.delay {
            let jitter = f.jitterMs > 0 ? Int(((2 * u[2] - 1) * Double(f.jitterMs)).rounded()) : 0
            d.delayMs = max(0, f.delayMs + jitter)
        }
        return d
    }
}
