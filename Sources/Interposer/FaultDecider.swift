import ScheduleZeroWire

/// The random part of the proxy, apart from its sockets: one seeded generator per direction, and a fixed
/// number of draws per message whatever the settings, so the decision for "request N" depends only on the
/// seed, N and the settings in force, never on timing or on the other direction's traffic.
///
/// With `direction: both` (the default) every fault applies once per exchange: the request's draws decide
/// the whole exchange (delay, duplicate, reorder and corrupt act on the request; a drop loses the request or,
/// half the time, the reply, marked `dropsReply`), and a reply's own draws are taken but unused (only the
/// blackhole applies to it). So a delay of D adds D once and a drop probability p loses p of the exchanges.
public struct FaultDecider: Sendable {
    public let seed: UInt64
    private var requestRNG: SeededGenerator
    private var replyRNG: SeededGenerator
    private var requests = 0
    private var replies = 0

    public init(seed: UInt64) {
        self.seed = seed
        requestRNG = SeededGenerator(seed: seed)
        replyRNG = SeededGenerator(seed: seed ^ 0x5EED_0F_2E_91_1E5)
    }

    /// Draws this many values per message.
    public static let drawsPerMessage = 7

    public mutating func decide(_ direction: MessageDirection, bodySize: Int, faults f: ProxyFaults) -> ProxyDecision {
        var u = InlineArray<7, Double>(repeating: 0)  // drawsPerMessage, without an array per message
        let index: Int
        switch direction {
        case .request:
            for i in u.indices { u[i] = requestRNG.unit() }
            requests += 1
            index = requests
        case .reply:
            for i in u.indices { u[i] = replyRNG.unit() }
            replies += 1
            index = replies
        }
        var d = ProxyDecision(direction: direction, index: index)
        guard f.direction.covers(direction) else { return d }
        if f.blackhole {
            d.blackholed = true
            return d
        }
        // `both`: one decision per exchange, taken on its request. A reply carries only what its request's
        // decision left for it (`dropsReply`, applied by the engine) and the blackhole.
        if f.direction == .both && direction == .reply { return d }
        if u[0] < f.drop {
            // `both`: the exchange is lost once, before the handler (u < p/2) or after it (its reply).
            if f.direction == .both && u[0] >= f.drop / 2 {
                d.dropsReply = true
            } else {
                d.dropped = true
                return d
            }
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
