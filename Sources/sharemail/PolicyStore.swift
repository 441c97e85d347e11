import NIOConcurrencyHelpers
import ShareMail
import Synchronization

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

/// How many messages are between MAIL FROM and their end, and whether a
/// new one may still begin: a stop closes the door, then waits for the count
/// to reach zero. Count and door share one atomic word, so no message can
/// slip in after the stop saw zero. (An atomic, which ThreadSanitizer does
/// see: it is touched twice per message from every worker.)
final class InFlight: Sendable {
    /// The low bits count messages; this bit says the door is closed.
    private static let closedBit = 1 << (Int.bitWidth - 2)
    private let word = Synchronization.Atomic<Int>(0)

    /// Counts a message in; false once `close()` was called (the message
    /// must then be deferred).
    func begin() -> Bool {
        var current = word.load(ordering: .relaxed)
        while current & Self.closedBit == 0 {
            let (exchanged, original) = word.compareExchange(expected: current, desired: current + 1,
                                                             ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func end() { word.subtract(1, ordering: .acquiringAndReleasing) }

    var current: Int { word.load(ordering: .acquiring) & ~Self.closedBit }

    /// No message may begin from now on. Returns how many are in flight.
    @discardableResult
    func close() -> Int {
        word.bitwiseOr(Self.closedBit, ordering: .acquiringAndReleasing).oldValue & ~Self.closedBit
    }
}
