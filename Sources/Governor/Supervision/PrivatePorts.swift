// Private TCP ports for interposed processes: the port a process binds behind its interposer.
import Synchronization

enum PrivatePorts {
    /// Well below Linux's ephemeral range (32768-60999 by default), where outgoing connections take their
    /// ports (a reconnecting client could otherwise take a private port before its process binds it), and
    /// below the 12000 ports under it that the test suite hands out (ScheduleZeroTesting's freeTCPPort).
    static let range = 10_000..<20_000
    private static let taken = Mutex<Set<Int>>([])
    private static let cursor = Mutex<Int>(Int.random(in: range))

    /// A loopback port nobody holds now and this process has not handed out before; nil when none is left.
    static func reserve() -> Int? {
        for _ in 0..<range.count {
            let port = cursor.withLock { c -> Int in
                c = c + 1 >= range.upperBound ? range.lowerBound : c + 1
                return c
            }
            guard taken.withLock({ $0.insert(port).inserted }) else { continue }
            if EndpointPreflight.portInUse(host: "127.0.0.1", port: UInt16(port)) == nil { return port }
        }
        return nil
    }
}
