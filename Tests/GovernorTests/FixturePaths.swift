import Foundation

/// Paths of the repository's Fixtures folder, found from this source file (Tests/GovernorTests/ -> ../../).
enum FixturePaths {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func deployment(_ name: String) -> URL { root.appendingPathComponent("deployments/\(name).yaml") }
    static func bad(_ name: String) -> URL { root.appendingPathComponent("bad/deployments/\(name)") }
}
