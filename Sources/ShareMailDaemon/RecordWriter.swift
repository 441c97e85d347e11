import Foundation
import NIOConcurrencyHelpers
import ShareMailStore

/// Writes what the memory records on a thread of its own, so no message
/// waits for the database: Postfix's end of message is answered first, and
/// the records of every message that ended meanwhile go in one transaction.
///
/// A pthread condition (NIO's ConditionLock), not Synchronization's Mutex:
/// ThreadSanitizer on Linux sees only the former, and libmilter's workers
/// enqueue.
final class RecordWriter: @unchecked Sendable {
    /// Records waiting; guarded by `condition` (value 1: some are waiting).
    private var pending: [StoreRecord] = []
    /// A batch is being written; guarded by `condition`.
    private var writing = false
    private let condition = ConditionLock(value: 0)

    /// At most this many records wait: a database that hangs costs memory
    /// up to here, then the oldest records are dropped (and counted by
    /// `dropped`) rather than sharemail running out of memory.
    static let capacity = 50_000

    /// How long the writer waits for more records before it writes: short
    /// beside Postfix's own queue delays (a customer's reply cannot come
    /// back before the record is in), long enough for a busy server's
    /// messages to share a transaction. Each commit writes the few pages it
    /// touched (the audit table and its three indexes, `waiting`) to the WAL
    /// however many rows changed: at a few hundred messages a second, 5 ms
    /// gathered 2–3 messages and cost 5 WAL writes a message (strace), 20 ms
    /// gathers several times more.
    static let gathering: TimeInterval = 0.02

    /// Starts the writer thread; `write` writes one batch (and handles its
    /// own errors). Call once.
    func start(_ write: @escaping @Sendable ([StoreRecord]) -> Void) {
        DaemonThread.start("sm-record") { [self] in run(write) }
    }

    /// Hands records over; returns at once. Returns how many old records had
    /// to be dropped to make room (0 normally).
    @discardableResult
    func enqueue(_ records: [StoreRecord]) -> Int {
        guard !records.isEmpty else { return 0 }
        condition.lock()
        pending += records
        let overflow = max(0, pending.count - Self.capacity)
        if overflow > 0 { pending.removeFirst(overflow) }
        condition.unlock(withValue: 1)
        return overflow
    }

    /// Waits until everything handed over so far is written, at most
    /// `timeout` (a stopping daemon, or a test reading the database).
    /// Returns false when it gave up.
    @discardableResult
    func flush(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            condition.lock()
            let idle = pending.isEmpty && !writing
            condition.unlock()
            if idle { return true }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return false
    }

    private func run(_ write: @Sendable ([StoreRecord]) -> Void) {
        while true {
            condition.lock(whenValue: 1)
            condition.unlock()
            // Let the messages ending about now join this batch: one
            // transaction (and one hop to the database's thread) for them all.
            Thread.sleep(forTimeInterval: Self.gathering)
            condition.lock()
            let batch = pending
            pending = []
            writing = true
            condition.unlock(withValue: 0)
            write(batch)
            condition.lock()
            writing = false
            condition.unlock()
        }
    }
}
