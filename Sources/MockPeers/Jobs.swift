import ScheduleZeroWire

/// A job of the mock server: call `method(params)` on handler `handlerID` every `interval`, `count` times
/// (forever when nil).
public struct JobSpec: Sendable, Equatable {
    public var id: String
    public var handlerID: String
    public var method: String
    public var params: [String: JSONValue]
    public var interval: Duration
    public var count: Int?

    public init(id: String, handlerID: String, method: String, params: [String: JSONValue] = [:],
                interval: Duration = .seconds(1), count: Int? = nil) {
        self.id = id
        self.handlerID = handlerID
        self.method = method
        self.params = params
        self.interval = interval
        self.count = count
    }

    /// Parses the `--job` flag form `HANDLER:METHOD[:PARAMS_JSON][@INTERVAL[*COUNT]]`, e.g.
    /// `h-1:increment_counter:{"counter_name":"c"}@200ms*5`. INTERVAL is a number with `ms`, `s` or `m`
    /// (default 1s); COUNT bounds the dispatches (default: forever).
    public static func parse(_ text: String, id: String) throws(PeerError) -> JobSpec {
        var body = Substring(text)
        var interval: Duration = .seconds(1)
        var count: Int?
        if let at = body.lastIndex(of: "@"), !body[body.index(after: at)...].contains("}") {
            var timing = body[body.index(after: at)...]
            body = body[..<at]
            if let star = timing.firstIndex(of: "*") {
                guard let n = Int(timing[timing.index(after: star)...]), n > 0 else {
                    throw .invalidJob("\(text): count after '*' must be a positive integer")
                }
                count = n
                timing = timing[..<star]
            }
            interval = try parseDuration(String(timing), context: text)
        }
        guard let c1 = body.firstIndex(of: ":") else {
            throw .invalidJob("\(text): expected HANDLER:METHOD[:PARAMS_JSON][@INTERVAL[*COUNT]]")
        }
        let handler = String(body[..<c1])
        let rest = body[body.index(after: c1)...]
        let method: String
        var params: [String: JSONValue] = [:]
        if let c2 = rest.firstIndex(of: ":") {
            method = String(rest[..<c2])
            let json = rest[rest.index(after: c2)...]
            guard let v = try? JSON.parse(Array(json.utf8)), let o = v.objectValue else {
                throw .invalidJob("\(text): params must be a JSON object, got \(json)")
            }
            params = o
        } else {
            method = String(rest)
        }
        guard !handler.isEmpty, !method.isEmpty else {
            throw .invalidJob("\(text): handler id and method must not be empty")
        }
        return JobSpec(id: id, handlerID: handler, method: method, params: params, interval: interval, count: count)
    }

    /// `200ms`, `1.5s`, `2m`: a positive duration, read and explained as every duration is (DurationText).
    public static func parseDuration(_ s: String, context: String) throws(PeerError) -> Duration {
        switch DurationText.option(s, "\(context): interval") {
        case .success(let d): return d
        case .failure(let problem): throw .invalidJob(problem.description)
        }
    }

    /// Parses a jobs file: a JSON array (or `{"jobs": [...]}`) of
    /// `{"id"?, "handler_id", "method", "params"?, "interval_ms"? (default 1000), "count"?}`.
    public static func parseFile(_ bytes: [UInt8]) throws(PeerError) -> [JobSpec] {
        let v: JSONValue
        do { v = try JSON.parse(bytes) } catch { throw .invalidJob("jobs file: \(error)") }
        guard let list = v.arrayValue ?? v["jobs"]?.arrayValue else {
            throw .invalidJob("jobs file: expected a JSON array of jobs or {\"jobs\": [...]}")
        }
        var out: [JobSpec] = []
        for (n, item) in list.enumerated() {
            guard let o = item.objectValue, let h = o["handler_id"]?.stringValue, let m = o["method"]?.stringValue else {
                throw .invalidJob("jobs file: job #\(n + 1) needs string handler_id and method")
            }
            let params = o["params"]?.objectValue ?? [:]
            let ms = o["interval_ms"]?.intValue ?? 1000
            guard ms > 0 else { throw .invalidJob("jobs file: job #\(n + 1): interval_ms must be > 0") }
            let count = o["count"]?.intValue.map { Int($0) }
            if let c = count, c <= 0 { throw .invalidJob("jobs file: job #\(n + 1): count must be > 0") }
            out.append(JobSpec(id: o["id"]?.stringValue ?? "job-\(n + 1)", handlerID: h, method: m, params: params,
                               interval: .milliseconds(ms), count: count))
        }
        return out
    }
}
