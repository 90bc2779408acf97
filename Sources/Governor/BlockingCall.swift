import Foundation

/// Runs a blocking call on a fresh dedicated thread and suspends the task until it returns, so the
/// cooperative pool (two threads here) never blocks. For rare waits only (orphan stops); the hot path
/// (child exits) has its own monitor threads.
func runOnDedicatedThread<T: Sendable>(name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = name
        thread.stackSize = 256 * 1024
        thread.start()
    }
}
