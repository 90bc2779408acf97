/// SplitMix64: a small, fast, seedable generator. Every random choice in this project (jitter, fault
/// probabilities, victims) goes through one, so a run is reproducible from its seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64
    public let seed: UInt64

    public init(seed: UInt64) {
        self.seed = seed
        self.state = seed
    }

    /// A seed from the system's generator, for runs that did not ask for one (print it so it can be replayed).
    public static func randomSeed() -> UInt64 { UInt64.random(in: 1...UInt64.max) }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
