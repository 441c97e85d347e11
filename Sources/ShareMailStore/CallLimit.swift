import Synchronization

/// Counts work queued on a backend (including work whose caller already gave
/// up), so a stuck database cannot pile up an unbounded queue behind it.
final class CallLimit: Sendable {
    private let count = Synchronization.Atomic<Int>(0)
    private let limit: Int

    init(_ limit: Int) { self.limit = limit }

    /// Takes a slot, or throws `StoreError.overloaded` when all are taken. Balance with `leave()`.
    func enter() throws {
        if count.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue > limit {
            leave()
            throw StoreError.overloaded
        }
    }

    func leave() {
        count.wrappingSubtract(1, ordering: .acquiringAndReleasing)
    }
}
