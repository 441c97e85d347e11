import GRDB
import NIOConcurrencyHelpers

/// The read-only connections that answer each message's lookup, handed out
/// under one pthread mutex.
///
/// GRDB's own reader pool (`DatabasePool.read`) takes and gives back a
/// connection with barrier blocks on concurrent dispatch queues; on Linux
/// that costs about 35,000 instructions per lookup (bench/instructions),
/// more than the indexed SELECT it guards. Here a lookup pops an idle
/// connection and runs on it directly (`DatabaseQueue.inDatabase`, no
/// transaction: the lookup's statements are independent reads).
///
/// There is no wait for a connection: when every idle one is busy, the
/// lookup opens another, and it is closed afterwards unless fewer than
/// `keep` are idle. So a burst costs an open, never a queue.
final class LookupReaders: Sendable {
    private let path: String
    private let configuration: Configuration
    private let keep: Int
    private let state = NIOLockedValueBox(State())

    private struct State {
        var idle: [DatabaseQueue] = []
        var closed = false
    }

    /// `configuration`: the store's; the readers open the file read-only.
    init(path: String, configuration: Configuration, keep: Int) {
        var configuration = configuration
        configuration.readonly = true
        self.path = path
        self.configuration = configuration
        self.keep = keep
    }

    /// Runs `body` on an idle connection, or a new one.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        let reader = try take()
        defer { giveBack(reader) }
        return try reader.inDatabase(body)
    }

    /// Closes the idle connections; those in use are closed when given back.
    func close() {
        let idle = state.withLockedValue { state in
            state.closed = true
            defer { state.idle = [] }
            return state.idle
        }
        for reader in idle { try? reader.close() }
    }

    private func take() throws -> DatabaseQueue {
        if let reader = state.withLockedValue({ $0.idle.popLast() }) { return reader }
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    private func giveBack(_ reader: DatabaseQueue) {
        let kept = state.withLockedValue { state in
            guard !state.closed, state.idle.count < keep else { return false }
            state.idle.append(reader)
            return true
        }
        if !kept { try? reader.close() }
    }
}
