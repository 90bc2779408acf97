import ArgumentParser
import CZMQBaseline
import Foundation
import Interposer
import ZeroMQ

/// The governor's interposer (`ChaosProxy`, no faults) against a C `zmq_proxy(router, dealer, NULL)` hop,
/// between the same C REQ client and C REP server, in the same run; and the C round trip with no hop (the
/// floor). On tcp loopback and on ipc, what an interposed link uses in deployments.
struct InterposerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interposer",
        abstract: "ChaosProxy (journal on and off) vs a C zmq_proxy hop vs no hop, C REQ client and C REP server, tcp and ipc."
    )

    @Option(help: "Round trips per path per sample.") var iterations = 2000
    @Option(help: "Samples (interleaved; medians are reported).") var rounds = 9
    @Option(help: "Round trips per chunk (the paths take turns chunk by chunk).") var chunk = 100
    @Option(help: "Transports, comma-separated: tcp, ipc.") var transports = "tcp,ipc"

    /// A ScheduleZero job call and its reply (../shared/docs/schedulezero-wire.md): one JSON frame each.
    static let request = #"{"method": "increment_counter", "params": {"counter_name": "jobs", "job_id": "job-000042"}}"#
    static let reply = #"{"status": "ok", "counter": "jobs", "value": 42, "handler_id": "h-1", "success": true}"#

    func run() throws {
        guard iterations >= chunk, chunk > 0, rounds > 0 else { throw ValidationError("need iterations >= chunk > 0 and rounds > 0") }
        print("szbench interposer: libzmq \(libzmqVersion.major).\(libzmqVersion.minor).\(libzmqVersion.patch), \(rounds) rounds of \(iterations) round trips per path in chunks of \(chunk) (medians); request \(Self.request.utf8.count) B, reply \(Self.reply.utf8.count) B")
        for t in transports.split(separator: ",").map({ String($0).trimmingCharacters(in: .whitespaces) }) {
            guard t == "tcp" || t == "ipc" else { throw ValidationError("unknown transport \(t) (tcp, ipc)") }
            try measure(transport: t)
        }
    }

    private func endpoint(_ transport: String, _ dir: String, _ name: String) -> String {
        transport == "tcp" ? "tcp://127.0.0.1:*" : "ipc://\(dir)/\(name)"
    }

    private static func string(_ buf: [CChar]) -> String {
        String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func measure(transport t: String) throws {
        var template = Array("/tmp/szb-ipx-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ValidationError("mkdtemp failed") }
        let dir = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        var bound = [CChar](repeating: 0, count: 512)
        guard let server = szb_reply_start(endpoint(t, dir, "rep"), Self.reply, &bound, Int32(bound.count)) else {
            throw ValidationError("cannot bind the C REP server on \(t)")
        }
        defer { _ = szb_echo_stop(server) }
        let upstream = Self.string(bound)
        var cpu = ThreadCPU()
        guard let hop = szb_hop_start(endpoint(t, dir, "hop"), upstream, &bound, Int32(bound.count)) else {
            throw ValidationError("cannot start the C zmq_proxy hop on \(t)")
        }
        defer { szb_hop_stop(hop) }
        let hopEndpoint = Self.string(bound)
        cpu.claim("hop")
        // As the governor runs it (ProcessGovernor.startLink): journal in the folder, a control endpoint.
        let journal = "\(dir)/links/bench.jsonl"
        let withJournal = try ChaosProxy(ChaosProxyConfiguration(
            listen: endpoint(t, dir, "ipx-j"), upstream: upstream, control: "ipc://\(dir)/ctl-j", seed: 1,
            name: "pj", journalPath: journal))
        defer { withJournal.stop() }
        cpu.claim("pj")
        let noJournal = try ChaosProxy(ChaosProxyConfiguration(
            listen: endpoint(t, dir, "ipx-n"), upstream: upstream, control: "ipc://\(dir)/ctl-n", seed: 1, name: "pn"))
        defer { noJournal.stop() }
        cpu.claim("pn")

        let labels = ["no hop: C REQ -> C REP (floor)", "C zmq_proxy hop (baseline)", "ChaosProxy, journal on (governor)", "ChaosProxy, journal off"]
        let endpoints = [upstream, hopEndpoint, withJournal.listenEndpoint, noJournal.listenEndpoint]
        var clients: [OpaquePointer] = []
        defer { for c in clients { szb_client_close(c) } }
        for ep in endpoints {
            guard let c = szb_client_open(ep) else { throw ValidationError("cannot open a C client to \(ep)") }
            clients.append(c)
            guard szb_client_roundtrips_ns(c, Self.request, 500) > 0 else { throw ValidationError("warm-up failed against \(ep)") }
        }

        var samples = [[Double]](repeating: [], count: clients.count)
        let cpu0 = cpu.nanoseconds()
        let chunks = iterations / chunk
        for _ in 0..<rounds {
            var ns = [Int64](repeating: 0, count: clients.count)
            for k in 0..<chunks {
                // Each path takes its turn chunk by chunk, starting from a different one each chunk.
                for j in 0..<clients.count {
                    let p = (j + k) % clients.count
                    let r = szb_client_roundtrips_ns(clients[p], Self.request, Int32(chunk))
                    guard r > 0 else { throw ValidationError("round trips failed on \(labels[p]) (\(endpoints[p]))") }
                    ns[p] += r
                }
            }
            for p in 0..<clients.count { samples[p].append(Double(ns[p]) / Double(chunks * chunk) / 1000) }
        }

        let cpu1 = cpu.nanoseconds()
        let exchanges = Double(rounds * chunks * chunk)
        func cpuPerExchange(_ owner: String) -> Double { Double((cpu1[owner] ?? 0) - (cpu0[owner] ?? 0)) / exchanges / 1000 }
        let m = samples.map(Measure.median)
        func ratios(_ a: Int, _ b: Int) -> (Double, Double, Double) {
            let r = zip(samples[a], samples[b]).map { $0 / $1 }
            return (m[a] / m[b], r.min() ?? .nan, r.max() ?? .nan)
        }
        print("\(t): REP server \(upstream)")
        Measure.row(labels[0], Measure.fmt(m[0]), "us")
        let (hr, hlo, hhi) = ratios(1, 0)
        Measure.row(labels[1], Measure.fmt(m[1]), "us  \(Measure.fmt(hr, 2))x no hop (rounds \(Measure.fmt(hlo, 2))-\(Measure.fmt(hhi, 2))); the hop adds \(Measure.fmt(m[1] - m[0])) us")
        for p in [2, 3] {
            let (r, lo, hi) = ratios(p, 1)
            Measure.row(labels[p], Measure.fmt(m[p]), "us  \(Measure.fmt(r, 3))x zmq_proxy hop (rounds \(Measure.fmt(lo, 2))-\(Measure.fmt(hi, 2)))  \(Measure.verdict(r, goal: 1.05)); adds \(Measure.fmt(m[p] - m[0])) us")
        }
        let hopCPU = cpuPerExchange("hop")
        Measure.row("CPU per exchange, zmq_proxy hop (its threads)", Measure.fmt(hopCPU, 2), "us  (thread CPU time, I/O threads included: steadier than wall time)")
        for (owner, label) in [("pj", "journal on"), ("pn", "journal off")] {
            let c = cpuPerExchange(owner)
            Measure.row("CPU per exchange, ChaosProxy \(label)", Measure.fmt(c, 2), "us  \(Measure.fmt(c / hopCPU, 2))x zmq_proxy hop")
        }
        for c in clients { szb_client_close(c) }
        clients.removeAll()
        withJournal.stop()
        let counters = withJournal.linkCounters
        let lines = (try? String(contentsOfFile: journal, encoding: .utf8))?.split(separator: "\n").count ?? 0
        print("  journal: \(lines) lines; link requests \(counters.requests), delivered \(counters.delivered), lost \(counters.lost), duplicate executions \(counters.duplicateExecutions)")
    }
}

/// CPU time of groups of threads of this process (Linux: each thread's CPU clock, `clock_gettime` on the
/// clock id made from its tid, nanoseconds). `claim` gives every thread that appeared since the last claim to
/// one owner: start a component, then claim its threads (its own and its libzmq context's I/O and reaper).
struct ThreadCPU {
    private var owner: [Int32: String] = [:]
    private var seen: Set<Int32>

    init() { seen = Set(Self.tids()) }

    static func tids() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).compactMap { Int32($0) }
    }

    mutating func claim(_ name: String) {
        for t in Self.tids() where !seen.contains(t) {
            seen.insert(t)
            owner[t] = name
        }
    }

    func nanoseconds() -> [String: Int64] {
        var out: [String: Int64] = [:]
        for (t, name) in owner {
            var ts = timespec()
            // MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) of the kernel's posix-cpu-timers.
            guard clock_gettime(clockid_t((~t) << 3 | 6), &ts) == 0 else { continue }
            out[name, default: 0] += Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        }
        return out
    }
}
