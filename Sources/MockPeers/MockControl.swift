import ScheduleZeroWire
import ZMQClient

/// Talks to a mock handler's control channel: one request per call, each with its own bounded wait.
///
/// Blocking (it uses `SyncClient`): call it from a thread of your own, never from Swift's cooperative pool.
public enum MockControl {
    /// Sends one control request and returns the reply. Throws `ClientError.noReply` when the handler
    /// does not answer within `timeout` x `attempts`.
    public static func send(_ endpoint: String, _ method: String, params: [String: JSONValue] = [:],
                            timeout: Duration = .seconds(2), attempts: Int = 1) throws -> Reply {
        try SyncClient.with(endpoint: endpoint, configuration: ClientConfiguration(timeout: timeout, attempts: attempts)) {
            try $0.call(method, params: params)
        }
    }

    public static func ping(_ endpoint: String, timeout: Duration = .seconds(2)) throws -> Reply {
        try send(endpoint, "ping", timeout: timeout)
    }

    /// Counters (`requests, replies, dropped, swallowed, delayed, garbage, errors`) and active faults.
    public static func status(_ endpoint: String, timeout: Duration = .seconds(2)) throws -> Reply {
        try send(endpoint, "status", timeout: timeout)
    }

    /// `fault.set` with any of: drop_next, drop_probability, delay_ms, jitter_ms, swallow_next, garbage,
    /// crash_after, crash_exit_code, crash_signal, ignore_sigterm. Returns the reply (check `success`).
    public static func setFaults(_ endpoint: String, _ faults: [String: JSONValue],
                                 timeout: Duration = .seconds(2)) throws -> Reply {
        try send(endpoint, "fault.set", params: faults, timeout: timeout)
    }

    public static func clearFaults(_ endpoint: String, timeout: Duration = .seconds(2)) throws -> Reply {
        try send(endpoint, "fault.clear", timeout: timeout)
    }
}
