import NIOConcurrencyHelpers
import ShareMail

// Locks shared with libmilter's worker threads are NIOLockedValueBox
// (pthread mutexes), not Synchronization's Mutex: on Linux that one locks
// with a futex ThreadSanitizer cannot see, so scripts/tsan reported the
// values it guards as races under load.

/// The engine in force. Each message takes one snapshot at MAIL FROM and
/// keeps it to the end, so a reload never mixes two configurations in one
/// message.
final class PolicyStore: Sendable {
    private let current: NIOLockedValueBox<PolicyEngine>

    init(_ engine: PolicyEngine) {
        current = NIOLockedValueBox(engine)
    }

    func snapshot() -> PolicyEngine { current.withLockedValue { $0 } }

    func replace(_ engine: PolicyEngine) { current.withLockedValue { $0 = engine } }
}
