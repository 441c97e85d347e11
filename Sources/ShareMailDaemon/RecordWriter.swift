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

    /// At most one commit per `interval`: the first record after a quiet spell is written at
    /// once, and under load each commit takes every message that ended since the last one.
    /// Each commit writes every page it touched (the tables and their indexes, `waiting`) to
    /// the WAL, so fewer, larger commits write fewer pages a message. Gathering a fixed 20 ms
    /// before every write left about 7 messages a commit at 450 messages a second: 6.75 WAL
    /// writes and 15 KB a staff message (strace, /proc/PID/io). At most one commit per 100 ms
    /// wrote 4.8 and 11 KB, and took a third to a half less of the writer's CPU (bench/run).
    /// 100 ms is still far below Postfix's own queue delays, so no reply can come back
    /// before its thread is recorded.
    let interval: Duration

    init(interval: Duration = .milliseconds(100)) {
        self.interval = interval
    }

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
        var lastCommit: ContinuousClock.Instant?
        while true {
            condition.lock(whenValue: 1)
            condition.unlock()
            // Under load, let the messages ending until the next commit is due join this one.
            if let lastCommit {
                let wait = lastCommit + interval - .now
                if wait > .zero { Thread.sleep(forTimeInterval: wait.secondsValue) }
            }
            lastCommit = .now
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
