import ShareMail
import Synchronization

/// The engine in force. Each message takes one snapshot at MAIL FROM and
/// keeps it to the end, so a reload never mixes two configurations in one
/// message.
final class PolicyStore: Sendable {
    private let current: Mutex<PolicyEngine>

    init(_ engine: PolicyEngine) {
        current = Mutex(engine)
    }

    func snapshot() -> PolicyEngine { current.withLock { $0 } }

    func replace(_ engine: PolicyEngine) { current.withLock { $0 = engine } }
}

/// How many messages are between MAIL FROM and their end, and whether a
/// new one may still begin: a stop closes the door, then waits for the count
/// to reach zero. One lock, so no message can slip in after the stop saw
/// zero.
final class InFlight: Sendable {
    private struct State {
        var count = 0
        var closed = false
    }
    private let state = Mutex(State())

    /// Counts a message in; false once `close()` was called (the message
    /// must then be deferred).
    func begin() -> Bool {
        state.withLock { state in
            if state.closed { return false }
            state.count += 1
            return true
        }
    }

    func end() { state.withLock { $0.count -= 1 } }

    var current: Int { state.withLock { $0.count } }

    /// No message may begin from now on. Returns how many are in flight.
    @discardableResult
    func close() -> Int {
        state.withLock { state in
            state.closed = true
            return state.count
        }
    }
}
