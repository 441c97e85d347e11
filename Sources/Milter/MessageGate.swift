import Synchronization

/// How many messages are between MAIL FROM and their end, and whether a new
/// one may still begin: a shutdown closes the gate, then waits for the count
/// to reach zero. Count and gate share one atomic word, so no message can
/// slip in after the shutdown saw zero. (An atomic, which ThreadSanitizer
/// does see: it is touched twice per message from every worker.)
public final class MessageGate: Sendable {
    /// The low bits count messages; this bit says the gate is closed.
    private static let closedBit = 1 << (Int.bitWidth - 2)
    private let word = Atomic<Int>(0)

    public init() {}

    /// Counts a message in; false once `close()` was called (the message
    /// must then be deferred).
    public func begin() -> Bool {
        var current = word.load(ordering: .relaxed)
        while current & Self.closedBit == 0 {
            let (exchanged, original) = word.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Counts a message out; balance each `begin()` that returned true.
    public func end() { word.subtract(1, ordering: .acquiringAndReleasing) }

    /// Messages in flight now.
    public var current: Int { word.load(ordering: .acquiring) & ~Self.closedBit }

    /// No message may begin from now on. Returns how many are in flight.
    @discardableResult
    public func close() -> Int {
        word.bitwiseOr(Self.closedBit, ordering: .acquiringAndReleasing).oldValue & ~Self.closedBit
    }
}
