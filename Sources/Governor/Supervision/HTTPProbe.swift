// A tiny blocking HTTP/1.1 GET for readiness and liveness probes: connect (non-blocking, with a deadline),
// send `GET path HTTP/1.1` with `Connection: close`, read the status line, close. Nothing else of HTTP is
// needed: a probe passes on a 2xx status.
//
// Why not FlyingFox or URLSession: FlyingFox is a server and lives in GovernorHTTP (the Governor library is
// used by the chaos tool, which must not pull the HTTP stack in); URLSession (FoundationNetworking) drags
// libcurl into every tool and runs its callbacks on its own queues, with no hard per-call deadline. These
// 150 lines block only the thread that calls them, and every wait in them is a `poll` bounded by the deadline.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ScheduleZeroWire

/// `http://host[:port][/path]`, as the probes accept it (no TLS, no user info).
public struct HTTPURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// Path and query, starting with `/`.
    public var path: String

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "http://\(h):\(port)\(path)"
    }

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public let reason: String
        public var description: String { reason }
    }

    public init(host: String, port: Int = 80, path: String = "/") {
        self.host = host
        self.port = port
        self.path = path
    }

    public init(parsing text: String) throws(Invalid) {
        guard text.hasPrefix("http://") else {
            if text.hasPrefix("https://") { throw Invalid(reason: "https is not supported by the probe (plain http:// only)") }
            throw Invalid(reason: "expected an http:// URL like http://127.0.0.1:8888/api/health, got \"\(text)\"")
        }
        let rest = text.dropFirst("http://".count)
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var path = String(rest[slash...])
        if path.isEmpty { path = "/" } else if path.first == "?" { path = "/" + path }
        guard !authority.isEmpty, !authority.contains("@") else { throw Invalid(reason: "no host in \"\(text)\"") }
        var host = String(authority)
        var port = 80
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { throw Invalid(reason: "unclosed [ in \"\(text)\"") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":", let p = Int(after.dropFirst()) else { throw Invalid(reason: "bad port in \"\(text)\"") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]) else { throw Invalid(reason: "bad port in \"\(text)\"") }
            port = p
        }
        guard !host.isEmpty else { throw Invalid(reason: "no host in \"\(text)\"") }
        guard (1...65535).contains(port) else { throw Invalid(reason: "port \(port) is not in 1-65535 in \"\(text)\"") }
        guard !path.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) else {
            throw Invalid(reason: "the path may not contain spaces or line breaks: \"\(text)\"")
        }
        self.init(host: host, port: port, path: path)
    }
}

public enum HTTPProbe {
    /// Why a GET did not give a status.
    public struct Failure: Error, CustomStringConvertible, Sendable, Equatable {
        public let reason: String
        public var description: String { reason }
    }

    /// Blocking: GET `url`, returning the status code, or why there is none, by `timeout` at the latest.
    /// Call it from a thread of your own, never from Swift's cooperative pool.
    public static func get(_ url: HTTPURL, timeout: Duration) -> Result<Int, Failure> {
        let deadline = ContinuousClock.now + timeout
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(url.host, String(url.port), &hints, &list)
        guard rc == 0, let first = list else {
            return .failure(Failure(reason: "cannot resolve \(url.host): \(String(cString: gai_strerror(rc)))"))
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address for \(url.host)"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            defer { ai = a.pointee.ai_next }
            let fd = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            if fd < 0 { lastError = "socket: \(String(cString: strerror(errno)))"; continue }
            defer { close(fd) }
            switch exchange(fd, a.pointee.ai_addr, a.pointee.ai_addrlen, url, deadline) {
            case .success(let status): return .success(status)
            case .failure(let f):
                lastError = f.reason
                if ContinuousClock.now >= deadline { return .failure(f) }
            }
        }
        return .failure(Failure(reason: lastError))
    }

    private static func exchange(_ fd: Int32, _ addr: UnsafeMutablePointer<sockaddr>, _ len: socklen_t, _ url: HTTPURL,
                                 _ deadline: ContinuousClock.Instant) -> Result<Int, Failure> {
        let target = "\(url.host):\(url.port)"
        if connect(fd, addr, len) != 0 {
            guard errno == EINPROGRESS else { return .failure(Failure(reason: "connect to \(target): \(String(cString: strerror(errno)))")) }
            guard wait(fd, Int16(POLLOUT), deadline) else { return .failure(Failure(reason: "connect to \(target): timed out")) }
            var err: Int32 = 0
            var l = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l)
            if err != 0 { return .failure(Failure(reason: "connect to \(target): \(String(cString: strerror(err)))")) }
        }
        let hostHeader = url.host.contains(":") ? "[\(url.host)]:\(url.port)" : "\(url.host):\(url.port)"
        let request = Array("GET \(url.path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: szgovernor-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sent, request.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                guard wait(fd, Int16(POLLOUT), deadline) else { return .failure(Failure(reason: "GET \(url): send timed out")) }
                continue
            }
            return .failure(Failure(reason: "GET \(url): send: \(String(cString: strerror(errno)))"))
        }
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while !got.contains(0x0A) && got.count < 8192 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 { got.append(contentsOf: buffer[0..<n]); continue }
            if n == 0 { break }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                guard wait(fd, Int16(POLLIN), deadline) else { return .failure(Failure(reason: "GET \(url): no reply within the timeout")) }
                continue
            }
            return .failure(Failure(reason: "GET \(url): recv: \(String(cString: strerror(errno)))"))
        }
        let line = String(decoding: got.prefix { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
        let parts = line.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100...999).contains(status) else {
            return .failure(Failure(reason: "GET \(url): not an HTTP reply (\(line.isEmpty ? "connection closed" : "\"\(line.prefix(60))\""))"))
        }
        return .success(status)
    }

    /// Waits for `events` on `fd` until `deadline`; false on timeout.
    private static func wait(_ fd: Int32, _ events: Int16, _ deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let left = deadline - ContinuousClock.now
            if left <= .zero { return false }
            let ms = Int32(min(max(1, left.msDouble.rounded(.up)), 60_000))
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, ms)
            if r > 0 { return true }
            if r < 0 && errno != EINTR { return true }  // let the next call report the error
        }
    }
}

/// Readiness `{http: URL, timeout: 10s, interval: 100ms, within: 1s}`: ready when a GET answers 2xx.
/// Each GET waits at most `within` (and never past the deadline); between attempts the probe waits
/// `interval`. The GETs run on a thread of their own; the awaiting task only suspends, and cancellation is
/// seen between two attempts.
public struct HTTPReadinessProbe: ReadinessProbe {
    public let url: HTTPURL
    public let interval: Duration
    public let within: Duration

    public static let kind = "http"

    public init(url: HTTPURL, interval: Duration = .milliseconds(100), within: Duration = .seconds(1)) {
        self.url = url
        self.interval = interval
        self.within = within
    }

    public init(settings: [String: String]) throws {
        guard let text = settings["http"] else { throw GovernorError.invalidConfig("readiness http needs a URL") }
        do { url = try HTTPURL(parsing: text) } catch { throw GovernorError.invalidConfig("readiness http: \(error)") }
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            guard let t = settings[key] else { return fallback }
            guard let d = DurationText.value(t), d > .zero else {
                throw GovernorError.invalidConfig("readiness http \(key) \"\(t)\" is not a duration like 100ms")
            }
            return d
        }
        interval = try duration("interval", .milliseconds(100))
        within = try duration("within", .seconds(1))
    }

    public func waitUntilReady(_ target: ReadinessTarget, deadline: ContinuousClock.Instant) async throws {
        let (url, interval, within) = (self.url, self.interval, self.within)
        let started = ContinuousClock.now
        var last: String?
        var lastStart: ContinuousClock.Instant?
        // One GET per BlockingPool job; the pause between two is a timer of the event loop. A GET is made even
        // when this task starts late or stalls past the deadline (a loaded machine), with at least 100 ms:
        // the verdict rests on one made at the deadline (`ReadinessDeadline`).
        while true {
            try Task.checkCancellation()
            let now = ContinuousClock.now
            let left = deadline - now
            if let last, ReadinessDeadline.mayGiveUp(now: now, deadline: deadline, lastAttemptStart: lastStart, cycle: within + interval) {
                throw ReadinessError.timedOut(name: target.name, waitingFor: "a 2xx reply to GET \(url) (last: \(last))",
                                              after: ContinuousClock.now - started)
            }
            let attempt = max(min(within, left), .milliseconds(100))
            lastStart = now
            switch await BlockingPool.shared.run({ HTTPProbe.get(url, timeout: attempt) }) {
            case .success(let status) where (200...299).contains(status): return
            case .success(let status): last = "status \(status)"
            case .failure(let f): last = f.reason
            }
            let pause = min(interval, deadline - ContinuousClock.now)
            if pause > .zero { try await EventLoop.shared.sleep(for: pause) }
        }
    }
}
