import Foundation
import ScheduleZeroWire
import ZeroMQ

/// `szchaos conform`: wire checks against a live ScheduleZero peer (docs/CHAOS.md, "Conformance probes").
///
/// Every check opens a DEALER of its own (linger 0, bounded waits), so no check can leave a REQ socket stuck and
/// a peer answering one request with several replies is seen. Blocking: call from a thread of your own.
public enum ConformanceRole: String, Sendable, CaseIterable {
    case handler, server
}

public enum ConformanceSeverity: String, Sendable, Comparable {
    case info, warning, error
    var rank: Int { self == .info ? 0 : self == .warning ? 1 : 2 }
    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
}

/// One entry of the catalogue: a stable name, what the wire doc expects, the severity of a deviation.
public struct ConformanceCheck: Sendable {
    public let name: String
    public let roles: Set<ConformanceRole>
    public let expects: String
    public let severity: ConformanceSeverity
}

/// One check's outcome. `severity` is nil when the peer did what was expected.
public struct ConformanceResult: Sendable, Equatable {
    public let name: String
    public let expects: String
    public let seen: String
    public let severity: ConformanceSeverity?
    public let time: Duration
    public var passed: Bool { severity == nil }

    public var json: JSONValue {
        .object(["name": .string(name), "expects": .string(expects), "seen": .string(seen),
                 "status": .string(passed ? "pass" : "fail"), "severity": severity.map { .string($0.rawValue) } ?? .null,
                 "time_ms": .double((time.secondsValue * 1000 * 100).rounded() / 100)])
    }
}

public struct ConformanceReport: Sendable {
    public let endpoint: String
    public let role: ConformanceRole
    public let results: [ConformanceResult]
    public let elapsed: Duration

    /// True when nothing at error severity was found.
    public var passed: Bool { !results.contains { $0.severity == .error } }
    public func count(_ s: ConformanceSeverity) -> Int { results.filter { $0.severity == s }.count }

    public var json: JSONValue {
        .object(["endpoint": .string(endpoint), "role": .string(role.rawValue), "success": .bool(passed),
                 "errors": .int(Int64(count(.error))), "warnings": .int(Int64(count(.warning))), "infos": .int(Int64(count(.info))),
                 "checks": .array(results.map(\.json))])
    }

    public var table: String {
        let rows = results.map { r in [r.passed ? "ok" : r.severity!.rawValue, r.name, r.seen] }
        let w0 = max(6, rows.map { $0[0].count }.max() ?? 0), w1 = max(5, rows.map { $0[1].count }.max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
        var out = pad("RESULT", w0) + "  " + pad("CHECK", w1) + "  SEEN\n"
        for r in rows { out += pad(r[0], w0) + "  " + pad(r[1], w1) + "  " + r[2] + "\n" }
        out += "\(role.rawValue) \(endpoint): \(results.count) checks, \(count(.error)) errors, \(count(.warning)) warnings, "
            + "\(count(.info)) infos: \(passed ? "conforms" : "does not conform")\n"
        return out
    }

    /// JUnit XML: one testcase per check; an error-severity deviation is a failure, the others are in system-out.
    public func junit(suite: String? = nil) -> String {
        let name = suite ?? "conform.\(role.rawValue)"
        let failures = count(.error)
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n"
        x += "  <testsuite name=\"\(ExperimentReport.escape(name))\" tests=\"\(results.count)\" failures=\"\(failures)\" errors=\"0\" skipped=\"0\" time=\"\(ExperimentReport.secs(elapsed))\">\n"
        x += "    <properties>\n      <property name=\"endpoint\" value=\"\(ExperimentReport.escape(endpoint))\"/>\n"
        x += "      <property name=\"role\" value=\"\(role.rawValue)\"/>\n    </properties>\n"
        for r in results {
            x += "    <testcase classname=\"\(ExperimentReport.escape(name))\" name=\"\(ExperimentReport.escape(r.name))\" time=\"\(ExperimentReport.secs(r.time))\""
            let text = "expects: \(r.expects)\nseen: \(r.seen)"
            switch r.severity {
            case .error?:
                x += ">\n      <failure message=\"\(ExperimentReport.escape(r.seen))\" type=\"ConformanceError\">\(ExperimentReport.escape(text))</failure>\n    </testcase>\n"
            case let s?:
                x += ">\n      <system-out>\(ExperimentReport.escape("\(s.rawValue): " + text))</system-out>\n    </testcase>\n"
            case nil:
                x += "/>\n"
            }
        }
        x += "  </testsuite>\n</testsuites>\n"
        return x
    }
}

/// What one exchange with the peer gave: every reply frame set received within the window.
struct Exchange {
    var replies: [[[UInt8]]] = []  // each reply: its body frames (after the empty delimiter)
    var sendError: String?
    var answered: Bool { !replies.isEmpty }
    var first: JSONValue? { replies.first.flatMap { $0.count == 1 ? (try? JSON.parse($0[0])) : nil } }
}

/// One run of the catalogue against one peer. Not for concurrent use: `run()` from one thread at a time.
public final class ConformanceProbe: @unchecked Sendable {
    public let endpoint: String
    public let role: ConformanceRole
    public let timeout: Duration
    /// How long after the first reply more replies to the same request are waited for.
    public let extraReplyWindow: Duration
    private let context: Context
    private var seenReplies: [[[UInt8]]] = []
    private let probeID: String

    public init(endpoint: String, role: ConformanceRole, timeout: Duration = .seconds(2), extraReplyWindow: Duration = .milliseconds(300)) throws {
        self.endpoint = endpoint
        self.role = role
        self.timeout = timeout
        self.extraReplyWindow = extraReplyWindow
        context = try Context(label: "conform")
        probeID = "szconform-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    deinit { try? context.terminate(timeout: .seconds(1)) }

    public static let catalogue: [ConformanceCheck] = {
        let both: Set<ConformanceRole> = [.handler, .server]
        return [
            .init(name: "ping.shape", roles: both, expects: "ping -> {\"success\": true, \"message\": \"pong\"} (a handler adds its string handler_id)", severity: .error),
            .init(name: "unknown_method", roles: both, expects: "{\"success\": false, \"error\": \"Unknown method: X\"}", severity: .error),
            .init(name: "invalid_json", roles: both, expects: "a frame that is not JSON -> {\"success\": false, \"error\": \"Invalid JSON\"}", severity: .error),
            .init(name: "non_object_request.array", roles: both, expects: "a JSON array as the request -> one error reply (success false)", severity: .error),
            .init(name: "non_object_request.string", roles: both, expects: "a JSON string as the request -> one error reply (success false)", severity: .error),
            .init(name: "params.missing", roles: both, expects: "{\"method\": \"ping\"} without params (means {}) -> success true", severity: .error),
            .init(name: "params.null", roles: both, expects: "params null -> one reply, a JSON object", severity: .warning),
            .init(name: "params.not_object", roles: both, expects: "params a JSON array -> an error reply (success false)", severity: .warning),
            .init(name: "multipart", roles: both, expects: "a two-frame request -> ONE error reply (not one reply per frame)", severity: .error),
            .init(name: "empty_frame", roles: both, expects: "a zero-byte frame -> an error reply", severity: .error),
            .init(name: "oversized_frame", roles: both, expects: "a 2 MiB request -> an error reply or a dropped connection; the peer keeps answering ping", severity: .error),
            .init(name: "non_utf8", roles: both, expects: "JSON with bytes that are not UTF-8 -> an error reply", severity: .warning),
            .init(name: "register.missing_params", roles: [.server], expects: "register without params -> an error reply, nothing recorded", severity: .error),
            .init(name: "register.missing_handler_id", roles: [.server], expects: "register without handler_id -> an error reply", severity: .error),
            .init(name: "register.missing_address", roles: [.server], expects: "register without address -> an error reply", severity: .error),
            .init(name: "register.first", roles: [.server], expects: "register {handler_id, address, methods} -> success true, status \"registered\", message \"Handler '<id>' registered successfully\"", severity: .error),
            .init(name: "register.again", roles: [.server], expects: "the same register again -> status \"re-registered\"", severity: .error),
            .init(name: "report_status.known", roles: [.server], expects: "report_status {handler_id, status: offline} for a registered id -> {success: true, handler_id, status}", severity: .error),
            .init(name: "report_status.unknown", roles: [.server], expects: "report_status for an unknown id -> {\"success\": false, \"error\": \"Handler not registered\"}", severity: .error),
            .init(name: "reply.shape", roles: both, expects: "every reply is one frame: a JSON object with a boolean success", severity: .error),
            .init(name: "alive_after", roles: both, expects: "after every check the peer still answers ping", severity: .error),
        ]
    }()

    public static func checks(for role: ConformanceRole) -> [ConformanceCheck] { catalogue.filter { $0.roles.contains(role) } }

    // MARK: Running

    public func run() -> ConformanceReport {
        let clock = ContinuousClock()
        let start = clock.now
        var results: [ConformanceResult] = []
        for check in Self.checks(for: role) {
            let t0 = clock.now
            let (severity, seen) = perform(check)
            results.append(ConformanceResult(name: check.name, expects: check.expects, seen: seen, severity: severity, time: clock.now - t0))
        }
        return ConformanceReport(endpoint: endpoint, role: role, results: results, elapsed: clock.now - start)
    }

    /// Whether the peer answers ping, judged patiently: "it hangs" is a strong verdict, and a peer that is only
    /// slow (a busy machine, a 2 MiB request still being parsed, a socket being reopened after a swallowed
    /// request) answers within the budget. One DEALER stays open for the whole budget and sends a fresh ping
    /// every `patience`: the earlier pings stay queued on it. (Three pings on three sockets, each closed after a
    /// second, once called a slow peer hung: closing a socket discards the ping still queued at the peer, so a
    /// peer busy for three seconds never saw one.)
    func stillAnswersPing() -> Bool {
        let patience = max(timeout, .seconds(1))
        let budget = max(patience * 3, .seconds(10))
        let ping = JSON.encode(.object(["method": "ping", "params": .object([:])]))
        guard let socket = try? context.socket(.dealer) else { return false }
        defer { socket.close(linger: .zero) }
        guard (try? socket.setLinger(.zero)) != nil, (try? socket.setSendTimeout(patience)) != nil,
              (try? socket.connect(endpoint)) != nil else { return false }
        let clock = ContinuousClock()
        let end = clock.now + budget
        while clock.now < end {
            guard (try? socket.send(multipart: [[], ping])) != nil else { continue }
            let next = min(end, clock.now + patience)
            while clock.now < next {
                guard let ev = try? socket.poll(.pollIn, timeout: next - clock.now), ev.contains(.pollIn),
                      let parts = try? socket.receiveMultipart(flags: .dontWait) else { continue }
                if !parts.isEmpty { return true }
            }
        }
        return false
    }

    /// Sends `frames` as one request on a fresh DEALER and collects every reply until `timeout` passed without one
    /// (or `extraReplyWindow` after the first).
    func exchange(_ frames: [[UInt8]], wait: Duration? = nil) -> Exchange {
        var ex = Exchange()
        let socket: Socket
        do {
            socket = try context.socket(.dealer)
            try socket.setLinger(.zero)
            try socket.connect(endpoint)
        } catch {
            ex.sendError = "\(error)"
            return ex
        }
        defer { socket.close(linger: .zero) }
        do {
            try socket.setSendTimeout(wait ?? timeout)
            try socket.send(multipart: [[]] + frames)
        } catch {
            ex.sendError = "\(error)"
            return ex
        }
        let clock = ContinuousClock()
        var deadline = clock.now + (wait ?? timeout)
        while clock.now < deadline {
            guard let ev = try? socket.poll(.pollIn, timeout: deadline - clock.now), ev.contains(.pollIn),
                  var parts = try? socket.receiveMultipart(flags: .dontWait) else { continue }
            if parts.first?.isEmpty == true { parts.removeFirst() }
            ex.replies.append(parts)
            seenReplies.append(parts)
            if ex.replies.count == 1 { deadline = min(deadline, clock.now + extraReplyWindow) }
        }
        return ex
    }

    func request(_ object: JSONValue, wait: Duration? = nil) -> Exchange { exchange([JSON.encode(object)], wait: wait) }

    /// A request whose check expects an answer (`params.missing`, `params.null`): unanswered within the check's
    /// timeout, it is sent once more with the patience of the first ping, so a peer that is only slow (busy, or
    /// reopening its socket after the request before) is not judged by one short wait.
    func patientRequest(_ object: JSONValue) -> Exchange {
        let first = request(object)
        return first.answered ? first : request(object, wait: max(timeout, .seconds(2)))
    }

    static func describe(_ ex: Exchange) -> String {
        if let e = ex.sendError { return "send failed: \(e)" }
        guard let r = ex.replies.first else { return "no reply" }
        var s = r.count == 1 ? String(decoding: r[0].prefix(200), as: UTF8.self) : "a reply of \(r.count) frames"
        if ex.replies.count > 1 { s += " (and \(ex.replies.count - 1) more replies)" }
        return s
    }

    /// An exchange expected to give exactly one error reply (success false); `text` when the error text is fixed.
    func expectError(_ ex: Exchange, text: String? = nil, severity: ConformanceSeverity) -> (ConformanceSeverity?, String) {
        let seen = Self.describe(ex)
        guard ex.answered else { return (.error, seen) }  // a request left unanswered is always an error
        guard ex.replies.count == 1 else { return (.error, seen) }
        guard let obj = ex.first?.objectValue else { return (.error, seen) }
        guard obj["success"]?.boolValue == false else { return (severity, seen) }
        if let text, obj["error"]?.stringValue != text { return (severity, seen) }
        return (nil, seen)
    }

    func expectSuccess(_ ex: Exchange, _ extra: ([String: JSONValue]) -> String?) -> (ConformanceSeverity?, String) {
        let seen = Self.describe(ex)
        guard ex.answered, ex.replies.count == 1, let obj = ex.first?.objectValue else { return (.error, seen) }
        // A reply without `success` counts as success (the wire doc); its form is reply.shape's business.
        guard obj["success"]?.boolValue ?? true else { return (.error, seen) }
        if let problem = extra(obj) { return (.error, "\(problem): \(seen)") }
        return (nil, seen)
    }

    func pingShape(_ obj: [String: JSONValue]) -> String? {
        if obj["message"]?.stringValue != "pong" { return "message is not \"pong\"" }
        if role == .handler, obj["handler_id"]?.stringValue?.isEmpty ?? true { return "no string handler_id" }
        return nil
    }

    private let ping: JSONValue = ["method": "ping", "params": [:]]
    private var registered = false

    func perform(_ check: ConformanceCheck) -> (ConformanceSeverity?, String) {
        switch check.name {
        case "ping.shape":
            // The first contact: a peer that is only slow (a busy machine) gets the patience of `stillAnswersPing`
            // before its ping is judged unanswered.
            var first = request(ping)
            if !first.answered { first = exchange([JSON.encode(ping)], wait: max(timeout, .seconds(2))) }
            return expectSuccess(first, pingShape)
        case "unknown_method":
            let m = "szconform_no_such_method"
            return expectError(request(["method": .string(m), "params": [:]]), text: Wire.unknownMethod(m), severity: .error)
        case "invalid_json":
            return expectError(exchange([Array("{\"method\": \"ping\", ".utf8)]), text: Wire.invalidJSON, severity: .error)
        case "non_object_request.array":
            return expectError(request(["ping"]), severity: .error)
        case "non_object_request.string":
            return expectError(request("ping"), severity: .error)
        case "params.missing":
            return expectSuccess(patientRequest(["method": "ping"])) { _ in nil }
        case "params.null":
            let ex = patientRequest(["method": "ping", "params": nil])
            let seen = Self.describe(ex)
            guard ex.answered else { return (.error, seen) }
            guard ex.replies.count == 1, ex.first?.objectValue != nil else { return (.warning, seen) }
            return (nil, seen)
        case "params.not_object":
            return expectError(request(["method": "ping", "params": [1]]), severity: .warning)
        case "multipart":
            return expectError(exchange([JSON.encode(ping), JSON.encode(ping)]), severity: .error)
        case "empty_frame":
            return expectError(exchange([[]]), severity: .error)
        case "oversized_frame":
            let pad = String(repeating: "x", count: 2 << 20)
            let ex = request(["method": "ping", "params": ["pad": .string(pad)]])
            if ex.answered {
                let (sev, seen) = expectError(ex, severity: .info)
                return (sev, sev == .info ? "accepted a 2 MiB request: \(seen)" : seen)
            }
            // No reply: a dropped connection is fine as long as the peer still answers.
            if stillAnswersPing() { return (nil, "no reply (connection dropped); ping answered right after") }
            return (.error, "no reply, and no reply to ping afterwards: the peer hangs")
        case "non_utf8":
            var bytes = Array("{\"method\": \"ping\", \"params\": {\"x\": \"".utf8)
            bytes += [0xFF, 0xFE, 0xC3]
            bytes += Array("\"}}".utf8)
            return expectError(exchange([bytes]), severity: .warning)
        case "register.missing_params":
            return expectError(request(["method": "register"]), severity: .error)
        case "register.missing_handler_id":
            return expectError(request(["method": "register", "params": ["address": "tcp://127.0.0.1:9", "methods": []]]), severity: .error)
        case "register.missing_address":
            return expectError(request(["method": "register", "params": ["handler_id": .string(probeID + "-noaddr"), "methods": []]]), severity: .error)
        case "register.first", "register.again":
            let status = check.name == "register.first" ? "registered" : "re-registered"
            let ex = request(["method": "register", "params": ["handler_id": .string(probeID), "address": "tcp://127.0.0.1:9",
                                                                "methods": ["ping"]]])
            if ex.answered { registered = true }
            return expectSuccess(ex) { obj in
                if obj["status"]?.stringValue != status { return "status is not \"\(status)\"" }
                if obj["handler_id"]?.stringValue != probeID { return "handler_id is not the one registered" }
                if obj["message"]?.stringValue != "Handler '\(probeID)' \(status) successfully" { return "message differs" }
                return nil
            }
        case "report_status.known":
            let ex = request(["method": "report_status", "params": ["handler_id": .string(probeID), "status": "offline"]])
            if ex.answered { registered = false }
            return expectSuccess(ex) { obj in
                obj["handler_id"]?.stringValue == probeID && obj["status"]?.stringValue == "offline" ? nil : "handler_id or status not echoed"
            }
        case "report_status.unknown":
            return expectError(request(["method": "report_status", "params": ["handler_id": .string(probeID + "-unknown"), "status": "offline"]]),
                               text: Wire.handlerNotRegistered, severity: .error)
        case "reply.shape":
            if registered { _ = request(["method": "report_status", "params": ["handler_id": .string(probeID), "status": "offline"]]) }
            let bad = seenReplies.filter { r in r.count != 1 || (try? JSON.parse(r[0]))?["success"]?.boolValue == nil }
            guard let first = bad.first else { return (nil, "\(seenReplies.count) replies, each an object with a boolean success") }
            let shown = first.count == 1 ? String(decoding: first[0].prefix(200), as: UTF8.self) : "\(first.count) frames"
            return (.error, "\(bad.count) of \(seenReplies.count) replies do not follow the wire, e.g. \(shown)")
        case "alive_after":
            if stillAnswersPing() { return (nil, "ping answered") }
            return expectSuccess(request(ping)) { _ in nil }
        default:
            return (.error, "unknown check")
        }
    }
}
