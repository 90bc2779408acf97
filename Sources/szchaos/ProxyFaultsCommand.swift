import ArgumentParser
import Chaos
import Foundation
import Interposer
import ScheduleZeroWire

/// `szchaos proxy-faults add|list|remove`: a running proxy's faults changed from the command line, as
/// `toxiproxy-cli toxic add|list|remove` does.
struct ProxyFaultsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy-faults",
        abstract: "Add, list and remove the faults of a running chaos proxy or interposed link (as toxiproxy-cli does).",
        discussion: """
        The target is a proxy's --control endpoint (ENDPOINT), or an interposed process of a deployment
        (--link NAME -d DEPLOYMENT: its run/<name>.link). Exit 0 done, 1 no proxy answers or it refused, 2 usage.
        """,
        subcommands: [ProxyFaultsAdd.self, ProxyFaultsList.self, ProxyFaultsRemove.self]
    )
}

/// Where the proxy's control endpoint is.
struct ProxyTarget: ParsableArguments {
    @Argument(help: "The proxy's control endpoint (its --control), e.g. ipc:///tmp/p.control.") var endpoint: String?
    @Option(help: "An interposed process of a deployment instead (needs -d).") var link: String?
    @Option(name: [.customShort("d"), .long], help: "The deployment of --link.") var deployment: String?
    @Option(help: "Deployments root of --link (default as for every szchaos command).") var root: String?
    @OptionGroup var control: ControlOptions
    @Flag(help: "Print the settings in force as JSON.") var json = false

    func validate() throws {
        switch (endpoint, link) {
        case (nil, nil): throw ValidationError("name the proxy: its control ENDPOINT, or --link NAME -d DEPLOYMENT")
        case (.some, .some): throw ValidationError("name the proxy once: ENDPOINT or --link")
        case (nil, .some): if deployment == nil { throw ValidationError("--link needs -d/--deployment") }
        default: break
        }
    }

    func resolved() throws -> String {
        if let endpoint { return endpoint }
        do {
            return try DeploymentPaths(root: root ?? DeploymentPaths.defaultRoot, name: deployment!).linkControlEndpoint(link!)
        } catch { throw ValidationError("--deployment: \(error)") }
    }

    func report(_ body: () throws(ProxyControlError) -> ProxyFaults) throws {
        do {
            let f = try body()
            if json {
                print(JSON.string(.object(["success": true, "settings": f.json])))
            } else {
                for l in ProxyControl.lines(f) { print(l) }
            }
        } catch {
            FileHandle.standardError.write(Data("szchaos proxy-faults: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct ProxyFaultsAdd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add or change faults; prints the faults in force.")
    @OptionGroup var target: ProxyTarget
    @Option(help: "Probability of dropping a message.") var drop: Double?
    @Option(help: "Delay each message this long (300ms).") var delay: String?
    @Option(help: "+- this much on the delay (50ms).") var jitter: String?
    @Option(help: "Probability that a message is delayed (default 1).") var delayProbability: Double?
    @Option(help: "Probability of sending a message twice.") var duplicate: Double?
    @Option(help: "Probability of holding a request and sending it after the next one.") var reorder: Double?
    @Option(help: "Probability of flipping one byte of a message.") var corrupt: Double?
    @Flag(help: "Swallow every message.") var blackhole = false
    @Option(help: "Which messages the faults hit: requests, replies or both.") var direction: String?

    func settings() throws -> [String: JSONValue] {
        var s: [String: JSONValue] = [:]
        for (key, value) in [("drop", drop), ("delay", delayProbability), ("duplicate", duplicate), ("reorder", reorder), ("corrupt", corrupt)] {
            if let value {
                guard (0...1).contains(value) else { throw ValidationError("--\(key == "delay" ? "delay-probability" : key) takes a probability from 0 to 1, not \(value)") }
                s[key] = .double(value)
            }
        }
        for (key, text, option) in [("delay_ms", delay, "--delay"), ("jitter_ms", jitter, "--jitter")] {
            guard let text else { continue }
            s[key] = .int(Int64(try unitDuration(text, option: option, positive: false).wholeMilliseconds))
        }
        if blackhole { s["blackhole"] = true }
        if let direction {
            guard FaultDirection(rawValue: direction) != nil else { throw ValidationError("--direction must be requests, replies or both") }
            s["direction"] = .string(direction)
        }
        if s.isEmpty { throw ValidationError("name at least one fault (--drop, --delay, --duplicate, --reorder, --corrupt, --blackhole)") }
        return s
    }

    func validate() throws { _ = try settings() }

    func run() throws {
        let ep = try target.resolved(), s = try settings(), t = try target.control.duration()
        try target.report { () throws(ProxyControlError) in try ProxyControl.add(ep, s, timeout: t) }
    }
}

struct ProxyFaultsList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Print the faults in force (--json: with the counters).")
    @OptionGroup var target: ProxyTarget

    func run() throws {
        let ep = try target.resolved(), t = try target.control.duration()
        if target.json {
            do {
                let (f, status) = try ProxyControl.list(ep, timeout: t)
                var o = status.fields
                o["settings"] = f.json
                print(JSON.string(.object(o)))
            } catch {
                FileHandle.standardError.write(Data("szchaos proxy-faults: \(error)\n".utf8))
                throw ExitCode(1)
            }
            return
        }
        try target.report { () throws(ProxyControlError) in try ProxyControl.list(ep, timeout: t).0 }
    }
}

struct ProxyFaultsRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove the named faults, or every one with --all.")
    @OptionGroup var target: ProxyTarget
    @Option(name: .customLong("fault"), help: "A fault to remove: \(ProxyControl.removable.keys.sorted().joined(separator: ", ")) (repeatable).")
    var faults: [String] = []
    @Flag(help: "Remove every fault.") var all = false

    func validate() throws {
        guard all != !faults.isEmpty else { throw ValidationError("name the faults to remove (--fault drop ...) or --all") }
        for f in faults where ProxyControl.removable[f] == nil {
            throw ValidationError("unknown fault '\(f)' (known: \(ProxyControl.removable.keys.sorted().joined(separator: ", ")))")
        }
    }

    func run() throws {
        let ep = try target.resolved(), t = try target.control.duration(), names = faults
        try target.report { () throws(ProxyControlError) in try ProxyControl.remove(ep, names, timeout: t) }
    }
}
