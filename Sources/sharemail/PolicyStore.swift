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

/// How many messages are between MAIL FROM and their end, so that a stop
/// can wait for them.
final class InFlight: Sendable {
    private let count = Atomic<Int>(0)

    func begin() { count.add(1, ordering: .relaxed) }
    func end() { count.subtract(1, ordering: .relaxed) }
    var current: Int { count.load(ordering: .relaxed) }
}
