// swift-tools-version:6.0
// An outsider's package: a small Python pyzmq service of its own, tested with the ScheduleZero harness's
// test kit (the ScheduleZeroTesting product) under a real `szgovernor`. See README.md.
import Foundation
import PackageDescription

// A path dependency's identity is the last component of its path (the clone's folder name, whatever it is):
// computed here so the example builds from any clone or worktree. From a URL, write
// `.package(url: "https://.../schedulezero-harness", ...)` and `package: "schedulezero-harness"`.
let harnessPath = "../.."
let harness = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent(harnessPath).standardizedFileURL.lastPathComponent.lowercased()

let package = Package(
    name: "pyservice",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: harnessPath),
    ],
    targets: [
        .testTarget(
            name: "PyServiceTests",
            dependencies: [
                .product(name: "ScheduleZeroTesting", package: harness),
                // The executables the kit runs: listed so `swift test` builds them next to the test bundle.
                .product(name: "szgovernor", package: harness),
                .product(name: "szchaos", package: harness),
            ]
        ),
    ]
)
