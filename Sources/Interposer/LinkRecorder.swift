// What an interposed link saw, exchange by exchange, and what follows from it without the service's help:
// lost requests, late replies and duplicate executions. Owned by the proxy thread (not thread-safe); the
// counters it keeps are copied into the proxy's shared state for `status`.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ScheduleZeroWire

/// Counters of one link, from the moment its interposer started.
public struct LinkCounters: Sendable, Equatable {
    public var requests = 0
    /// Requests that reached the handler.
    public var forwarded = 0
    /// Replies that came back from the handler (it executed the request).
    public var executed = 0
    /// Replies that reached their requester.
    public var delivered = 0
    /// Forwarded and never answered within the link's timeout.
    public var lost = 0
    /// Answered after the requester had gone (its REQ socket closed: it gave up and reopened).
    public var late = 0
    /// A request that reached the handler again after an earlier copy ran there without its reply reaching
    /// the requester (dropped, late, or still running): the handler executed the same job twice.
    public var duplicateExecutions = 0
    /// Requests and replies that a fault kept from their destination.
    public var faulted = 0
    /// `register` requests whose address was rewritten to the handler's public endpoint.
    public var rewrites = 0

    public init() {}

    public var json: JSONValue {
        .object([
            "requests": .int(Int64(requests)), "forwarded": .int(Int64(forwarded)), "executed": .int(Int64(executed)),
            "delivered": .int(Int64(delivered)), "lost": .int(Int64(lost)), "late": .int(Int64(late)),
            "duplicate_executions": .int(Int64(duplicateExecutions)), "faulted": .int(Int64(faulted)),
            "rewrites": .int(Int64(rewrites)),
        ])
    }
}

final class LinkRecorder {
    struct Exchange {
        var id: Int
        var method: String
        /// `method` is one of `idempotent`.
        var idempotent = false
        var hash: UInt64
        var size: Int
        var arrived: ContinuousClock.Instant
        var forwardedAt: ContinuousClock.Instant?
        var executedAt: ContinuousClock.Instant?
    }
    /// A copy forwarded while an earlier copy of the same request was still running on the handler: a
    /// duplicate execution once both have answered.
    struct Pair {
        var earlier: Int
        var retry: Int
        var answered: Set<Int> = []
    }
    private var pairs: [Pair] = []

    let link: String
    let timeout: Duration
    private let journal: JournalWriter?
    private let clock = ContinuousClock()
    private(set) var counters = LinkCounters()
    private var nextID = 0
    private var open: [Int: Exchange] = [:]
    /// Forwarded exchanges in order, for the lost-request deadline (one timeout for all: FIFO is deadline order).
    private var deadlines: [(id: Int, due: ContinuousClock.Instant)] = []
    private var deadlineHead = 0
    /// By request hash: the newest exchange that ran (or is running) on the handler without its reply having
    /// reached the requester. A forwarded copy of the same request counts a duplicate execution.
    private var unconfirmed: [UInt64: (id: Int, at: ContinuousClock.Instant, running: Bool)] = [:]
    /// Methods whose repetition is no duplicate execution (the server pings a cached client before reuse).
    static let idempotent: Set<String> = ["ping"]
    /// Method names seen, by the FNV-1a of their bytes: a request's method becomes a String once per name,
    /// not once per request.
    private var methods: [UInt64: (name: String, idempotent: Bool)] = [:]

    init(link: String, timeout: Duration, journalPath: String?) throws {
        self.link = link
        self.timeout = timeout
        journal = try journalPath.map { try JournalWriter(path: $0) }
    }

    // MARK: Requests

    func request(_ body: [UInt8]) -> Int { body.withUnsafeBytes { request($0) } }

    /// A request arrived: its method, hash and size are read from the bytes (in the received frame).
    func request(_ body: UnsafeRawBufferPointer) -> Int {
        nextID += 1
        counters.requests += 1
        let (method, idempotent) = methodName(body)
        open[nextID] = Exchange(id: nextID, method: method, idempotent: idempotent, hash: Self.hash(body),
                                size: body.count, arrived: clock.now)
        return nextID
    }

    /// `method(of:)` as a String made once per name.
    private func methodName(_ body: UnsafeRawBufferPointer) -> (String, Bool) {
        guard let r = Self.methodRange(body) else { return ("?", false) }
        let bytes = UnsafeRawBufferPointer(rebasing: body[r])
        let h = Self.hash(bytes)
        if let known = methods[h], known.name.utf8.elementsEqual(bytes) { return known }
        let name = String(decoding: bytes, as: UTF8.self)
        let entry = (name, Self.idempotent.contains(name))
        if methods.count >= 1024 { methods.removeAll(keepingCapacity: true) }
        methods[h] = entry
        return entry
    }

    func rewrote(_ id: Int, from: String, to: String) {
        counters.rewrites += 1
        journal?.line { j in
            j.field("event", "rewrite"); j.field("id", id); j.field("from", from); j.field("to", to)
        }
    }

    /// The request will not reach the handler: a fault kept it.
    func notForwarded(_ id: Int, fault: String) {
        guard let x = open.removeValue(forKey: id) else { return }
        counters.faulted += 1
        journal?.line { j in
            j.field("event", "request"); j.field("id", id); j.field("method", x.method); j.field("size", x.size)
            j.field("fault", fault); j.field("forwarded", false)
        }
    }

    func forwarded(_ id: Int, fault: String?) {
        guard var x = open[id], x.forwardedAt == nil else { return }
        let now = clock.now
        x.forwardedAt = now
        counters.forwarded += 1
        var duplicateOf: Int?
        if !x.idempotent, let earlier = unconfirmed[x.hash] {
            if earlier.running {
                pairs.append(Pair(earlier: earlier.id, retry: id))  // confirmed once both have answered
            } else {
                duplicateOf = earlier.id
            }
        }
        if !x.idempotent { unconfirmed[x.hash] = (id, now, true) }
        open[id] = x
        deadlines.append((id, now.advanced(by: timeout)))
        journal?.line { j in
            j.field("event", "request"); j.field("id", id); j.field("method", x.method); j.field("size", x.size)
            j.field("fault", fault ?? "none"); j.field("forwarded", true)
        }
        if let duplicateOf { duplicate(x, of: duplicateOf) }
    }

    /// The handler ran exchange `id` once more than it was asked to (a `duplicate` fault sent it twice).
    func extraExecution(of id: Int, cause: String) {
        counters.duplicateExecutions += 1
        let method = open[id]?.method ?? "?"
        journal?.line { j in
            j.field("event", "duplicate_execution"); j.field("id", id); j.field("of", id); j.field("method", method)
            j.field("cause", cause)
        }
    }

    private func duplicate(_ x: Exchange, of earlier: Int) {
        counters.duplicateExecutions += 1
        journal?.line { j in
            j.field("event", "duplicate_execution"); j.field("id", x.id); j.field("of", earlier); j.field("method", x.method)
            j.field("cause", "retry")
        }
    }

    // MARK: Replies

    /// The handler answered exchange `id` (it executed the request).
    func executed(_ id: Int) {
        guard var x = open[id], x.executedAt == nil else { return }
        x.executedAt = clock.now
        counters.executed += 1
        open[id] = x
        if let u = unconfirmed[x.hash], u.id == id { unconfirmed[x.hash] = (id, u.at, false) }
        var i = 0
        while i < pairs.count {
            if pairs[i].earlier == id || pairs[i].retry == id { pairs[i].answered.insert(id) }
            if pairs[i].answered.count == 2 {
                let p = pairs.remove(at: i)
                duplicate(Exchange(id: p.retry, method: x.method, hash: x.hash, size: x.size, arrived: x.arrived), of: p.earlier)
            } else {
                i += 1
            }
        }
    }

    /// The reply reached its requester (`ok`), or not: a fault kept it, or the requester had gone (`late`).
    func replied(_ id: Int, delivered ok: Bool, fault: String?, late: Bool = false) {
        guard let x = open.removeValue(forKey: id) else { return }
        let now = clock.now
        if ok {
            counters.delivered += 1
            if let u = unconfirmed[x.hash], u.id == id { unconfirmed[x.hash] = nil }
        } else {
            if late { counters.late += 1 } else { counters.faulted += 1 }
        }
        let latency = (now - x.arrived).millis
        let handler = x.forwardedAt.flatMap { f in x.executedAt.map { ($0 - f).millis } }
        journal?.line { j in
            j.field("event", "reply"); j.field("id", id); j.field("method", x.method)
            j.field("latency_ms", latency)
            if let handler { j.field("handler_ms", handler) }
            j.field("fault", fault ?? "none"); j.field("delivered", ok)
            if late { j.field("late", true) }
        }
    }

    // MARK: Time

    /// Declares lost what was forwarded and not answered within the timeout; forgets old unconfirmed runs.
    func tick(now: ContinuousClock.Instant = ContinuousClock.now) {
        while deadlineHead < deadlines.count, deadlines[deadlineHead].due <= now {
            let (id, _) = deadlines[deadlineHead]
            deadlineHead += 1
            if let x = open[id], x.executedAt == nil {
                open[id] = nil
                counters.lost += 1
                journal?.line { j in
                    j.field("event", "lost"); j.field("id", id); j.field("method", x.method)
                    j.field("after_ms", timeout.millis)
                }
                if let u = unconfirmed[x.hash], u.id == id { unconfirmed[x.hash] = nil }
                pairs.removeAll { $0.earlier == id || $0.retry == id }  // never answered: not known to have run
            } else if let x = open[id], x.executedAt != nil {
                open[id] = nil  // answered, but the reply was never sent on (held past the timeout)
            }
        }
        if deadlineHead > 4096 {
            deadlines.removeFirst(deadlineHead)
            deadlineHead = 0
        }
        if unconfirmed.count > 10_000 {
            let horizon = now.advanced(by: .zero - timeout * 6)
            unconfirmed = unconfirmed.filter { $0.value.at > horizon }
        }
    }

    /// The shortest wait until a lost-request deadline, for the proxy's poll.
    var nextDeadline: ContinuousClock.Instant? { deadlineHead < deadlines.count ? deadlines[deadlineHead].due : nil }

    func started(listen: String, upstream: String) {
        journal?.line { j in j.field("event", "link_started"); j.field("listen", listen); j.field("upstream", upstream) }
        journal?.flush()
    }

    func stopped() {
        journal?.line { j in
            j.field("event", "link_stopped")
            j.raw("counters", JSON.string(counters.json))
        }
        journal?.close()
    }

    func flush() { journal?.flush() }

    // MARK: Cheap looks at a body

    /// The `method` of a JSON request body without decoding it (the value of the first `"method"` key);
    /// `?` when there is none (not JSON, garbage).
    static func method(of body: [UInt8]) -> String {
        body.withUnsafeBytes { b in Self.methodRange(b).map { String(decoding: b[$0], as: UTF8.self) } ?? "?" }
    }

    /// Where `method(of:)` finds the method's bytes; nil for `?`.
    static func methodRange(_ body: UnsafeRawBufferPointer) -> Range<Int>? {
        let key = methodKey
        guard body.count > key.count + 3 else { return nil }
        var i = 0
        let n = body.count
        outer: while i + key.count <= n {
            for k in 0..<key.count where body[i + k] != key[k] { i += 1; continue outer }
            var j = i + key.count
            while j < n, body[j] == 0x20 || body[j] == 0x3A || body[j] == 0x09 { j += 1 }  // spaces and the colon
            guard j < n, body[j] == 0x22 else { return nil }
            let start = j + 1
            var end = start
            while end < n, body[end] != 0x22, end - start < 128 { end += 1 }
            return start..<end
        }
        return nil
    }

    private static let methodKey: [UInt8] = Array(#""method""#.utf8)

    /// FNV-1a of the body: equal requests (the server's retry resends the same bytes) hash equal.
    static func hash(_ body: [UInt8]) -> UInt64 { body.withUnsafeBytes { hash($0) } }

    static func hash(_ body: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in body { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

extension Duration {
    var millis: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}

/// One JSON object per line, built straight into a byte buffer (no Foundation encoder on the proxy's hot
/// path) and written with write(2) when the buffer is large or the proxy is idle. Opened close-on-exec,
/// append-only, mode 0640, never through a symlink.
final class JournalWriter {
    /// The buffer and the file: a struct, so a whole line is one access to it (not one per byte appended).
    private var out: JournalLine

    init(path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        guard fd >= 0 else {
            throw ChaosProxyError.cannotBind(what: "journal", endpoint: path, reason: String(cString: strerror(errno)))
        }
        fchmod(fd, 0o640)
        out = JournalLine(fd: fd)
    }

    deinit {
        close()
        out.storage.deallocate()
    }

    /// Appends one line: `{"t": <now>, <what body writes>}`.
    func line(_ body: (inout JournalLine) -> Void) { out.line(body) }

    func flush() { out.flush() }

    func close() {
        out.flush()
        if out.fd >= 0 { Glibc.close(out.fd) }
        out.fd = -1
    }
}

/// The journal's buffer (a fixed allocation, flushed at 64 KiB) and the fields of a line.
struct JournalLine {
    fileprivate var fd: CInt
    fileprivate let storage: UnsafeMutablePointer<UInt8>
    private var count = 0
    private var first = true
    private static let capacity = 1 << 17
    private static let flushAt = 1 << 16

    fileprivate init(fd: CInt) {
        self.fd = fd
        storage = .allocate(capacity: Self.capacity)
    }

    fileprivate mutating func line(_ body: (inout JournalLine) -> Void) {
        append(UInt8(ascii: "{"))
        first = true
        field("t", Date().timeIntervalSince1970)
        body(&self)
        append(UInt8(ascii: "}"))
        append(UInt8(ascii: "\n"))
        if count >= Self.flushAt { flush() }
    }

    private mutating func append(_ b: UInt8) {
        if count == Self.capacity { flush() }
        storage[count] = b
        count += 1
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > Self.capacity { flush() }
        if bytes.count > Self.capacity {
            write(base, bytes.count)
            return
        }
        UnsafeMutableRawPointer(storage + count).copyMemory(from: base, byteCount: bytes.count)
        count += bytes.count
    }

    private mutating func append(_ s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    private mutating func append(_ s: String) {
        var s = s
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// The decimal digits of `v`, as `String(v)` writes them.
    private mutating func appendInt(_ v: Int64) {
        if count + 21 > Self.capacity { flush() }
        if v < 0 { append(UInt8(ascii: "-")) }
        var x = v.magnitude
        var digits = 1
        var p: UInt64 = 10
        while digits < 20 && x >= p {
            digits += 1
            p = p &* 10
        }
        var i = count + digits
        count = i
        repeat {
            i -= 1
            storage[i] = UInt8(ascii: "0") + UInt8(x % 10)
            x /= 10
        } while x > 0
    }

    private mutating func key(_ k: StaticString) {
        if !first { append(UInt8(ascii: ",")) }
        first = false
        append(UInt8(ascii: "\""))
        append(k)
        append(UInt8(ascii: "\""))
        append(UInt8(ascii: ":"))
    }

    mutating func field(_ k: StaticString, _ v: String) {
        key(k)
        // What `JSON.encode` writes, without its intermediate String: bytes it would not escape go as they are.
        var v = v
        let plain = v.withUTF8 { b in !b.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") } }
        if plain {
            append(UInt8(ascii: "\""))
            append(v)
            append(UInt8(ascii: "\""))
        } else {
            JSON.encode(.string(v)).withUnsafeBytes { append($0) }
        }
    }

    mutating func field(_ k: StaticString, _ v: Int) {
        key(k)
        appendInt(Int64(v))
    }

    mutating func field(_ k: StaticString, _ v: Double) {
        key(k)
        appendFixed3(v)
    }

    /// `String(format: "%.3f", v)`, byte for byte, without Foundation's formatter (the costliest step of a
    /// journal line). Rounding v * 1000 to an integer decides like "%.3f" except within the product's rounding
    /// error of a half; those values, and any beyond 2^52 / 1000 or not finite, go to the formatter.
    private mutating func appendFixed3(_ v: Double) {
        let scaled = v.magnitude * 1000
        let fraction = scaled - scaled.rounded(.down)
        guard v.isFinite, scaled < 4.5e15, (fraction - 0.5).magnitude > 1e-3 else {
            append(String(format: "%.3f", v))
            return
        }
        let n = Int64(scaled.rounded(.toNearestOrEven))
        if v.sign == .minus { append(UInt8(ascii: "-")) }  // "%.3f" keeps the sign of -0.0001 and -0.0
        appendInt(n / 1000)
        append(UInt8(ascii: "."))
        let f = Int(n % 1000)
        append(UInt8(ascii: "0") + UInt8(f / 100))
        append(UInt8(ascii: "0") + UInt8(f / 10 % 10))
        append(UInt8(ascii: "0") + UInt8(f % 10))
    }

    mutating func field(_ k: StaticString, _ v: Bool) {
        key(k)
        append(v ? "true" : "false" as StaticString)
    }

    mutating func raw(_ k: StaticString, _ json: String) {
        key(k)
        append(json)
    }

    mutating func flush() {
        guard count > 0 else { return }
        write(storage, count)
        count = 0
    }

    private func write(_ p: UnsafeRawPointer, _ n: Int) {
        guard fd >= 0 else { return }
        var offset = 0
        while offset < n {
            let w = Glibc.write(fd, p + offset, n - offset)
            if w < 0 && errno == EINTR { continue }
            if w <= 0 { break }
            offset += w
        }
    }
}
