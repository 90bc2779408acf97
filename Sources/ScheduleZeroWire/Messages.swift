/// A ScheduleZero request: `{"method": "<name>", "params": {...}}`, one ZeroMQ frame of UTF-8 JSON.
public struct Request: Hashable, Sendable {
    public var method: String
    public var params: [String: JSONValue]

    public init(method: String, params: [String: JSONValue] = [:]) {
        self.method = method
        self.params = params
    }

    public var json: JSONValue { .object(["method": .string(method), "params": .object(params)]) }
    public func encoded() -> [UInt8] { JSON.encode(json) }

    /// Why a frame is not a request. `replyText` is the exact error text a ScheduleZero peer answers with.
    public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        /// Not JSON at all. Upstream answers `Invalid JSON`.
        case invalidJSON(JSON.ParseError)
        /// JSON, but not an object (upstream crashes its loop on this; we answer instead).
        case notAnObject
        /// No `method`, or a `method` that is not a string.
        case missingMethod
        /// `params` present but not an object.
        case paramsNotAnObject

        public var replyText: String {
            switch self {
            case .invalidJSON: Wire.invalidJSON
            case .notAnObject: "Invalid request: expected a JSON object"
            case .missingMethod: "Invalid request: missing method"
            case .paramsNotAnObject: "Invalid request: params must be an object"
            }
        }

        public var description: String {
            switch self {
            case .invalidJSON(let e): "\(Wire.invalidJSON): \(e)"
            default: replyText
            }
        }
    }

    /// Decodes one frame. A missing or `null` `params` is `{}`, as upstream's `request.get("params", {})`.
    public static func decode(_ frame: some Collection<UInt8>) throws(DecodeError) -> Request {
        let value: JSONValue
        do { value = try JSON.parse(frame) } catch { throw .invalidJSON(error) }
        guard case .object(let o) = value else { throw .notAnObject }
        guard case .string(let method)? = o["method"] else { throw .missingMethod }
        switch o["params"] {
        case nil, .null?: return Request(method: method)
        case .object(let p)?: return Request(method: method, params: p)
        default: throw .paramsNotAnObject
        }
    }
}

/// A ScheduleZero reply: a JSON object that holds a boolean `success` (a reply without it counts as success).
public struct Reply: Hashable, Sendable {
    public var fields: [String: JSONValue]

    public init(fields: [String: JSONValue]) { self.fields = fields }

    /// `{"success": true, ...fields}`.
    public static func ok(_ fields: [String: JSONValue] = [:]) -> Reply {
        var f = fields
        f["success"] = true
        return Reply(fields: f)
    }

    /// `{"success": false, "error": text}`.
    public static func failure(_ text: String) -> Reply { Reply(fields: ["success": false, "error": .string(text)]) }

    /// Upstream's wrapping of a handler method's return value: a dict gets `success: true` when missing,
    /// any other value comes back as `{"success": true, "result": value}`.
    public static func wrapping(_ result: JSONValue) -> Reply {
        if case .object(var o) = result {
            if o["success"] == nil { o["success"] = true }
            return Reply(fields: o)
        }
        return Reply(fields: ["success": true, "result": result])
    }

    public var success: Bool { fields["success"]?.boolValue ?? true }
    public var error: String? { fields["error"]?.stringValue }
    public subscript(key: String) -> JSONValue? { fields[key] }

    public func encoded() -> [UInt8] { JSON.encode(.object(fields)) }

    public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        case invalidJSON(JSON.ParseError)
        case notAnObject(JSONValue)
        /// `success` present but not a boolean.
        case successNotBoolean

        public var description: String {
            switch self {
            case .invalidJSON(let e): "reply is not JSON: \(e)"
            case .notAnObject(let v): "reply is not a JSON object: \(JSON.string(v).prefix(80))"
            case .successNotBoolean: "reply has a 'success' that is not a boolean"
            }
        }
    }

    public static func decode(_ frame: some Collection<UInt8>) throws(DecodeError) -> Reply {
        let value: JSONValue
        do { value = try JSON.parse(frame) } catch { throw .invalidJSON(error) }
        guard case .object(let o) = value else { throw .notAnObject(value) }
        if let s = o["success"], s.boolValue == nil { throw .successNotBoolean }
        return Reply(fields: o)
    }
}

/// Constants of the ScheduleZero protocol.
public enum Wire {
    public static let invalidJSON = "Invalid JSON"
    public static func unknownMethod(_ name: String) -> String { "Unknown method: \(name)" }
    public static let handlerNotRegistered = "Handler not registered"
    /// Our answer to a multipart request (upstream answers each frame, leaving the caller the last reply).
    public static let multipartRejected = "Invalid request: multipart messages are not part of the protocol"
    public static func tooLarge(_ size: Int, limit: Int) -> String {
        "Invalid request: message of \(size) bytes exceeds the limit of \(limit)"
    }

    /// Default registration endpoint of the real server, by deployment.
    public static let defaultServerPort = 4242
    /// Upstream per-call timeout and retry rule of the server.
    public static let upstreamCallTimeout: Duration = .seconds(10)
    public static let upstreamAttempts = 3
}
