// swift-tools-version:6.0
// The ScheduleZero test harness and fault injector.
// Data flows one way: executables -> libraries -> ZeroMQ -> CZeroMQ.
import PackageDescription

let package = Package(
    name: "schedulezero-harness",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ZeroMQ", targets: ["ZeroMQ"]),
        .library(name: "ScheduleZeroWire", targets: ["ScheduleZeroWire"]),
        .library(name: "ZMQClient", targets: ["ZMQClient"]),
        .library(name: "Governor", targets: ["Governor"]),
        .library(name: "GovernorHTTP", targets: ["GovernorHTTP"]),
        .executable(name: "szgovernor", targets: ["szgovernor"]),
        .library(name: "MockPeers", targets: ["MockPeers"]),
        .executable(name: "szmock", targets: ["szmock"]),
        .library(name: "Chaos", targets: ["Chaos"]),
        .library(name: "Interposer", targets: ["Interposer"]),
        .executable(name: "szchaos", targets: ["szchaos"]),
        // The test kit for Swift Testing suites of this package and of packages that depend on it
        // (docs/TESTING.md, "The test kit"; Examples/pyservice uses it from outside).
        .library(name: "ScheduleZeroTesting", targets: ["ScheduleZeroTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CZeroMQ",
            pkgConfig: "libzmq",
            providers: [.apt(["libzmq3-dev"])]
        ),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"]),
        // libm for `rounded()`: a user linking only the codec must not need Foundation to pull it in.
        .target(name: "ScheduleZeroWire", linkerSettings: [.linkedLibrary("m")]),
        .target(name: "ZMQClient", dependencies: ["ZeroMQ", "ScheduleZeroWire"]),
        // clone3 into a cgroup2 group (Spawner's cgroup path): what posix_spawn cannot do in glibc 2.36.
        .target(name: "CSystem"),
        .target(name: "Governor", dependencies: [
            "CSystem", "ScheduleZeroWire", "ZMQClient", "ZeroMQ", "Interposer", .product(name: "Yams", package: "Yams"),
        ]),
        // The governor's HTTP face: /healthz (JSON) and /metrics (Prometheus text).
        .target(name: "GovernorHTTP", dependencies: [
            "Governor", .product(name: "FlyingFox", package: "FlyingFox"),
        ]),
        .executableTarget(name: "szgovernor", dependencies: [
            "Chaos", "Governor", "GovernorHTTP", "ScheduleZeroWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The message-level proxy's engine and the link journal: what `szchaos proxy` runs and what the
        // governor puts in front of an interposed process (docs/CHAOS.md, "Interposed links").
        .target(name: "Interposer", dependencies: ["ZeroMQ", "ScheduleZeroWire", "ZMQClient", "MockPeers"]),
        // Fault injection: the message-level proxy, fault schedules, experiments, their runner and reports.
        // Targets come from the governor's deployment folders; message-level faults go through MockPeers' control channel.
        .target(name: "Chaos", dependencies: [
            "CSystem", "ZeroMQ", "ScheduleZeroWire", "ZMQClient", "Governor", "MockPeers", "Interposer", .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "szchaos", dependencies: [
            "Chaos", "ScheduleZeroWire", "Governor", "Interposer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Benchmarks: raw libzmq from C as the baseline, and the executable that prints ratios against it.
        .target(name: "CZMQBaseline", dependencies: ["CZeroMQ"], linkerSettings: [.linkedLibrary("zmq")]),
        .executableTarget(name: "szbench", dependencies: [
            "CZMQBaseline", "ZeroMQ", "ScheduleZeroWire", "ZMQClient", "MockPeers", "Governor", "Interposer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // The test kit, shared by every test target and public as a product: tags, deadlines, temporary
        // folders, free ports, TestProcess, the leak trait, in-process peers, and the scoped deployment
        // fixture (a real `szgovernor up --detach` in a temporary folder). Governor for its cgroups
        // (ProcessTree, the leak checks) and PID files; ZMQClient for the fixture's client helper.
        .target(name: "ScheduleZeroTesting", dependencies: ["ZeroMQ", "ScheduleZeroWire", "ZMQClient", "Governor", "CSystem"]),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ", "ScheduleZeroWire", "ZMQClient", "ScheduleZeroTesting"]),
        // `szmock` so `swift test` builds it: the liveness tests govern a real szmock handler.
        .testTarget(name: "GovernorTests", dependencies: ["Governor", "GovernorHTTP", "ScheduleZeroWire", "ScheduleZeroTesting", "szmock"]),
        // `szmock` and `szchaos` as dependencies so `swift test` builds them: the tests run them as real processes.
        .testTarget(name: "ChaosTests", dependencies: [
            "Chaos", "ZeroMQ", "ScheduleZeroWire", "ZMQClient", "ScheduleZeroTesting", "Governor", "MockPeers", "Interposer", "szmock", "szchaos",
        ]),
        // szgovernor end to end: the built szgovernor, szmock and szchaos executables, real processes.
        .testTarget(name: "GovernorCLITests", dependencies: [
            "Governor", "ScheduleZeroWire", "ZMQClient", "ScheduleZeroTesting", "szgovernor", "szmock", "szchaos",
        ]),
        // The regression catalogue: every test tagged `regression`, named after what broke (docs/TESTING.md).
        .testTarget(name: "RegressionTests", dependencies: ["ZeroMQ", "ScheduleZeroWire", "ZMQClient", "MockPeers", "ScheduleZeroTesting"]),

        // Mock ScheduleZero peers (handler, server) with faults on command; `szmock` is their command line.
        .target(name: "MockPeers", dependencies: ["CSystem", "ZeroMQ", "ScheduleZeroWire", "ZMQClient"]),
        .executableTarget(
            name: "szmock",
            dependencies: ["MockPeers", "ScheduleZeroWire", "ZMQClient", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(
            name: "MockPeersTests",
            dependencies: ["MockPeers", "ZMQClient", "ScheduleZeroWire", "ZeroMQ", "ScheduleZeroTesting", "szmock"]
        ),
    ]
)
